"""The test-suite profile of bench/fuzz.py: 2,000 random and mutated payloads per codec and
envelope; only greennanny's own InputError may come out (hypothesis shrinks any other)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import fuzz

TARGETS = fuzz.targets()


def test_every_codec_and_envelope_is_a_target():
    names = {t.name for t in TARGETS}
    assert {"codec:milesight", "envelope:chirpstack_v4", "envelope:chirpstack_v3", "envelope:ttn_v3",
            "envelope:json", "envelope:senml"} <= names


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_fuzz_2000(target):
    fuzz.run(target, 500)  # under hypothesis: a failure is shrunk to a minimal payload
    fuzz.run_volume(target, 1500, seed=1)


# Failures the fuzzer found (2026-12-03), kept as explicit examples: each was a Python error
# escaping a handler; now each is a DecodeError naming the field, or decodes with the bad
# metadata ignored.
V4_UP = {"deduplicationId": "x", "time": "2024-01-01T00:00:00Z", "fCnt": 1, "fPort": 85, "data": "AXVk",
         "deviceInfo": {"devEui": "0101010101010101", "applicationId": "a"}}
FOUND = [
    ("chirpstack_v4", "application/a/device/0101010101010101/event/up", {**V4_UP, "deviceInfo": True}, "deviceInfo"),
    ("chirpstack_v4", "application/a/device/0101010101010101/event/up", {**V4_UP, "time": 12345}, "time"),
    ("chirpstack_v4", "application/a/device/0101010101010101/event/status",
     {**V4_UP, "batteryLevel": {}}, "batteryLevel"),
    ("chirpstack_v4", "application/a/device/0101010101010101/event/status", {**V4_UP, "margin": 1.5e300}, "margin"),
    ("chirpstack_v3", "application/1/device/0101010101010101/event/up",
     {"devEUI": "0101010101010101", "fPort": 85, "fCnt": 1, "data": "AXVk", "rxInfo": True}, None),
    ("chirpstack_v3", "application/1/device/0101010101010101/event/up",
     {"devEUI": "0101010101010101", "fPort": 85, "fCnt": 1, "data": "AXVk", "txInfo": {"loRaModulationInfo": 1.5}},
     None),
    ("ttn_v3", "v3/app@ttn/devices/dev/up",
     {"end_device_ids": {"device_id": "dev", "dev_eui": "0101010101010101", "application_ids": 3},
      "uplink_message": {"f_port": 85, "frm_payload": "AXVk"}}, None),
    ("ttn_v3", "v3/app@ttn/devices/dev/up",
     {"end_device_ids": {"device_id": "dev", "dev_eui": "0101010101010101"}, "correlation_ids": 1.5,
      "uplink_message": {"f_port": 85, "frm_payload": "AXVk"}}, None),
    ("ttn_v3", "v3/app@ttn/devices/dev/up",
     {"end_device_ids": {"device_id": "dev", "dev_eui": "0101010101010101"},
      "uplink_message": {"f_port": 85, "frm_payload": "AXVk", "settings": 1.5, "rx_metadata": True}}, None),
]


@pytest.mark.parametrize("name,topic,body,field", FOUND, ids=[f"{n}-{i}" for i, (n, *_) in enumerate(FOUND)])
def test_fuzz_finding_is_handled(name, topic, body, field):
    import json

    from greennanny.errors import DecodeError
    from greennanny.model import Uplink

    handler = next(t for t in TARGETS if t.name == f"envelope:{name}")
    h = fuzz.build_handlers(fuzz._AnyDevice(), {"milesight": fuzz.MilesightDecoder()}, "s")[name]
    up = Uplink(topic, json.dumps(body).encode(), 1_700_000_000 * 10**9)
    if field is None:  # bad optional metadata is ignored; the reading still decodes
        assert h.handle(up) is not None
    else:
        with pytest.raises(DecodeError) as e:
            h.handle(up)
        assert field in str(e.value) or e.value.field == field
    assert handler is not None
