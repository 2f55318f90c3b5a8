"""Field faults BR-09 and BR-10 of ../shared/cases/field-faults.md against a real Mosquitto (the
`mosquitto` fixture of tests/conftest.py) and a real node (`node_for` of the integration tests).

The cases publish on `gh1/zone<N>/th/state` with `temperature`/`humidity` keys; the node's JSON
ingest reads `greennanny/<site>/<zone>/<device>` with canonical quantity names, so the messages
go there, with the case's values.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from tests.integration.nodeproc import wait
from tests.integration.test_node_mqtt import node_for

from greennanny.ingest.replay import Message, publish
from greennanny.model import Uplink
from greennanny.runtime.broker import Mosquitto
from greennanny.runtime.node import Node
from greennanny.runtime.pipeline import IngestPipeline
from greennanny.store.base import IngestCommit

pytestmark = pytest.mark.integration


def values(node: Node, quantity: str) -> list[float]:
    """Stored values of the node's one series of `quantity`, in time order."""
    (s,) = node.store.series(quantity=quantity)
    return node.store.query(s.id, None, None)["value"].tolist()


def ingest_alive(node: Node) -> bool:
    """The node's ingest thread still runs (before BR-09's fix an escaped exception ended it)."""
    return any(t.name == "ingest" and t.is_alive() for t in node._threads)


# -- BR-09: an exception or a bad payload never stops ingest ----------------------------------------
BR09_TOPIC = "greennanny/gh1/zone3/th"
BR09_TRUNCATED = b'{"temperature": 21.4, "humidity": '
BR09_GOOD = b'{"air_temperature": 21.6, "relative_humidity": 64.0}'


def test_BR_09_truncated_json_then_a_good_message_over_mqtt(mosquitto: Mosquitto, tmp_path: Path) -> None:
    node = node_for(mosquitto, tmp_path)
    try:
        publish(mosquitto.url, [Message(BR09_TOPIC, BR09_TRUNCATED, 0), Message(BR09_TOPIC, BR09_GOOD, 0)])
        assert wait(lambda: node.stats.messages == 2)
        assert node.store.outcome_counts() == {"dead_letter": 1, "stored": 1}
        assert node.store.deadletter_counts() == {"invalid_json": 1}  # the parse-error counter, +1
        (dl,) = node.store.deadletters()
        assert (dl["topic"], bytes(dl["payload"])) == (BR09_TOPIC, BR09_TRUNCATED)
        assert (values(node, "air_temperature"), values(node, "relative_humidity")) == ([21.6], [64.0])
        # Still connected on the first connection, still subscribed, the ingest thread alive.
        assert node.mqtt.connected.is_set() and node.mqtt.connects == 1 and ingest_alive(node)
    finally:
        node.stop()


