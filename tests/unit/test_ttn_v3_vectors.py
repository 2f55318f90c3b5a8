"""Every The Things Stack v3 vector of ../shared/vectors/ttn_v3.json through the real handler.

The vectors are read in place (never copied here); without the shared folder the module skips.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from tests.shared_paths import SHARED_DIR

from greennanny.decoders.milesight import MODELS, MilesightDecoder
from greennanny.errors import DecodeError
from greennanny.ingest.field_maps import FIELD_MAPS, FieldSpec
from greennanny.ingest.ttn_v3 import TtnV3, parse_message, parse_topic, radio_metadata
from greennanny.model import Outcome, Quality, Uplink
from greennanny.store.base import DeviceRecord

VECTORS = SHARED_DIR / "vectors" / "ttn_v3.json"
if not VECTORS.is_file():
    pytest.skip(f"shared vectors not found at {VECTORS}", allow_module_level=True)
ALL = json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]
RECEIVED = 1_710_064_800 * 10**9  # 2024-03-10T10:00:00Z: the MQTT receive time given to every vector
CANONICAL = {"temperature": "air_temperature", "humidity": "relative_humidity", "battery": "battery"}
# A field map for the Dragino LSE01 soil sensor of ttn-12, whose uplink formatter sends "3.384 V".
# Test-only: field_maps.py (owned elsewhere) has no LSE01 entry yet.
LSE01 = {"Bat": FieldSpec("battery_voltage"), "temp_SOIL": FieldSpec("soil_temperature"),
         "water_SOIL": FieldSpec("soil_moisture"), "conduct_SOIL": FieldSpec("soil_ec")}


def model_of(v: dict[str, Any]) -> str | None:
    """The Milesight model named by a vector's source path or notes (the body does not say)."""
    text = f"{(v.get('source') or {}).get('path', '')} {v.get('notes', '')}"
    for m in sorted(MODELS, key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(m)}(?![\w-])", text):
            return m
    return None


