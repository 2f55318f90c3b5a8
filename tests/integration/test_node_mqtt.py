"""The node's MQTT client against a real Mosquitto: QoS 0 warning, reconnect and resubscribe."""

from __future__ import annotations

import logging

import pytest

from greennanny.config import config_from_dict
from greennanny.ingest.replay import Message, publish
from greennanny.runtime.node import Node
from tests.integration.nodeproc import wait

pytestmark = pytest.mark.integration
T0 = 1_750_000_000 * 10**9


def node_for(mosquitto, tmp_path) -> Node:
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path / "node")}, "mqtt": {"url": mosquitto.url},
                            "pipeline": {"mode": "backfill", "batch_max_wait_ms": 50},
                            "forecast": {"enabled": False}}, base_dir=tmp_path)
    node = Node(cfg)
    node.start(forecasts=False)
    node.mqtt.wait_connected(10)
    return node




def msg(i: int) -> Message:
    ts = T0 + i * 10**9
    return Message("greennanny/gh/house-1/probe", f'{{"co2": {400 + i}, "ts": {ts}}}'.encode(), ts)


def test_qos0_messages_on_a_qos1_subscription_raise_a_warning(mosquitto, tmp_path, caplog):
    node = node_for(mosquitto, tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="greennanny.mqtt"):
            publish(mosquitto.url, [msg(i) for i in range(3)], qos=0)
            assert wait(lambda: node.stats.messages == 3)
        assert node.mqtt.qos0_on_qos1 == {"greennanny/gh/house-1/probe": 3}
        warnings = [r for r in caplog.records if "QoS 0" in r.getMessage()]
        assert len(warnings) == 1 and "set the publisher to QoS 1" in warnings[0].getMessage()
    finally:
        node.stop()


def test_node_reconnects_and_resubscribes_after_a_broker_restart(mosquitto, tmp_path):
    node = node_for(mosquitto, tmp_path)
    try:
        publish(mosquitto.url, [msg(0)])
        assert wait(lambda: node.stats.points == 1)
        mosquitto.restart(graceful=True)
        assert wait(lambda: node.mqtt.connects >= 2 and node.mqtt.connected.is_set(), timeout=40)
        publish(mosquitto.url, [msg(1), msg(2)])
        assert wait(lambda: node.stats.points == 3)
        assert node.store.outcome_counts() == {"stored": 3}
    finally:
        node.stop()


def test_messages_published_while_the_node_is_away_arrive_when_it_returns(mosquitto, tmp_path):
    """The persistent session: QoS 1 messages queue in the broker while the node is stopped."""
    node = node_for(mosquitto, tmp_path)
    node.stop()
    publish(mosquitto.url, [msg(i) for i in range(50)])
    node = node_for(mosquitto, tmp_path)
    try:
        assert wait(lambda: node.stats.points == 50)
    finally:
        node.stop()
