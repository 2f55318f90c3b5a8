"""Every ChirpStack v3 vector of ../shared/vectors/chirpstack_v3.json through the real handler.

The vectors are read in place (never copied here); without the shared folder the module skips.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

import pytest
from tests.shared_paths import SHARED_DIR

from greennanny.decoders.milesight import MODELS, MilesightDecoder
from greennanny.errors import DecodeError
from greennanny.ingest.chirpstack_v3 import ChirpstackV3, parse_event, payload_bytes, radio_metadata
from greennanny.model import Outcome, Uplink
from greennanny.store.base import DeviceRecord

VECTORS = SHARED_DIR / "vectors" / "chirpstack_v3.json"
if not VECTORS.is_file():
    pytest.skip(f"shared vectors not found at {VECTORS}", allow_module_level=True)
ALL = json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]
RECEIVED = 1_710_064_800 * 10**9  # 2024-03-10T10:00:00Z: the MQTT receive time given to every vector
# Milesight names -> the canonical quantity the codec files them under.
CANONICAL = {"temperature": "air_temperature", "humidity": "relative_humidity", "battery": "battery"}


def model_of(v: dict[str, Any]) -> str | None:
    """The Milesight model named by a vector's source path or notes (the body does not say)."""
    text = f"{(v.get('source') or {}).get('path', '')} {v.get('notes', '')}"
    for m in sorted(MODELS, key=len, reverse=True):
        if re.search(rf"(?<![\w-]){re.escape(m)}(?![\w-])", text):
            return m
    return None


def topic_of(v: dict[str, Any]) -> str:
    """The vector's topic; the LoRa Server sample came over HTTP, so it gets the documented one."""
    b = v["body"]
    return v["topic"] or f"application/{b['applicationID']}/device/{b['devEUI']}/event/{v['event']}"


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


def is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


@pytest.mark.parametrize("v", ALL, ids=[v["id"] for v in ALL])
def test_vector(v: dict[str, Any]) -> None:
    body, topic = v["body"], topic_of(v)
    expected = dict(v["expected"])
    decoded = expected.pop("decoded", None)
    ev = parse_event(topic, body)
    got: dict[str, Any] = {"dev_eui": ev.dev_eui, "application_id": ev.application_id, "f_port": ev.f_port,
                           "f_cnt": ev.f_cnt, "rx_count": ev.rx_count, "object": ev.object, **ev.facts}
    if "payload_hex" in expected:
        got["payload_hex"] = payload_bytes(ev).hex().upper()
    same(expected, got)
    if "object" in expected:
        assert ev.object == expected["object"]  # the whole object, whichever marshaler sent it

    model = model_of(v)
    device = DeviceRecord(ev.dev_eui, "milesight" if model else "", model or "", "" if model else "generic", "s",
                          "z", "", "test")
    handler = ChirpstackV3(lambda e: device if e == ev.dev_eui else None, {"milesight": MilesightDecoder()}, "s")
    up = Uplink(topic, json.dumps(body).encode(), RECEIVED)
    if v["event"] == "up" and not is_base64(body.get("data") or ""):
        # The documentation's "data": "..." placeholder: rejected, naming the field.
        with pytest.raises(DecodeError) as err:
            handler.handle(up)
        assert err.value.field == "data" and "data=" in str(err.value)
        return
    h = handler.handle(up)
    assert h.kind == v["event"] and h.device == expected["dev_eui"]
    if v["event"] == "up":
        meta = radio_metadata(body)
        assert meta["rx_count"] == expected["rx_count"]
        health = {r.quantity: r.value for r in h.health}
        assert health["gateway_count"] == meta["gateways"] == 1
        assert health["rssi"] == body["rxInfo"][0]["rssi"] and health["snr"] == body["rxInfo"][0]["loRaSNR"]
        assert model and decoded is not None, "every v3 uplink with base64 data is a Milesight frame"
        same(decoded, MilesightDecoder().decode(payload_bytes(ev), model=model).object)
        assert h.outcome is Outcome.STORED and h.f_cnt == expected["f_cnt"]
        same({CANONICAL[k]: val for k, val in decoded.items()}, {r.quantity: r.value for r in h.readings})
    elif v["event"] == "status":
        assert h.outcome is Outcome.STORED
        assert {r.quantity: r.value for r in h.readings} == {"link_margin": expected["margin"],
                                                             "battery": expected["battery_level"]}
    else:
        assert h.outcome is Outcome.NON_UPLINK
        assert [k for k, _ in h.events] == ([v["event"]] if v["event"] in ("join", "error", "location") else [])


def test_malformed_time_falls_back_to_receive_time_and_says_so() -> None:
    """cs3-14's `time` is "2020-0327T...": the uplink is stored at the receive time, with an event."""
    (v,) = [v for v in ALL if v["id"] == "cs3-14"]
    device = DeviceRecord("24e1641092176759", "milesight", "EM300-TH", "", "s", "z", "", "test")
    h = ChirpstackV3(lambda e: device, {"milesight": MilesightDecoder()}, "s").handle(
        Uplink(topic_of(v), json.dumps(v["body"]).encode(), RECEIVED))
    assert h.ts_ns == RECEIVED
    assert h.events and h.events[0][0] == "bad_timestamp" and "2020-0327T12:39:05.547336Z" in h.events[0][1]


def test_every_vector_dialect_and_event_is_covered() -> None:
    assert {v["marshaler"].split(" ")[0] for v in ALL} == {"json_v3", "protobuf_json", "legacy"}
    assert {v["event"] for v in ALL} >= {"up", "status", "ack", "txack", "error"}


@pytest.mark.parametrize("topic", [
    "application/123/device/0202020202020202/event/up",  # v3.11+
    "application/123/device/0202020202020202/up",  # before v3.11
    "application/123/node/0202020202020202/rx",  # LoRa Server
])
def test_both_v3_topic_forms_and_lora_server_rx(topic: str) -> None:
    ev = parse_event(topic, {"devEUI": "AgICAgICAgI=", "fPort": 1, "data": "AQ=="})
    assert (ev.kind, ev.dev_eui, ev.application_id) == ("up", "0202020202020202", "123")


def test_devEUI_that_is_not_the_topic_device_is_rejected() -> None:
    with pytest.raises(DecodeError) as err:
        parse_event("application/1/device/0202020202020202/event/up", {"devEUI": "obLD1OX2Bwg="})
    assert err.value.field == "devEUI"


def test_objectJSON_that_is_not_JSON_names_the_field() -> None:
    with pytest.raises(DecodeError) as err:
        parse_event("application/1/device/0202020202020202/event/up", {"objectJSON": "{\"co2\": "})
    assert err.value.field == "objectJSON"
