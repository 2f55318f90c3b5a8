"""Plain JSON devices: topic `greennanny/<site>/<zone>/<device>`, body `{"<quantity>": value, "ts": ...}`.

Keys are canonical quantity names (see model.QUANTITIES); `ts` is ISO 8601 or an epoch number in
s/ms/us/ns, and the receive time when absent. Values may be numbers or numeric strings; words such
as `nan` or `unavailable` become missing values with a reason. Keys that are not quantities are
counted and listed.
"""

from __future__ import annotations

import hashlib

from greennanny.decoders.base import Reading
from greennanny.decoders.values import coerce_value
from greennanny.errors import DecodeError
from greennanny.ingest.chirpstack import parse_json
from greennanny.ingest.envelope import Handled
from greennanny.ingest.timeparse import any_to_ns
from greennanny.model import QUANTITIES, Outcome, Uplink

TIME_KEYS = ("ts", "time", "timestamp")


class JsonTopic:
    name = "json"

    def handle(self, up: Uplink) -> Handled:
        parts = up.topic.split("/")
        if len(parts) != 4 or not all(parts[1:]):
            raise DecodeError(f"topic {up.topic!r} is not greennanny/<site>/<zone>/<device>", field="topic",
                              reason="bad_topic")
        _, site, zone, device = parts
        body = parse_json(up.payload)
        if not isinstance(body, dict):
            raise DecodeError(f"payload is JSON {type(body).__name__}, expected an object", field="payload",
                              reason="invalid_envelope")
        ts_ns = up.received_ns
        for k in TIME_KEYS:
            if k in body:
                ts_ns = any_to_ns(body[k], field=k)
                break
        h = Handled(Outcome.STORED, "json", site=site, zone=zone, device=device, ts_ns=ts_ns)
        h.dedup_key = "j:" + hashlib.blake2b(up.topic.encode() + b"\0" + up.payload, digest_size=10).hexdigest()
        for key, raw in body.items():
            if key in TIME_KEYS:
                continue
            if key not in QUANTITIES:
                h.unmapped.append(key)
                continue
            value, quality, reason = coerce_value(key, raw, key)
            h.readings.append(Reading(key, value, None, quality, reason))
        if not h.readings:
            raise DecodeError(
                f"no known quantity in keys {sorted(body)}; expected names such as air_temperature, "
                f"relative_humidity, co2", field="payload", reason="no_known_quantity")
        return h