def test_BR_09_a_time_past_2262_does_not_end_the_ingest_thread(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """node_for runs in backfill mode, where such a stamp used to raise out of the pipeline and end
    the ingest thread: the message after it was never stored, though MQTT still looked connected."""
    node = node_for(mosquitto, tmp_path)
    try:
        bad = b'{"air_temperature": 21.4, "ts": "9999-12-31T23:59:59Z"}'
        publish(mosquitto.url, [Message(BR09_TOPIC, bad, 0)])
        assert wait(lambda: node.stats.messages == 1)
        publish(mosquitto.url, [Message(BR09_TOPIC, BR09_GOOD, 0)])
        assert wait(lambda: node.stats.messages == 2)
        assert node.store.outcome_counts() == {"quarantined": 1, "stored": 1}
        assert values(node, "air_temperature") == [21.6] and ingest_alive(node)
    finally:
        node.stop()


def test_BR_09_a_bug_that_escapes_the_pipeline_keeps_the_batch_as_dead_letters_and_ingest_goes_on(
        mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The runtime's net for bugs not yet found: the pipeline is made to raise on one payload."""
    poison = b'{"air_temperature": 99.9}'
    real = IngestPipeline._process

    def buggy(self: IngestPipeline, uplinks: list[Uplink]) -> IngestCommit:
        if any(up.payload == poison for up in uplinks):
            raise RuntimeError("a bug in the pipeline")
        return real(self, uplinks)

    monkeypatch.setattr(IngestPipeline, "_process", buggy)
    node = node_for(mosquitto, tmp_path)
    try:
        with caplog.at_level(logging.ERROR, logger="greennanny.node"):
            publish(mosquitto.url, [Message(BR09_TOPIC, poison, 0)])
            assert wait(lambda: node.stats.messages == 1)
        publish(mosquitto.url, [Message(BR09_TOPIC, BR09_GOOD, 0)])
        assert wait(lambda: node.stats.messages == 2)
        (dl,) = node.store.deadletters()
        assert (dl["reason"], bytes(dl["payload"])) == ("internal_error", poison)
        assert "RuntimeError: a bug in the pipeline" in dl["detail"]
        assert any(BR09_TOPIC in r.getMessage() for r in caplog.records if r.name == "greennanny.node")
        assert values(node, "air_temperature") == [21.6] and ingest_alive(node)
    finally:
        node.stop()


# -- BR-10: subscriptions after a broker restart -----------------------------------------------------
BR10_TOPIC = "greennanny/gh1/zone1/th"


def test_BR_10_broker_restart_without_persistence_the_node_resubscribes_and_both_readings_are_stored(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    node = node_for(mosquitto, tmp_path)
    try:
        with caplog.at_level(logging.INFO, logger="greennanny.mqtt"):
            publish(mosquitto.url, [Message(BR10_TOPIC, b'{"air_temperature": 20.0}', 0)])
            assert wait(lambda: node.stats.points == 1)
            # The case's broker forgets every session on restart: persistence off.
            mosquitto.cfg.persistence = False
            mosquitto.restart(graceful=True)
            assert wait(lambda: node.mqtt.connects >= 2 and node.mqtt.connected.is_set(), timeout=40)
            reconnected = time.monotonic()
            publish(mosquitto.url, [Message(BR10_TOPIC, b'{"air_temperature": 20.5}', 0)])
            assert wait(lambda: node.stats.points == 2, timeout=10)
            assert time.monotonic() - reconnected < 5  # within a few seconds of the reconnect
        assert values(node, "air_temperature") == [20.0, 20.5]
        assert node.store.outcome_counts() == {"stored": 2}
        # The node asks for a persistent session (c0 in Mosquitto's log) on both connections ...
        log = mosquitto.log_path.read_text()
        assert log.count("as greennanny-node (p2, c0,") == 2, log[-2000:]
        # ... and, as this broker kept no session, subscribed again on the new connection: logged.
        # (The first connection was made, and logged, before the capture began.)
        (again,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("connected to")]
        assert "session present: False" in again and "subscribed" in again and "greennanny/+/+/+" in again
        assert any(r.getMessage().startswith("disconnected from") for r in caplog.records)
    finally:
        node.stop()


def test_BR_10_the_stale_data_alert_does_not_fire_across_a_broker_restart(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """BR-10's last words: 'the stale-data alert does not fire'. A stale rule of 20 s watches the
    probe through a broker restart without persistence; the readings keep coming within seconds of
    the reconnect, so no alert. Twenty-five seconds of silence afterwards does fire it (the rule
    can fire: the test is not empty)."""
    from greennanny.alerts.tables import list_alerts
    from greennanny.config import config_from_dict

    cfg = config_from_dict({"node": {"data_dir": str(tmp_path / "node")}, "mqtt": {"url": mosquitto.url},
                            "pipeline": {"batch_max_wait_ms": 50}, "forecast": {"enabled": False},
                            "alerts": {"rules": [{"name": "silent-probe", "kind": "stale",
                                                  "quantity": "air_temperature", "stale_after_s": 20}]}},
                           base_dir=tmp_path)
    node = Node(cfg)
    node.start(forecasts=False, alerts=False)  # rounds run here, on the test's word
    node.mqtt.wait_connected(10)
    try:
        publish(mosquitto.url, [Message(BR10_TOPIC, b'{"air_temperature": 20.0}', 0)])
        assert wait(lambda: node.stats.points == 1)
        node.alerts_round()
        mosquitto.cfg.persistence = False
        mosquitto.restart(graceful=True)
        assert wait(lambda: node.mqtt.connects >= 2 and node.mqtt.connected.is_set(), timeout=40)
        publish(mosquitto.url, [Message(BR10_TOPIC, b'{"air_temperature": 20.5}', 0)])
        assert wait(lambda: node.stats.points == 2, timeout=10)
        for _ in range(3):
            node.alerts_round()
        assert list_alerts(node.store) == []
        node.alerts_round(time.time_ns() + 25 * 10**9)
        (fired,) = list_alerts(node.store)
        assert (fired["rule"], fired["state"]) == ("silent-probe", "firing") and fired["value"] > 20
    finally:
        node.stop()
