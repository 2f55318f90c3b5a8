"""What every LoRaWAN envelope (ChirpStack v3/v4, The Things Stack) does with an uplink's payload.

Use the network server's decoded object when the device has a field map (the server already ran
the vendor's codec); otherwise decode the raw bytes with the device's codec. One rule, one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from greennanny.decoders.base import Decoded, Decoder
from greennanny.errors import DecodeError
from greennanny.ingest.field_maps import FIELD_MAPS, apply_field_map
from greennanny.store.base import DeviceRecord


def decode_uplink(device: DeviceRecord, obj: Any, data: bytes, codecs: Mapping[str, Decoder]) -> Decoded:
    """Readings of one uplink of `device`: from `obj` by its field map, or from `data` by its codec."""
    if device.field_map and obj is not None:
        if not isinstance(obj, dict):
            raise DecodeError(f"object is {type(obj).__name__}, expected a JSON object", field="object",
                              reason="invalid_envelope")
        fmap = FIELD_MAPS.get(device.field_map)
        if fmap is None:
            raise DecodeError(f"device {device.dev_eui}: field map {device.field_map!r} does not exist",
                              field="field_map", reason="no_codec")
        return apply_field_map(obj, fmap)
    if device.codec:
        codec = codecs.get(device.codec)
        if codec is None:
            raise DecodeError(f"device {device.dev_eui}: codec {device.codec!r} does not exist",
                              field="codec", reason="no_codec")
        if not data:
            return Decoded()
        return codec.decode(data, model=device.model or None)
    raise DecodeError(f"device {device.dev_eui} has field map {device.field_map!r} but the uplink "
                      f"carries no decoded object, and no codec is set", field="object", reason="no_codec")
