"""ChirpStack v4 application integration events (JSON marshaler) on MQTT.

Topic `application/<applicationId>/device/<devEui>/event/<kind>`. For an `up` event the decoded
`object` is used when the device has a field map (the network server already ran the vendor
codec); otherwise the base64 `data` is decoded with the device's codec. protobuf-JSON omits
default values: a missing `fCnt` is 0 and a missing `fPort` is 0. fPort 0 is MAC-only: valid, no
measurement. Other event kinds are accounted as non-uplinks (battery/margin series from `status`
come with the full envelope work).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from greennanny.decoders.base import Decoder
from greennanny.errors import DecodeError, UnknownDevice
from greennanny.ingest.envelope import Handled
from greennanny.ingest.timeparse import iso_to_ns
from greennanny.ingest.uplink import decode_uplink
from greennanny.model import Outcome, Uplink
from greennanny.store.base import DeviceRecord


def parse_json(payload: bytes, *, what: str = "payload") -> Any:
    try:
        return json.loads(payload)
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not UTF-8 text: byte {exc.start} is 0x{payload[exc.start]:02x}",
                          field=what, offset=exc.start, reason="invalid_json") from None
    except json.JSONDecodeError as exc:
        raise DecodeError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
                          f"(char {exc.pos})", field=what, offset=exc.pos, reason="invalid_json") from None


class ChirpstackV4:
    """Envelope handler; `devices` looks a devEUI up in the registry."""

    name = "chirpstack_v4"

    def __init__(self, devices: Callable[[str], DeviceRecord | None], codecs: Mapping[str, Decoder],
                 default_site: str) -> None:
        self._devices = devices
        self._codecs = codecs
        self._site = default_site

    def handle(self, up: Uplink) -> Handled:
        parts = up.topic.split("/")
        if len(parts) != 6 or parts[0] != "application" or parts[2] != "device" or parts[4] != "event":
            raise DecodeError(f"topic {up.topic!r} is not application/<id>/device/<devEui>/event/<kind>",
                              field="topic", reason="bad_topic")
        kind = parts[5]
        body = parse_json(up.payload)
        if not isinstance(body, dict):
            raise DecodeError(f"payload is JSON {type(body).__name__}, expected an object", field="payload",
                              reason="invalid_envelope")
        info = body.get("deviceInfo") or {}
        eui = str(info.get("devEui") or parts[3]).lower()
        if kind != "up":
            dedup = body.get("deduplicationId") or _digest(up.topic.encode() + b"\0" + up.payload)
            return Handled(Outcome.NON_UPLINK, kind, device=eui, ts_ns=up.received_ns, dedup_key=f"cs:{dedup}")
        if eui != parts[3].lower():
            raise DecodeError(f"deviceInfo.devEui={eui!r} does not match the topic's {parts[3]!r}",
                              field="deviceInfo.devEui", reason="invalid_envelope")
        ts_ns = iso_to_ns(body["time"], field="time") if "time" in body else up.received_ns
        f_cnt = _int(body.get("fCnt", 0), "fCnt")
        f_port = _int(body.get("fPort", 0), "fPort")
        data_b64 = body.get("data", "") or ""
        try:
            data = base64.b64decode(data_b64, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise DecodeError(f"data={str(data_b64)[:40]!r} is not valid base64", field="data",
                              reason="bad_base64") from None
        device = self._devices(eui)
        if device is None:
            raise UnknownDevice(f"device {eui} is not in the registry (onboard it with a codec or field map)")
        h = Handled(Outcome.STORED, "up", site=device.site or self._site, zone=device.zone, device=eui,
                    ts_ns=ts_ns)
        h.dedup_key = f"cs:{body['deduplicationId']}" if body.get("deduplicationId") else ""
        h.window_key = f"{eui}:{f_cnt}:{_digest(data)}"
        if not h.dedup_key:
            h.dedup_key = f"csup:{h.window_key}:{ts_ns}"
        if f_port == 0:
            h.outcome, h.detail = Outcome.STORED_EMPTY, "fPort 0 (MAC commands only)"
            return h
        decoded = decode_uplink(device, body.get("object"), data, self._codecs)
        h.readings, h.unmapped = decoded.readings, decoded.unmapped
        if not decoded.readings:
            h.outcome = Outcome.STORED_EMPTY
            h.detail = "no measurement" + (f"; unmapped keys {decoded.unmapped}" if decoded.unmapped else "")
        return h

def _int(v: Any, field: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise DecodeError(f"{field}={v!r} is not an integer", field=field, reason="invalid_envelope") from None


def _digest(b: bytes) -> str:
    return hashlib.blake2b(b, digest_size=8).hexdigest()
