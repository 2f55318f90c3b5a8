"""Plain JSON devices: topic `greennanny/<site>/<zone>/<device>`, body `{"<quantity>": value, "ts": ...}`.

Keys are canonical quantity names (see model.QUANTITIES); `ts` is ISO 8601 or an epoch number in
s/ms/us/ns, and the receive time when absent. Values may be numbers or numeric strings; words such
as `nan` or `unavailable` become missing values with a reason. Keys that are not quantities are
counted and listed.

`TemplateJsonTopic` is the same for devices in their vendor's topic layout: a subscription's
template (ingest/topic_template.py) says which levels name the site, zone, device and quantity;
readings may sit in a nested object (`fields = "params"`), vendor keys map to quantities by
`aliases`, and with a `{quantity}` level the payload may be a bare scalar (`21.5`, `"63"`, `nan`).
A message without its own time is deduplicated only within the dedup window (its payload may
repeat legitimately later); an availability subscription records `online`/`offline` as a device
event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from greennanny.decoders.base import Reading
from greennanny.decoders.values import coerce_value
from greennanny.errors import DecodeError
from greennanny.ingest.chirpstack import parse_json
from greennanny.ingest.envelope import Handled
from greennanny.ingest.timeparse import any_to_ns
from greennanny.ingest.topic_template import TopicTemplate
from greennanny.model import QUANTITIES, Outcome, Uplink

if TYPE_CHECKING:
    from greennanny.store.base import DeviceRecord

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


ONLINE = frozenset({"online", "true", "1", "on", "connected", "up", "available"})
OFFLINE = frozenset({"offline", "false", "0", "off", "disconnected", "down", "unavailable", "lost"})


class TemplateJsonTopic:
    """Plain JSON or bare-scalar devices in their vendor's topic layout (one per subscription)."""

    name = "json"

    def __init__(self, template: TopicTemplate, *, fields: str = "", zone: str = "",
                 aliases: Mapping[str, str] | None = None, availability: bool = False,
                 devices: Callable[[str], DeviceRecord | None] | None = None,
                 default_site: str = "greenhouse") -> None:
        self.template = template
        self.fields = fields.split(".") if fields else []
        self.zone = zone or "default"
        self.aliases = dict(aliases or {})
        self.availability = availability
        self.devices = devices
        self.default_site = default_site
        self._needs_registry = not (template.has("site") and template.has("zone"))

    def handle(self, up: Uplink) -> Handled:
        try:
            where = self.template.values(up.topic)
        except ValueError as exc:
            raise DecodeError(f"topic {up.topic!r} does not fit the template {self.template.text!r}: {exc}",
                              field="topic", reason="bad_topic") from None
        site, zone, device = self._place(where)
        if self.availability:
            return self._availability(up, site, zone, device)
        topic_quantity = ""
        if "quantity" in where:
            topic_quantity = self.aliases.get(where["quantity"], where["quantity"])
            if topic_quantity not in QUANTITIES:
                raise DecodeError(f"topic level {{quantity}} {where['quantity']!r} is not a known quantity; "
                                  f"map it in the subscription's aliases", field="topic", reason="no_known_quantity")
            body = _scalar_or_json(up.payload)
        else:
            body = parse_json(up.payload)
        h = Handled(Outcome.STORED, "json", site=site, zone=zone, device=device, ts_ns=up.received_ns)
        digest = hashlib.blake2b(up.topic.encode() + b"\0" + up.payload, digest_size=10).hexdigest()
        own_time: int | None = None
        if isinstance(body, dict):
            own_time = self._readings(body, topic_quantity, h)
        elif topic_quantity and not isinstance(body, list):
            value, quality, reason = coerce_value(where["quantity"], body, topic_quantity)
            h.readings.append(Reading(topic_quantity, value, None, quality, reason))
        else:
            expected = "a scalar or an object" if topic_quantity else "an object"
            raise DecodeError(f"payload is JSON {type(body).__name__}, expected {expected}", field="payload",
                              reason="invalid_envelope")
        if own_time is None and all(r.ts_ns is None for r in h.readings):
            h.window_key = "jw:" + digest  # the same payload later is a new reading
        else:
            h.ts_ns = h.ts_ns if own_time is None else own_time
            h.dedup_key = "j:" + digest
        return h

    def _place(self, where: dict[str, str]) -> tuple[str, str, str]:
        device = where["device"]
        rec = self.devices(device.lower()) if self._needs_registry and self.devices is not None else None
        site = where.get("site") or (rec.site if rec and rec.site else self.default_site)
        zone = where.get("zone") or (rec.zone if rec and rec.zone else self.zone)
        return site, zone, device

    def _readings(self, body: dict[str, Any], topic_quantity: str, h: Handled) -> int | None:
        """Readings of an object payload into `h`; the message's own time, if it has one."""
        own_time = _own_time(body)
        obj: Any = body
        for i, part in enumerate(self.fields):
            obj = obj.get(part) if isinstance(obj, dict) else None
            if not isinstance(obj, dict):
                raise DecodeError(f"payload has no object at {'.'.join(self.fields[: i + 1])!r}",
                                  field=".".join(self.fields), reason="invalid_envelope")
        if own_time is None and obj is not body:
            own_time = _own_time(obj)
        for key, raw in obj.items():
            if key in TIME_KEYS:
                continue
            q = topic_quantity if key == "value" and topic_quantity else self.aliases.get(key, key)
            if q not in QUANTITIES:
                h.unmapped.append(key)
                continue
            ts: int | None = None
            if isinstance(raw, dict) and "value" in raw:  # {"value": 87, "time": 1658304432058}
                ts, raw = _own_time(raw), raw["value"]
            value, quality, reason = coerce_value(key, raw, q)
            h.readings.append(Reading(q, value, ts, quality, reason))
        if not h.readings:
            raise DecodeError(f"no known quantity in keys {sorted(obj)}; name them in the subscription's "
                              f"aliases or use names such as air_temperature", field="payload",
                              reason="no_known_quantity")
        return own_time

    def _availability(self, up: Uplink, site: str, zone: str, device: str) -> Handled:
        body = _scalar_or_json(up.payload)
        if isinstance(body, dict):  # {"state": "online"} (zigbee2mqtt)
            body = body.get("state", body.get("status"))
        word = str(body).strip().lower() if isinstance(body, (str, int)) else ""  # bool is an int
        if word in ONLINE:
            state = "online"
        elif word in OFFLINE:
            state = "offline"
        else:
            raise DecodeError(f"availability payload {up.payload[:40]!r} is neither online nor offline",
                              field="payload", reason="bad_availability")
        h = Handled(Outcome.NON_UPLINK, "json", site=site, zone=zone, device=device, ts_ns=up.received_ns,
                    detail=f"{device} is {state}")
        h.events.append(("availability", state))
        return h


def _own_time(obj: dict[str, Any]) -> int | None:
    for k in TIME_KEYS:
        if k in obj:
            return any_to_ns(obj[k], field=k)
    return None


def _scalar_or_json(payload: bytes) -> Any:
    """A JSON value, or the payload's text when it is a bare word such as `nan` or `online`."""
    try:
        text = payload.decode().strip()
    except UnicodeDecodeError:
        return parse_json(payload)  # raises, naming the byte offset
    if text.startswith(("{", "[")):
        return parse_json(payload)  # a broken object is a dead letter, not a word
    try:
        return json.loads(text)
    except ValueError:
        return text
