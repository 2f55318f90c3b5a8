"""The Things Stack v3 (TTN community cloud, TTI) application messages on MQTT.

Topic `v3/<application id>[@<tenant id>]/devices/<device id>/<event>` (open-source deployments
drop `@tenant`); `<event>` may have two levels (`down/ack`). The registry key is
`end_device_ids.dev_eui` in lower-case hex; the device id is only checked against the topic.

Why each rule:
- The Things Stack omits empty and zero fields, so a first uplink has no `f_cnt` (0), a MAC-only
  one no `f_port` (0: valid, no measurement), an unconfirmed one no `confirmed`.
- A field-map device takes `decoded_payload` (the uplink formatter already ran the vendor's
  codec); a codec device decodes `frm_payload` (one rule: `decode_uplink`). Formatters often
  return numbers as text with a unit (`"3.384 V"`, `"30.11 °C"`): those become numbers here;
  any other text goes on to the field map, which keeps it as a missing value with a reason
  (mapped key) or lists it in `unmapped` (other keys), so nothing is dropped silently.
- Time is `uplink_message.received_at` (the network server's receive time, closest to the
  measurement), else the top-level `received_at`, else the MQTT receive time.
- `correlation_ids` has one `as:up:<ULID>` per uplink: it is the exact dedup key. Non-uplink
  events carry the `as:up` id of the uplink they rode on (a down/ack), so their key includes the
  event name: an ack can never mark its own uplink as a duplicate.
- Every uplink gives device-health readings as the ChirpStack handlers do: RSSI of the best
  gateway (highest RSSI), its SNR, and the number of physical gateways (a Packet Broker hop
  names its forwarder gateway, often one already seen directly: it counts once). Join events
  are kept as device events; down/* and other events are counted as non-uplinks.
- Storage Integration results come as `{"result": {...}}` and are unwrapped.
- TTN v2 uplinks (`dev_id`, `hardware_serial`, `payload_fields`, `metadata.time`; topic
  `<app>/devices/<dev>/up`, sometimes under a prefix) are turned into the v3 shape first: v2
  was shut down in 2021, but bridges and archives still publish that layout (field fault BR-07),
  and the conversion is a dozen lines.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from greennanny.decoders.base import Decoder, Reading
from greennanny.errors import DecodeError, UnknownDevice
from greennanny.ingest.chirpstack import parse_json
from greennanny.ingest.envelope import Handled
from greennanny.ingest.timeparse import iso_to_ns
from greennanny.ingest.uplink import decode_uplink
from greennanny.model import Outcome, Uplink
from greennanny.store.base import DeviceRecord

_HEX_EUI = re.compile(r"[0-9a-fA-F]{16}")
# A number followed by a unit with no digits in it: "3.384 V", "30.11 °C", "0 uS/cm". A bare
# number ("37.8") is left to coerce_value, so a reason quotes the value exactly as it was sent.
_NUMBER_WITH_UNIT = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([^\d\s.+-][^\d]*)")
# The message part that carries f_port/f_cnt/frm_payload for each event kind.
_PART = {"up": "uplink_message", "join": "join_accept"}
_TWO_LEVEL_EVENTS = frozenset({"down", "service", "location"})


@dataclass(slots=True)
class TtnMessage:
    """One message with omitted defaults filled in; `payload` is frm_payload decoded."""

    event: str
    device_id: str
    application_id: str
    tenant: str
    dev_eui: str  # lower-case hex; "" when the device has none (ABP without DevEUI)
    dev_addr: str = ""
    f_port: int = 0
    f_cnt: int = 0
    confirmed: bool = False
    payload: bytes = b""
    decoded_payload: dict[str, Any] | None = None
    rx_count: int = 0
    as_up_id: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


def parse_topic(topic: str) -> tuple[str, str, str, str]:
    """(application id, tenant, device id, event) from `[prefix/]<app>[@tenant]/devices/<dev>/<event>`."""
    p = topic.split("/")
    # Event names have one level or two under down/, service/, location/ (down/ack, service/data).
    n_event = 2 if len(p) >= 2 and p[-2] in _TWO_LEVEL_EVENTS else 1
    i = len(p) - n_event - 2  # index of "devices"
    if i < 1 or p[i] != "devices" or not all(p[i - 1:]):
        raise DecodeError(f"topic {topic!r} is not v3/<app>[@<tenant>]/devices/<device>/<event>", field="topic",
                          reason="bad_topic")
    app, _, tenant = p[i - 1].partition("@")
    return app, tenant, p[i + 1], "/".join(p[i + 2:])


def parse_message(topic: str, body: Mapping[str, Any]) -> TtnMessage:
    """The message's facts; raises DecodeError for a layout that cannot be read."""
    app, tenant, topic_dev, event = parse_topic(topic)
    body = unwrap(body)
    ids = body.get("end_device_ids")
    if not isinstance(ids, dict):
        raise DecodeError("end_device_ids is missing", field="end_device_ids", reason="invalid_envelope")
    dev_id = str(ids.get("device_id") or topic_dev)
    if dev_id != topic_dev:
        raise DecodeError(f"end_device_ids.device_id={dev_id!r} does not match the topic's {topic_dev!r}",
                          field="end_device_ids.device_id", reason="invalid_envelope")
    eui = str(ids.get("dev_eui") or "")
    if eui and not _HEX_EUI.fullmatch(eui):
        raise DecodeError(f"end_device_ids.dev_eui={eui!r} is not 16 hex digits", field="end_device_ids.dev_eui",
                          reason="invalid_envelope")
    app_ids = _d(ids.get("application_ids"))
    msg = TtnMessage(event, dev_id, str(app_ids.get("application_id") or app), tenant, eui.lower(),
                     dev_addr=str(ids.get("dev_addr") or ""))
    corr = _l(body.get("correlation_ids"))
    msg.as_up_id = next((str(c) for c in corr if str(c).startswith("as:up:")), "")
    part_name = _PART.get(event) or ("downlink_" + event.split("/")[-1] if event.startswith("down/") else "")
    part = body.get(part_name) if part_name else None
    if event == "up" and not isinstance(part, dict):
        raise DecodeError("an up message without uplink_message", field="uplink_message", reason="invalid_envelope")
    if isinstance(part, dict):
        where = part_name
        msg.f_port = _int(part.get("f_port", 0), f"{where}.f_port")
        msg.f_cnt = _int(part.get("f_cnt", 0), f"{where}.f_cnt")
        msg.confirmed = bool(part.get("confirmed", False))
        msg.payload = _b64(part.get("frm_payload") or "", f"{where}.frm_payload")
        dp = part.get("decoded_payload")
        msg.decoded_payload = dp if isinstance(dp, dict) else None
        rx = part.get("rx_metadata")
        msg.rx_count = len(rx) if isinstance(rx, list) else 0
        msg.facts = {k: part[k] for k in ("session_key_id", "priority", "received_at") if k in part}
    return msg


