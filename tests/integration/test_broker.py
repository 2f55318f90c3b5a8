"""The private Mosquitto keeps QoS 1 messages for offline persistent sessions, across restarts.

Store-and-forward rests on this: a gateway subscriber that drops off the network must find every
QoS 1 reading waiting when it reconnects, even if the broker was restarted meanwhile.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.reasoncodes import ReasonCode

from greennanny.errors import BrokerError, ConfigError
from greennanny.runtime.broker import Mosquitto, MosquittoConfig, render_config

pytestmark = pytest.mark.integration

TIMEOUT_S = 10.0
TOPIC = "greennanny/test/readings"


def _conf_values(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            values.setdefault(key, []).append(value)
    return values


class Subscriber:
    """A persistent-session subscriber whose messages land in a queue, waits bounded."""

    def __init__(self, broker: Mosquitto, client_id: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.session_present: bool | None = None
        self.connack: ReasonCode | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        # Callbacks are set before connect: queued messages arrive right after the CONNACK.
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_args: self._subscribed.set()
        self.client.on_message = lambda _client, _userdata, msg: self.messages.put(msg)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        assert self._connected.wait(TIMEOUT_S), "subscriber got no CONNACK"
        assert self.connack is not None and not self.connack.is_failure, (
            f"broker refused the subscriber: {self.connack}"
        )

    def _on_connect(self, *args: Any) -> None:
        # Asserting here would only kill paho's thread; record and let the test thread assert.
        _client, _userdata, flags, self.connack, _props = args
        self.session_present = bool(flags.session_present)
        self._connected.set()

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(TIMEOUT_S), "subscriber got no SUBACK"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish_qos1(broker: Mosquitto, payload: bytes) -> None:
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex}")
    publisher.connect(broker.host, broker.port, keepalive=30)
    publisher.loop_start()
    try:
        info = publisher.publish(TOPIC, payload, qos=1)
        info.wait_for_publish(timeout=TIMEOUT_S)
        assert info.is_published(), "no PUBACK from the broker"
    finally:
        publisher.disconnect()
        publisher.loop_stop()


def _offline_delivery(broker: Mosquitto, restart_between: bool) -> None:
    client_id = f"gateway-{uuid.uuid4().hex[:8]}"
    subscriber = Subscriber(broker, client_id)
    subscriber.subscribe(TOPIC)
    subscriber.close()

    payload = f"reading-{uuid.uuid4().hex}".encode()
    _publish_qos1(broker, payload)
    if restart_between:
        broker.restart(graceful=True)

    subscriber = Subscriber(broker, client_id)
    try:
        assert subscriber.session_present, "the broker forgot the persistent session"
        message = subscriber.messages.get(timeout=TIMEOUT_S)
        assert message.payload == payload
        assert message.qos == 1
        assert message.topic == TOPIC
    finally:
        subscriber.close()


def test_config_is_durable(tmp_path: Path) -> None:
    values = _conf_values(render_config(MosquittoConfig(data_dir=tmp_path, port=18830)))

    assert values["persistence"] == ["true"]
    assert int(values["autosave_interval"][0]) <= 10
    assert int(values["max_queued_messages"][0]) >= 100_000
    assert int(values["max_inflight_messages"][0]) >= 1_000
    assert values["listener"] == ["18830 127.0.0.1"]
    assert values["persistence_location"] == [f"{tmp_path.resolve()}/"]
    if os.geteuid() == 0:  # else mosquitto drops to a user that cannot write data_dir
        assert values["user"] == ["root"]


def test_config_refuses_weaker_durability(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="autosave_interval_s"):
        MosquittoConfig(data_dir=tmp_path, autosave_interval_s=60)
    with pytest.raises(ConfigError, match="max_queued_messages"):
        MosquittoConfig(data_dir=tmp_path, max_queued_messages=1000)


def test_qos1_waits_for_offline_persistent_session(mosquitto: Mosquitto) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    _offline_delivery(mosquitto, restart_between=False)


def test_qos1_survives_graceful_restart(mosquitto: Mosquitto) -> None:
    port, data_dir = mosquitto.port, mosquitto.cfg.data_dir
    _offline_delivery(mosquitto, restart_between=True)
    assert (mosquitto.port, mosquitto.cfg.data_dir) == (port, data_dir)
    assert (data_dir / "mosquitto.db").exists()


def test_start_on_taken_port_names_the_log(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = Mosquitto(MosquittoConfig(data_dir=tmp_path, port=port))

        with pytest.raises(BrokerError) as failure:
            broker.start(timeout=TIMEOUT_S)

    assert str(broker.log_path) in str(failure.value)
    assert "Address already in use" in str(failure.value)
    assert not broker.running
