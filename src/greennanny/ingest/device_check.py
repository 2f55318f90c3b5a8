"""Is a device registration usable? One check for the config file, the API and the CLI."""

from __future__ import annotations


def device_problem(codec: str, model: str, field_map: str) -> str | None:
    """What is wrong with this codec/model/field map, naming the value and the choices; None if fine."""
    from greennanny.ingest.field_maps import FIELD_MAPS
    from greennanny.runtime.node import codecs

    if not codec and not field_map:
        return "needs a codec (with model) or a field_map"
    known = codecs()
    if codec and codec not in known:
        return f"codec {codec!r} unknown; known: {sorted(known)}"
    if field_map and field_map not in FIELD_MAPS:
        return f"field_map {field_map!r} unknown; known: {sorted(FIELD_MAPS)}"
    if codec == "milesight":
        from greennanny.decoders.milesight import MODELS

        if model.upper() not in {m.upper() for m in MODELS}:
            return f"Milesight model {model!r} unknown; known: {sorted(MODELS)}"
    return None
