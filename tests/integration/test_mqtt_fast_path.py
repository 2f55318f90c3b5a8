"""The node's own PUBLISH reader (`BufferedClient._gn_publishes`) against a real Mosquitto.

It parses packets out of 256 KiB reads, so the cases that matter are packets cut by the end of a
read, every size of MQTT's remaining-length field (1 to 3 bytes here), a packet larger than a
whole read, QoS 0 and 1 mixed, non-ASCII topics, and paho's own packets in between. Messages are
queued while the subscriber is offline, so they arrive as one burst and fill whole reads.
"""

from __future__ import annotations

import os
import queue
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from greennanny.config import config_from_dict
from greennanny.ingest.mqtt import MqttInput
from greennanny.model import Uplink
from greennanny.runtime.broker import Mosquitto
from greennanny.runtime.clock import SystemClock

pytestmark = pytest.mark.integration

# Remaining length 1 byte (< 128), 2 bytes (< 16,384), 3 bytes (< 2,097,152); 300 KB > one read.
SIZES = [0, 1, 90, 127, 128, 200, 5_000, 16_370, 16_400, 70_000, 300_000]


def _input(broker: Mosquitto, client_id: str, inbox: queue.SimpleQueue[list[Uplink]]) -> MqttInput:
    cfg = config_from_dict({"mqtt": {"url": broker.url, "client_id": client_id,
                                     "subscriptions": [{"topic": "fast/#", "format": "json"}]}}).mqtt
    return MqttInput(cfg, inbox, SystemClock())


def _drain(inbox: queue.SimpleQueue[list[Uplink]], n: int, sub: MqttInput, timeout: float = 30) -> list[Uplink]:
    """Up to `n` messages, each run acked as it arrives (the broker's in-flight window is 1,000)."""
    got: list[Uplink] = []
    end = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        try:
            run = inbox.get(timeout=0.5)
        except queue.Empty:
            continue
        sub.ack_batch(run)
        got += run
    return got


def test_burst_of_mixed_sizes_and_qos_arrives_whole_and_in_order(mosquitto: Mosquitto) -> None:
    client_id = f"fast-{uuid.uuid4().hex[:8]}"
    inbox: queue.SimpleQueue[list[Uplink]] = queue.SimpleQueue()
    first = _input(mosquitto, client_id, inbox)
    first.start()
    first.wait_connected(10)
    time.sleep(0.3)  # the SUBACK: the session now holds the subscription
    first.stop()

    rng = __import__("random").Random(7)
    sent: list[tuple[str, bytes, int]] = []
    for i in range(1500):
        size = SIZES[i % len(SIZES)] if i % 3 == 0 else rng.randrange(0, 700)
        topic = f"fast/{'zone-é' if i % 5 == 0 else 'zone'}/{i % 7}"
        sent.append((topic, os.urandom(size), 1 if i % 4 else 0))
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{client_id}")
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    infos = [pub.publish(t, p, qos=q) for t, p, q in sent]
    for info in infos:
        info.wait_for_publish(timeout=30)
    pub.disconnect()
    pub.loop_stop()

    # QoS 0 messages are not queued for an offline session: only the QoS 1 ones come back.
    expected = [(t, p) for t, p, q in sent if q == 1]
    second = _input(mosquitto, client_id, inbox)
    second.start()
    try:
        got = _drain(inbox, len(expected), second)
        assert [(u.topic, u.payload) for u in got] == expected
        assert all(u.qos == 1 and u.mid > 0 for u in got)
        assert second.client.gn_fast_packets > len(expected) // 2, "the burst should mostly take the fast path"
        time.sleep(0.5)  # the PUBACKs leave
    finally:
        second.stop()

    # Every PUBACK framed right: the broker has nothing left to redeliver for this session.
    third = _input(mosquitto, client_id, inbox)
    third.start()
    try:
        third.wait_connected(10)
        assert _drain(inbox, 1, third, timeout=2) == []
    finally:
        third.stop()


def test_live_qos0_stream_with_pings_between(mosquitto: Mosquitto) -> None:
    """Connected subscriber, a publisher sending QoS 0 and 1 while paho's own keepalive runs."""
    inbox: queue.SimpleQueue[list[Uplink]] = queue.SimpleQueue()
    sub = _input(mosquitto, f"live-{uuid.uuid4().hex[:8]}", inbox)
    sub.start()
    sub.wait_connected(10)
    time.sleep(0.3)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"livepub-{uuid.uuid4().hex[:8]}")
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    sent = [(f"fast/live/{i % 3}", f"{i}:".encode() + b"x" * (i % 300), i % 2) for i in range(3000)]
    try:
        for t, p, q in sent:
            pub.publish(t, p, qos=q)
        got = _drain(inbox, len(sent), sub)
        assert sorted((u.topic, u.payload) for u in got) == sorted((t, p) for t, p, _ in sent)
        assert [u.payload for u in got if u.qos == 1] == [p for _, p, q in sent if q == 1]
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.stop()