def unwrap(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The message itself: Storage Integration's `{"result": ...}` removed, TTN v2 turned into v3."""
    if set(body) == {"result"} and isinstance(body["result"], dict):
        body = body["result"]
    if "end_device_ids" not in body and ("hardware_serial" in body or "payload_fields" in body):
        return _from_v2(body)
    return body


def radio_metadata(body: Mapping[str, Any]) -> dict[str, Any]:
    """Reception quality of an uplink, the source of the `health` readings.

    Best gateway = highest RSSI (then SNR), as the ChirpStack handlers pick it. `gateways`
    counts physical gateways: a Packet Broker hop names its forwarder gateway, which is often the
    same one seen directly (then it counts once); `rx_count` is the number of rx_metadata entries.
    """
    um = _d(unwrap(body).get("uplink_message"))
    rx = [e for e in _l(um.get("rx_metadata")) if isinstance(e, dict)]
    best = max(rx, key=lambda e: (_num(e.get("rssi", e.get("channel_rssi"))), _num(e.get("snr"))), default={})
    gateways = set()
    for i, e in enumerate(rx):
        gw, pb = _d(e.get("gateway_ids")), _d(e.get("packet_broker"))
        name = pb.get("forwarder_gateway_eui") or gw.get("eui") or pb.get("forwarder_gateway_id") or \
            gw.get("gateway_id") or str(i)
        gateways.add(str(name).lower())
    lora = _d(_d(_d(um.get("settings")).get("data_rate")).get("lora"))
    return {"rssi": best.get("rssi", best.get("channel_rssi")), "snr": best.get("snr"), "gateways": len(gateways),
            "rx_count": len(rx), "spreading_factor": lora.get("spreading_factor")}


def health_readings(meta: Mapping[str, Any]) -> list[Reading]:
    """`radio_metadata` as device-health readings (gateway_count, rssi, snr), numbers only."""
    if not meta["rx_count"]:
        return []
    out = [Reading("gateway_count", float(meta["gateways"]))]
    for q in ("rssi", "snr"):
        if _num(meta[q]) != float("-inf"):
            out.append(Reading(q, float(meta[q])))
    return out


class TtnV3:
    """Envelope handler; `devices` looks a DevEUI (lower-case hex) up in the registry."""

    name = "ttn_v3"

    def __init__(self, devices: Callable[[str], DeviceRecord | None], codecs: Mapping[str, Decoder],
                 default_site: str) -> None:
        self._devices = devices
        self._codecs = codecs
        self._site = default_site

    def handle(self, up: Uplink) -> Handled:
        raw = parse_json(up.payload)
        if not isinstance(raw, dict):
            raise DecodeError(f"payload is JSON {type(raw).__name__}, expected an object", field="payload",
                              reason="invalid_envelope")
        body = unwrap(raw)
        msg = parse_message(up.topic, body)
        message_hash = _digest(up.topic.encode() + b"\0" + up.payload)
        exact = msg.as_up_id or message_hash
        ts_ns, problems = _message_time(body, up.received_ns)
        if msg.event != "up":
            h = Handled(Outcome.NON_UPLINK, msg.event, device=msg.dev_eui or msg.device_id, ts_ns=ts_ns,
                        dedup_key=f"ttn:{msg.event}:{exact}")
            if msg.event == "join":
                keep = {"device_id": msg.device_id, "dev_addr": msg.dev_addr, **msg.facts}
                h.events.append(("join", json.dumps(keep, sort_keys=True, default=str)))
            return h
        if not msg.dev_eui:
            raise UnknownDevice(f"device {msg.device_id!r} has no dev_eui; the registry is keyed by DevEUI",
                                device=msg.device_id)
        device = self._devices(msg.dev_eui)
        if device is None:
            raise UnknownDevice(f"device {msg.dev_eui} ({msg.device_id}) is not in the registry "
                                f"(onboard it with a codec or field map)", device=msg.dev_eui)
        h = Handled(Outcome.STORED, "up", site=device.site or self._site, zone=device.zone, device=msg.dev_eui,
                    ts_ns=ts_ns, events=[("bad_timestamp", p) for p in problems], f_cnt=msg.f_cnt)
        h.health = health_readings(radio_metadata(body))
        h.window_key = f"{msg.dev_eui}:{msg.f_cnt}:{_digest(msg.payload)}"
        h.dedup_key = f"ttn:up:{exact}"
        if msg.f_port == 0:
            h.outcome, h.detail = Outcome.STORED_EMPTY, "f_port 0 (MAC commands only)"
            return h
        obj = numbers_from_text(msg.decoded_payload) if msg.decoded_payload is not None else None
        decoded = decode_uplink(device, obj, msg.payload, self._codecs)
        h.readings, h.unmapped = decoded.readings, decoded.unmapped
        if decoded.unmapped:
            source = f"field map {device.field_map!r}" if device.field_map and obj is not None else \
                f"codec {device.codec!r}"
            h.detail = f"unmapped keys {decoded.unmapped} (no canonical quantity in {source})"
        if not decoded.readings:
            h.outcome = Outcome.STORED_EMPTY
            h.detail = "no measurement" + (f"; {h.detail}" if h.detail else "")
        return h


def numbers_from_text(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`decoded_payload` with "<number> <unit>" text turned into the number; other values as sent."""
    out = dict(obj)
    for k, v in obj.items():
        if isinstance(v, str):
            m = _NUMBER_WITH_UNIT.fullmatch(v)
            if m:
                out[k] = float(m.group(1))
    return out


def _from_v2(b: Mapping[str, Any]) -> dict[str, Any]:
    """A TTN v2 uplink in the v3 shape (field names per the v2 MQTT API)."""
    meta = _d(b.get("metadata"))
    rx = [{"gateway_ids": {"gateway_id": g.get("gtw_id")}, "rssi": g.get("rssi"), "snr": g.get("snr"),
           "time": g.get("time")} for g in _l(meta.get("gateways")) if isinstance(g, dict)]
    um = {"f_port": b.get("port", 0), "f_cnt": b.get("counter", 0), "confirmed": b.get("confirmed", False),
          "frm_payload": b.get("payload_raw") or "", "decoded_payload": b.get("payload_fields"),
          "rx_metadata": rx, "received_at": meta.get("time")}
    return {"end_device_ids": {"device_id": b.get("dev_id"), "dev_eui": b.get("hardware_serial"),
                               "application_ids": {"application_id": b.get("app_id")}},
            "uplink_message": {k: v for k, v in um.items() if v is not None}}


def _message_time(body: Mapping[str, Any], received_ns: int) -> tuple[int, list[str]]:
    problems: list[str] = []
    um = _d(body.get("uplink_message"))
    sources = (("uplink_message.received_at", um.get("received_at")), ("received_at", body.get("received_at")))
    for where, value in sources:
        if isinstance(value, str):
            try:
                return iso_to_ns(value, field=where), problems
            except DecodeError as exc:
                problems.append(f"{exc}; next time source used")
    return received_ns, problems


def _b64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"{what}={str(text)[:40]!r} is not valid base64", field=what, reason="bad_base64") from None


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("-inf")


def _int(v: Any, what: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        raise DecodeError(f"{what}={v!r} is not an integer", field=what, reason="invalid_envelope") from None


def _digest(b: bytes) -> str:
    return hashlib.blake2b(b, digest_size=8).hexdigest()


def _d(v: Any) -> dict[str, Any]:
    """An optional JSON object, or {} when absent or of another type (metadata is best-effort)."""
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    """An optional JSON list, or [] when absent or of another type."""
    return v if isinstance(v, list) else []
