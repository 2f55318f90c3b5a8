"""Every ChirpStack v4 vector of ../shared/vectors/chirpstack_v4.json through the real handler."""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import pytest
from tests.shared_paths import SHARED_DIR

from greennanny.decoders.milesight import MODELS, MilesightDecoder
from greennanny.ingest.chirpstack import ChirpstackV4, facts
from greennanny.model import Outcome, Uplink
from greennanny.store.base import DeviceRecord

VECTORS = SHARED_DIR / "vectors" / "chirpstack_v4.json"
if not VECTORS.exists():
    pytest.skip(f"shared vectors not found at {VECTORS}", allow_module_level=True)
ALL = json.loads(VECTORS.read_text())["vectors"]


def model_of(v: dict[str, Any]) -> str | None:
    """The Milesight model a vector's notes name (the body only says 'default device profile')."""
    for m in sorted(MODELS, key=len, reverse=True):
        if re.search(rf"\b{re.escape(m)}\b", v.get("notes", "")):
            return m
    return None


def same(expected: Any, actual: Any, path: str = "$") -> None:
    if isinstance(expected, dict):
        for k, e in expected.items():
            assert k in actual, f"{path}.{k} missing in {sorted(actual)}"
            same(e, actual[k], f"{path}.{k}")
    elif isinstance(expected, list):
        assert len(expected) == len(actual), path
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            same(e, a, f"{path}[{i}]")
    elif isinstance(expected, float) or (isinstance(expected, int) and not isinstance(expected, bool)):
        assert math.isclose(float(actual), float(expected), abs_tol=1e-6), f"{path}: {actual} != {expected}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


@pytest.mark.parametrize("v", ALL, ids=[v["id"] for v in ALL])
def test_vector(v: dict[str, Any]) -> None:
    body = v["body"]
    expected = dict(v["expected"])
    decoded = expected.pop("decoded", None)
    same(expected, facts(v["event"], body))
    model = model_of(v)
    eui = expected["dev_eui"]
    device = DeviceRecord(eui, "milesight" if model else "", model or "", "" if model else "generic", "s", "z", "",
                          "test")
    handler = ChirpstackV4(lambda e: device if e == eui else None, {"milesight": MilesightDecoder()}, "s")
    topic = v["topic"] or f"application/app/device/{eui}/event/{v['event']}"
    payload = json.dumps(body).encode()
    if v["event"] == "up" and not model:
        # A device we have no codec for: an honest dead letter, not a guess (its payload stays kept).
        from greennanny.errors import DecodeError

        with pytest.raises(DecodeError, match="no codec is set"):
            handler.handle(Uplink(topic, payload, 1))
        return
    h = handler.handle(Uplink(topic, payload, 1))
    assert h.kind == v["event"] and h.device == eui
    if v["event"] == "up":
        got = MilesightDecoder().decode(base64.b64decode(body["data"]), model=model).object
        if decoded is not None:
            same(decoded, got)
        assert h.outcome is Outcome.STORED and h.readings
        assert {r.quantity for r in h.health} >= {"rssi", "snr", "gateway_count"}
        assert next(r.value for r in h.health if r.quantity == "rssi") == expected["rx0_rssi"]
    elif v["event"] == "status":
        assert h.outcome is Outcome.STORED
        by_q = {r.quantity: r for r in h.readings}
        assert by_q["link_margin"].value == expected["margin"]
        if expected["external_power_source"] or expected["battery_level_unavailable"]:
            assert math.isnan(by_q["battery"].value) and by_q["battery"].reason
        else:
            assert by_q["battery"].value == expected["battery_level"]
    else:
        assert h.outcome is Outcome.NON_UPLINK
        if v["event"] in ("join", "log", "location"):
            assert h.events and h.events[0][0] == v["event"]


def test_every_uplink_with_a_milesight_frame_was_decoded():
    ups = [v for v in ALL if v["event"] == "up" and "decoded" in v["expected"]]
    assert ups and all(model_of(v) for v in ups)
