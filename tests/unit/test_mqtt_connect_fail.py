"""A node whose broker is down says so in its log (not only as mqtt_connected=false in /health)."""

from __future__ import annotations

import logging
import queue
import time

import pytest

from greennanny.config import config_from_dict
from greennanny.ingest.mqtt import MqttInput
from greennanny.model import Uplink
from greennanny.runtime.broker import free_port
from greennanny.runtime.clock import SystemClock


def test_unreachable_broker_is_logged_once_then_retried(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens here
    cfg = config_from_dict({"mqtt": {"url": f"mqtt://127.0.0.1:{port}"}}).mqtt
    inbox: queue.SimpleQueue[list[Uplink]] = queue.SimpleQueue()
    m = MqttInput(cfg, inbox, SystemClock())
    with caplog.at_level(logging.WARNING, logger="greennanny.mqtt"):
        m.start()
        try:
            end = time.monotonic() + 10
            while m._fails < 2 and time.monotonic() < end:
                time.sleep(0.1)
        finally:
            m.stop()
    said = [r.getMessage() for r in caplog.records if "cannot reach the broker" in r.getMessage()]
    assert m._fails >= 2, "paho should have retried"
    assert said == [(f"cannot reach the broker at 127.0.0.1:{port} (1 attempts so far); retrying every 1-30 s. "
                     "Is it running, and is mqtt.url right?")]
    assert not m.connected.is_set()