def same(expected: Any, actual: Any, path: str = "$") -> None:
    """Subset comparison with the README's 1e-6 tolerance for numbers."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        for k, e in expected.items():
            assert k in actual, f"{path}.{k} missing in {sorted(actual)}"
            same(e, actual[k], f"{path}.{k}")
    elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), f"{path}: {actual!r}"
        assert math.isclose(actual, expected, rel_tol=0, abs_tol=1e-6), f"{path}: {actual} != {expected}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def handler_for(device: DeviceRecord | None) -> TtnV3:
    """A handler whose registry knows only `device`."""
    return TtnV3(lambda e: device if device and e == device.dev_eui else None, {"milesight": MilesightDecoder()}, "s")


def message_of(v: dict[str, Any]) -> tuple[str, bytes]:
    """(topic, payload). ttn-12 came from the Storage Integration: it gets the documented topic and
    goes in wrapped as {"result": ...}, as that API returns it."""
    if "body_raw" in v:
        return v["topic"], v["body_raw"].encode()
    body = v["body"]
    if v["topic"]:
        return v["topic"], json.dumps(body).encode()
    ids = body["end_device_ids"]
    topic = f"v3/{ids['application_ids']['application_id']}/devices/{ids['device_id']}/{v['event']}"
    return topic, json.dumps({"result": body}).encode()


@pytest.mark.parametrize("v", ALL, ids=[v["id"] for v in ALL])
def test_vector(v: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    assert FIELD_MAPS["dragino-lse01"] == LSE01  # the shipped map
    topic, payload = message_of(v)
    expected = dict(v["expected"])
    model = model_of(v)
    if expected.pop("parse_error", False):
        with pytest.raises(DecodeError) as err:
            handler_for(None).handle(Uplink(topic, payload, RECEIVED))
        assert err.value.reason == "invalid_json" and err.value.offset is not None
        return
    decoded = expected.pop("decoded", None)
    msg = parse_message(topic, json.loads(payload))
    got: dict[str, Any] = {"device_id": msg.device_id, "application_id": msg.application_id,
                           "dev_eui": msg.dev_eui, "dev_addr": msg.dev_addr, "f_port": msg.f_port,
                           "f_cnt": msg.f_cnt, "confirmed": msg.confirmed, "payload_hex": msg.payload.hex().upper(),
                           "rx_count": msg.rx_count, "decoded_payload": msg.decoded_payload, **msg.facts}
    if "payload_text" in expected:
        got["payload_text"] = msg.payload.decode("ascii")
    # The registry key is lower-case hex; the vectors keep the sender's upper case.
    same({**expected, **({"dev_eui": expected["dev_eui"].lower()} if "dev_eui" in expected else {})}, got)

    field_map = "dragino-lse01" if v["id"] == "ttn-12" else ""
    device = DeviceRecord(msg.dev_eui, "milesight" if model else "", model or "", field_map, "s", "z", "", "test")
    h_or_err: Any
    try:
        h_or_err = handler_for(device).handle(Uplink(topic, payload, RECEIVED))
    except DecodeError as exc:
        h_or_err = exc
    if v["event"] != "up":
        assert h_or_err.outcome is Outcome.NON_UPLINK and h_or_err.kind == v["event"]
        assert [k for k, _ in h_or_err.events] == (["join"] if v["event"] == "join" else [])
        return
    if not model and not field_map:
        # A device we have no codec or field map for: an honest dead letter, never a guess.
        assert isinstance(h_or_err, DecodeError) and h_or_err.reason == "no_codec"
        return
    h = h_or_err
    assert h.outcome is Outcome.STORED and h.f_cnt == expected["f_cnt"] and h.kind == "up"
    meta = radio_metadata(json.loads(payload))
    assert meta["rx_count"] == expected["rx_count"]
    health = {r.quantity: r.value for r in h.health}
    assert health["gateway_count"] == meta["gateways"] == 1  # ttn-08's Packet Broker hop is the same gateway
    assert health["rssi"] == meta["rssi"] and health["snr"] == meta["snr"]
    readings = {r.quantity: r for r in h.readings}
    if model:
        frame = MilesightDecoder().decode(msg.payload, model=model).object
        same(decoded if decoded is not None else expected["decoded_payload"], frame)
        if decoded is not None:
            same({CANONICAL[k]: x for k, x in decoded.items()}, {q: r.value for q, r in readings.items()})
    else:  # ttn-12: numbers as text with units, through the field map
        assert {q: r.value for q, r in readings.items()} == {"battery_voltage": 3.384, "soil_temperature": 30.11,
                                                            "soil_moisture": 0.0, "soil_ec": 0.0}
        assert all(r.quality is Quality.OK for r in readings.values())
        assert h.unmapped == ["TempC_DS18B20"] and "TempC_DS18B20" in h.detail
        assert h.ts_ns == 1_687_271_672_656_299_995  # uplink_message.received_at, every nanosecond kept


@pytest.mark.parametrize(("topic", "want"), [
    ("v3/app1@tenant1/devices/dev1/up", ("app1", "tenant1", "dev1", "up")),
    ("v3/app1/devices/dev1/down/ack", ("app1", "", "dev1", "down/ack")),
    ("v3/EM2101@yobiiq/devices/KWH - 32310067/up", ("EM2101", "yobiiq", "KWH - 32310067", "up")),
    ("v3/devices/devices/devices/up", ("devices", "", "devices", "up")),
])
def test_topic_forms(topic: str, want: tuple[str, str, str, str]) -> None:
    assert parse_topic(topic) == want


def test_an_ack_does_not_make_its_own_uplink_a_duplicate() -> None:
    """A down/ack carries the `as:up` id of the uplink it rode on: the keys must differ."""
    ack = next(v for v in ALL if v["event"] == "down/ack")
    as_up = next(c for c in ack["body"]["correlation_ids"] if c.startswith("as:up:"))
    h = TtnV3(lambda e: None, {}, "s").handle(Uplink(ack["topic"], json.dumps(ack["body"]).encode(), RECEIVED))
    assert h.dedup_key == f"ttn:down/ack:{as_up}" and not h.dedup_key.startswith("ttn:up:")


def test_device_id_that_is_not_the_topic_device_is_rejected() -> None:
    v = next(v for v in ALL if v["id"] == "ttn-07")
    with pytest.raises(DecodeError) as err:
        parse_message(v["topic"].replace("eui-1000000000000001", "other"), v["body"])
    assert err.value.field == "end_device_ids.device_id"
