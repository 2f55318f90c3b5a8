"""A node with json template subscriptions against a real Mosquitto: a Home Assistant style bare
scalar is stored, `nan` becomes a gap, and the status topic becomes a device availability event."""

from __future__ import annotations

import math

import pytest

from greennanny.config import config_from_dict
from greennanny.ingest.replay import Message, publish
from greennanny.model import Quality
from greennanny.runtime.node import Node
from tests.integration.test_node_mqtt import wait

pytestmark = pytest.mark.integration

SUBS = [{"topic": "+/+/sensor/+/state", "format": "json", "template": "{site}/{device}/sensor/{quantity}/state",
         "zone": "house-1"},
        {"topic": "+/+/status", "format": "json", "template": "{site}/{device}/status", "availability": True}]


def test_node_stores_a_home_assistant_scalar_and_records_availability(mosquitto, tmp_path):
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path / "node")},
                            "mqtt": {"url": mosquitto.url, "subscriptions": SUBS},
                            "pipeline": {"batch_max_wait_ms": 50}, "forecast": {"enabled": False}}, base_dir=tmp_path)
    node = Node(cfg)
    node.start(forecasts=False)
    try:
        node.mqtt.wait_connected(10)
        publish(mosquitto.url, [Message("gh1/fan-ctrl/sensor/power_factor/state", b"nan", 0),
                                Message("gh1/fan-ctrl/status", b"online", 0),
                                Message("gh1/fan-ctrl/sensor/power_factor/state", b"0.93", 0)])
        assert wait(lambda: node.stats.messages == 3)
        assert node.store.outcome_counts() == {"stored": 2, "non_uplink": 1}
        (s,) = node.store.series()
        assert (s.key.site, s.key.zone, s.key.device, s.key.quantity) == ("gh1", "house-1", "fan-ctrl", "power_factor")
        assert s.points == 2 and s.last_value == 0.93 and s.unit == "1"
        served = node.store.query(s.id, None, None)
        assert served["value"].tolist() == [0.93]  # the gap is kept but never served as a value
        rows = [(None if r.value != r.value else float(r.value), int(r.quality))
                for r in node.store.rows().sort_values("ts", kind="stable").itertuples()]
        assert (rows[0][0] is None or math.isnan(rows[0][0])) and rows[0][1] == int(Quality.MISSING)  # a gap
        assert [(d, k, v) for _, d, k, v in node.store.device_events()] == [("fan-ctrl", "availability", "online")]
        assert node.store.deadletter_counts() == {}
    finally:
        node.stop()
