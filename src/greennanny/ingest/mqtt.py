"""The node's MQTT client: paho-mqtt 2.x with manual acknowledgement.

Why manual ack: a QoS 1 PUBACK tells the broker it may forget the message. We send it only after
the batch holding the message is committed to the store (the runtime calls `ack` in receive
order), so a crash between receipt and commit makes the broker redeliver, never lose.
The session is persistent (clean_session off, fixed client id): while the node is down, the
broker queues QoS 1 messages for it. paho reconnects by itself; we resubscribe on every connect.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from greennanny.config import MqttConfig
from greennanny.errors import BrokerError
from greennanny.model import Uplink
from greennanny.runtime.clock import Clock

log = logging.getLogger("greennanny.mqtt")


class MqttInput:
    def __init__(self, cfg: MqttConfig, inbox: queue.SimpleQueue[Uplink], clock: Clock, *,
                 password: str | None = None, client_id: str | None = None) -> None:
        self.cfg = cfg
        self.inbox = inbox
        self.clock = clock
        self.connected = threading.Event()
        self.qos0_on_qos1: dict[str, int] = {}
        self.connects = 0
        self._stopping = False
        u = urlparse(cfg.url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (8883 if u.scheme == "mqtts" else 1883)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or cfg.client_id,
                                  clean_session=False, manual_ack=True)
        if cfg.username:
            self.client.username_pw_set(cfg.username, password)
        if u.scheme == "mqtts":
            ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
            self.client.tls_set_context(ctx)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # paho callbacks run on paho's network thread: keep them short, never raise.
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                    properties: object) -> None:
        if getattr(reason_code, "is_failure", False):
            log.error("broker %s:%s refused the connection: %s", self.host, self.port, reason_code)
            return
        self.connects += 1
        subs: list[tuple[str, int]] = [(s.topic, int(self.cfg.qos)) for s in self.cfg.subscriptions]
        client.subscribe(subs)
        log.info("connected to %s:%s (session present: %s); subscribed %s", self.host, self.port,
                 getattr(flags, "session_present", "?"), [s for s, _ in subs])
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                       properties: object) -> None:
        self.connected.clear()
        if self._stopping:
            return
        log.warning("disconnected from %s:%s (%s); paho reconnects", self.host, self.port, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.qos == 0 and self.cfg.qos == 1:
            n = self.qos0_on_qos1.get(msg.topic, 0)
            if n == 0:
                log.warning("QoS 0 message on %s although we subscribed at QoS 1: the publisher sends QoS 0, "
                            "so messages are lost while we are disconnected (set the publisher to QoS 1)",
                            msg.topic)
            self.qos0_on_qos1[msg.topic] = n + 1
        self.inbox.put(Uplink(msg.topic, bytes(msg.payload), self.clock.now_ns(), msg.qos, msg.mid))

    def start(self) -> None:
        try:
            self.client.connect_async(self.host, self.port, keepalive=self.cfg.keepalive_s)
        except (OSError, ValueError) as exc:
            raise BrokerError(f"cannot connect to {self.cfg.url}: {exc}") from exc
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> None:
        if not self.connected.wait(timeout):
            raise BrokerError(f"no connection to the broker at {self.cfg.url} after {timeout:.0f} s")

    def ack(self, up: Uplink) -> None:
        if up.qos > 0:
            self.client.ack(up.mid, up.qos)

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
