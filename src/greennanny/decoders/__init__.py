"""Payload decoders: bytes (or a decoded JSON object) -> readings. One module per family."""
