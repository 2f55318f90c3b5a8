"""Once and only once, against a real Mosquitto (issue 3, 2a and 2b)."""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

from greennanny.config import config_from_dict
from greennanny.ingest.replay import Message, publish
from greennanny.runtime.node import Node

pytestmark = pytest.mark.integration
EUI = "24e124136b31bbbb"
APP = "5d3f0c2e-0000-4000-8000-000000000001"
TOPIC = f"application/{APP}/device/{EUI}/event/up"
T0 = 1_765_000_000  # 2025-12-06


def event(f_cnt: int, t_s: float, frame: bytes, gateway: str, rssi: int, dedup: str | None = None) -> bytes:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t_s))) + f".{int((t_s % 1) * 1000):03d}+00:00"
    return json.dumps({"deduplicationId": dedup or str(uuid.uuid4()), "time": ts, "fCnt": f_cnt, "fPort": 85,
                       "deviceInfo": {"devEui": EUI, "applicationId": APP}, "data": base64.b64encode(frame).decode(),
                       "rxInfo": [{"gatewayId": gateway, "rssi": rssi, "snr": 7.5}]}).encode()


def frame(temp: float) -> bytes:
    return bytes.fromhex("0175640367") + round(temp * 10).to_bytes(2, "little", signed=True) + bytes.fromhex("046880")


def start(mosquitto, tmp_path) -> Node:
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path / "node")}, "mqtt": {"url": mosquitto.url},
                            "pipeline": {"mode": "backfill", "batch_max_wait_ms": 50}, "forecast": {"enabled": False},
                            "devices": {EUI: {"codec": "milesight", "model": "EM300-TH", "zone": "h1",
                                              "interval_s": 600}}}, base_dir=tmp_path)
    node = Node(cfg)
    node.start(forecasts=False)
    node.mqtt.wait_connected(10)
    return node


def wait_messages(node: Node, n: int) -> None:
    end = time.monotonic() + 20
    while node.stats.messages < n and time.monotonic() < end:
        time.sleep(0.05)
    assert node.stats.messages == n


def temps(node: Node) -> list[float]:
    s = next(s for s in node.store.series(quantity="air_temperature"))
    return node.store.query(s.id, None, None)["value"].tolist()


def test_one_uplink_via_three_gateways_and_again_after_a_reconnect_is_stored_once(mosquitto, tmp_path):
    node = start(mosquitto, tmp_path)
    first = str(uuid.uuid4())
    copies = [event(7, T0, frame(21.3), "gw-a", -70, first), event(7, T0 + 0.4, frame(21.3), "gw-b", -95),
              event(7, T0 + 1.1, frame(21.3), "gw-c", -101)]
    publish(mosquitto.url, [Message(TOPIC, c, 0) for c in copies])
    wait_messages(node, 3)
    node.stop()  # the node goes away and comes back: the broker (or ChirpStack) redelivers
    node = start(mosquitto, tmp_path)
    publish(mosquitto.url, [Message(TOPIC, event(7, T0, frame(21.3), "gw-a", -70, first), 0)])
    wait_messages(node, 1)
    try:
        assert temps(node) == [21.3]
        assert node.store.outcome_counts() == {"stored": 1, "duplicate": 3}
    finally:
        node.stop()


def test_device_reboot_repeats_fcnt_0_to_2_one_interval_later_six_readings_one_reset(mosquitto, tmp_path):
    node = start(mosquitto, tmp_path)
    msgs = [event(i, T0 + 600 * i, frame(20 + i), "gw-a", -70) for i in range(3)]
    msgs += [event(i, T0 + 600 * (3 + i), frame(20 + i), "gw-a", -70) for i in range(3)]  # after the reboot
    publish(mosquitto.url, [Message(TOPIC, m, 0) for m in msgs])
    wait_messages(node, 6)
    try:
        assert temps(node) == [20.0, 21.0, 22.0, 20.0, 21.0, 22.0]
        resets = [e for e in node.store.device_events() if e[2] == "fcnt_reset"]
        assert [(e[1], e[3]) for e in resets] == [(EUI, "fCnt 2 -> 0")]
    finally:
        node.stop()
