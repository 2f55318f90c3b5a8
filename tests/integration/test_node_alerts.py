"""The whole chain on a running node (`greennanny run` as a process): readings over a real
Mosquitto -> derived VPD -> rules -> alerts -> MQTT and webhook notifications; a SIGKILL while
the alerts fire does not notify them again, and the episode resolves once when it cools."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from greennanny.runtime.broker import free_port
from tests.integration.nodeproc import NodeProcess, wait, write_config
from tests.integration.test_alert_delivery import Receiver, receiver  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration

RULES = """
[derived]
interval_s = 1
[alerts]
interval_s = 1
[[alerts.rules]]
name = "heat"
quantity = "air_temperature"
value = 30.0
clear = 28.0
[[alerts.rules]]
name = "dry-air"
quantity = "vpd"
value = 2.0
clear = 1.5
[[alerts.notifiers]]
name = "ops-mqtt"
kind = "mqtt"
topic_prefix = "gh/alerts"
[[alerts.notifiers]]
name = "ops-hook"
kind = "webhook"
url = "{url}"
backoff_s = 0.2
"""


class Listener:
    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-listener")
        self.c.on_message = self._msg
        self.c.connect(host, int(port))
        self.c.subscribe("gh/alerts/events", qos=1)
        self.c.loop_start()

    def _msg(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.events.append(json.loads(msg.payload))

    def kinds(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(e["rule"], e["event"]) for e in self.events]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def publish(url: str, readings: list[tuple[float, float]]) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sensor")
    c.connect(host, int(port))
    c.loop_start()
    now = time.time()
    for i, (t, rh) in enumerate(readings):
        ts = now - (len(readings) - i) * 60
        c.publish("greennanny/gh/z1/th1", json.dumps({"air_temperature": t, "relative_humidity": rh, "ts": ts}),
                  qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def test_readings_to_notifications_on_a_running_node(tmp_path: Path, mosquitto, receiver: Receiver) -> None:  # noqa: F811
    port = free_port()
    cfg = write_config(tmp_path / "node.toml", broker_url=mosquitto.url, api_port=port, data_dir=tmp_path / "data",
                       extra=RULES.format(url=receiver.url))
    cfg.write_text(cfg.read_text().replace('[node]\n', '[node]\nsite = "gh"\n'))
    api = f"http://127.0.0.1:{port}"
    listener = Listener(mosquitto.url)
    node = NodeProcess(cfg, tmp_path / "node.log")
    node.start(api)
    try:
        publish(mosquitto.url, [(25.0, 60.0)] * 3 + [(33.0, 30.0)] * 3)  # VPD at 33 degC, 30 %: 3.5 kPa
        assert wait(lambda: {("heat", "firing"), ("dry-air", "firing")} <= set(listener.kinds()), timeout=30), \
            (listener.kinds(), node.log.read_text()[-3000:])
        assert wait(lambda: len(receiver.accepted()) >= 2, timeout=15)
        posted = {p.event["rule"]: p for p in receiver.snapshot()}
        assert posted["dry-air"].event["series"]["device"] == "derived"
        assert posted["dry-air"].event["value"] == pytest.approx(3.518, abs=0.01)
        assert all(p.key == p.event["event_id"] for p in receiver.snapshot())
        body = httpx.get(api + "/alerts", params={"state": "open"}).json()
        assert sorted(a["rule"] for a in body["alerts"]) == ["dry-air", "heat"]

        node.kill()  # SIGKILL while both fire
        node = NodeProcess(cfg, tmp_path / "node.log")
        node.start(api)
        publish(mosquitto.url, [(33.5, 30.0)] * 2)  # still hot after the restart
        time.sleep(4)  # several rounds
        assert sorted(listener.kinds()) == [("dry-air", "firing"), ("heat", "firing")]
        assert len(set(receiver.accepted())) == 2

        publish(mosquitto.url, [(24.0, 70.0)] * 2)  # the vents opened
        assert wait(lambda: {("heat", "resolved"), ("dry-air", "resolved")} <= set(listener.kinds()), timeout=30)
        assert wait(lambda: len(set(receiver.accepted())) == 4, timeout=15)
        assert sorted(listener.kinds()).count(("heat", "firing")) == 1
        assert httpx.get(api + "/alerts", params={"state": "open"}).json()["alerts"] == []
    finally:
        listener.close()
        node.stop()
