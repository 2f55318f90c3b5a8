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
    """Readings of one uplink of `device`: from `obj` by its field map, or from `data` by its codec.

    Every DecodeError raised here names the device, so its dead letter is counted against it.
    """
    try:
        return _decode(device, obj, data, codecs)
    except DecodeError as exc:
        exc.device = exc.device or device.dev_eui
        raise


def _decode(device: DeviceRecord, obj: Any, data: bytes, codecs: Mapping[str, Decoder]) -> Decoded:
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
    if device.field_map:
        # The network server ran the vendor codec and it gave nothing: it threw (ChirpStack then logs
        # UPLINK_CODEC and sends the up event without `object`, field fault BR-28) or is not set.
        # Nothing is guessed from the bytes; the raw uplink is kept, and a replay decodes it later.
        raise DecodeError(f"device {device.dev_eui} has field map {device.field_map!r} but the uplink carries no "
                          f"decoded object: the network server's codec failed on it (ChirpStack logs UPLINK_CODEC) "
                          f"or is not set, and no codec is set here to decode data={data.hex()!r}",
                          field="object", reason="codec_error")
    raise DecodeError(f"device {device.dev_eui} has neither a field map nor a codec", field="codec",
                      reason="no_codec")
