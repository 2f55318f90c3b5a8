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
import time
from collections.abc import Callable
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

from greennanny.config import MqttConfig
from greennanny.errors import BrokerError
from greennanny.model import Uplink
from greennanny.runtime.clock import Clock

log = logging.getLogger("greennanny.mqtt")

_READ_CHUNK = 256 * 1024
_PUBACK = 0x40


class BufferedClient(mqtt.Client):
    """paho's client with a read buffer and batched acknowledgements.

    Why: paho reads one packet per `select()`, with a `recv(1)` for the command byte, one per byte of
    the remaining length and one for the body, and each PUBACK from another thread costs a wake-up
    write plus its own `send()`: about eight system calls per message, which capped a node at a
    third of what the broker delivers (docs/benchmarks.md). Here one `recv` of up to 256 KiB feeds
    as many packets as it holds, `loop_read` drains until the socket would block, and `ack_many`
    queues a whole batch of PUBACKs as one write. Protocol handling (packets, sessions, reconnects,
    TLS) stays paho's; only its byte source and the ack framing change. Overrides private paho
    methods, so the dependency is pinned to paho-mqtt 2.x and tests/integration cover it.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._gn_buf = b""
        self._gn_pos = 0
        # Called on paho's network thread with each run of PUBLISH packets read in one pass; None
        # leaves every packet to paho and `on_message`.
        self.on_publishes: Callable[[list[tuple[str, bytes, int, int]]], None] | None = None
        self.gn_fast_packets = 0  # PUBLISH packets read by `_gn_publishes` (the rest went through paho)

    def _sock_recv(self, bufsize: int) -> bytes:
        pos, buf = self._gn_pos, self._gn_buf
        have = len(buf) - pos
        if have < bufsize:
            try:
                chunk = super()._sock_recv(_READ_CHUNK)
            except BlockingIOError:
                if not have:
                    raise
                chunk = None
            if chunk == b"" and not have:
                return b""  # the peer closed the connection: paho treats an empty read as lost
            if chunk:
                buf = buf[pos:] + chunk
                pos, have = 0, len(buf)
        n = min(bufsize, have)
        self._gn_buf, self._gn_pos = buf, pos + n
        return buf[pos:pos + n]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """Read packets until the socket would block (paho stops after one, then selects again).

        Whole QoS 0/1 PUBLISH packets at the head of the buffer go through `_gn_publishes`; paho
        reads everything else (its own packets, a packet cut by the end of a chunk, QoS 2) as before.
        """
        while True:
            if self._sock is None:
                return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
            if self.on_publishes is not None and self._in_packet["command"] == 0 and self._gn_pos < len(self._gn_buf):
                self._gn_publishes()
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN:
                return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def _gn_publishes(self) -> None:
        """Take every complete QoS 0/1 PUBLISH at the head of the read buffer in one pass.

        Why: paho spends ~30 us per message on its packet state machine, an `MQTTMessage`, its
        topic-callback matcher and a callback; here a message costs a slice of the buffer. MQTT
        3.1.1 only (v5 PUBLISH carries properties; the node connects with 3.1.1). The batch goes to
        `on_publishes` as (topic, payload, qos, mid) tuples in receive order. Stops at the first
        packet it does not take whole, which paho then reads, so ordering is kept.
        """
        deliver = self.on_publishes
        if deliver is None or self._protocol != mqtt.MQTTv311:
            return
        buf, pos = self._gn_buf, self._gn_pos
        end = len(buf)
        out: list[tuple[str, bytes, int, int]] = []
        while pos + 4 <= end:
            cmd = buf[pos]
            if cmd & 0xF0 != 0x30 or cmd & 0x06 == 0x04:  # not a PUBLISH, or QoS 2 (needs PUBREC)
                break
            i, mult, rl, b = pos + 1, 1, 0, 128
            while b & 128 and i < end and mult <= 0x200000:
                b = buf[i]
                rl += (b & 127) * mult
                mult <<= 7
                i += 1
            if b & 128 or i + rl > end or rl < 2:  # length cut off by the chunk's end, or malformed
                break
            body_end = i + rl
            t1 = i + 2 + ((buf[i] << 8) | buf[i + 1])
            qos = (cmd >> 1) & 3
            p0 = t1 + 2 if qos else t1
            if p0 > body_end:
                break  # malformed: paho reports it
            try:
                topic = buf[i + 2:t1].decode()
            except UnicodeDecodeError:
                break  # paho has its own handling for an invalid topic
            out.append((topic, buf[p0:body_end], qos, (buf[t1] << 8) | buf[t1 + 1] if qos else 0))
            pos = body_end
        if out:
            self._gn_pos = pos
            self.gn_fast_packets += len(out)
            with self._msgtime_mutex:
                self._last_bytes_received = mqtt.time_func()
            deliver(out)

    def _reset_sockets(self, sockpair_only: bool = False) -> None:
        self._gn_buf, self._gn_pos = b"", 0  # bytes of a lost connection must not prefix the next one
        super()._reset_sockets(sockpair_only)

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK every QoS 1 message id in `mids`, in order, as one queued write.

        A PUBACK is four bytes (type, remaining length 2, packet id); MQTT 5 allows omitting the
        reason code when it is success, so the same bytes serve 3.1.1 and 5.
        """
        if mids:
            data = b"".join(b"\x40\x02" + (m & 0xFFFF).to_bytes(2, "big") for m in mids)
            self._packet_queue(_PUBACK, data, 0, 0)


class MqttInput:
    def __init__(self, cfg: MqttConfig, inbox: queue.SimpleQueue[list[Uplink]], clock: Clock, *,
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
        self.client = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or cfg.client_id,
                                  clean_session=False, manual_ack=True)
        if cfg.username:
            self.client.username_pw_set(cfg.username, password)
        if u.scheme == "mqtts":
            ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
            self.client.tls_set_context(ctx)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self._fails, self._fail_logged = 0, 0.0
        self.client.on_message = self._on_message
        self.client.on_publishes = self._on_publishes

    # paho callbacks run on paho's network thread: keep them short, never raise.
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                    properties: object) -> None:
        if getattr(reason_code, "is_failure", False):
            log.error("broker %s:%s refused the connection: %s", self.host, self.port, reason_code)
            return
        self.connects += 1
        if self._fails:
            log.info("reached the broker %s:%s after %d failed attempts", self.host, self.port, self._fails)
            self._fails = 0
        subs: list[tuple[str, int]] = [(s.topic, int(self.cfg.qos)) for s in self.cfg.subscriptions]
        client.subscribe(subs)
        log.info("connected to %s:%s (session present: %s); subscribed %s", self.host, self.port,
                 getattr(flags, "session_present", "?"), [s for s, _ in subs])
        self.connected.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        """The broker cannot be reached (refused, no route, DNS). Said at the first failure and
        then once a minute, so an operator sees it in the log, not only as mqtt_connected=false
        in /health; paho keeps retrying (1-30 s)."""
        self._fails += 1
        now = time.monotonic()
        if self._fails == 1 or now - self._fail_logged >= 60:
            self._fail_logged = now
            log.warning("cannot reach the broker at %s:%s (%d attempts so far); retrying every 1-30 s. "
                        "Is it running, and is mqtt.url right?", self.host, self.port, self._fails)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                       properties: object) -> None:
        self.connected.clear()
        if self._stopping:
            return
        log.warning("disconnected from %s:%s (%s); paho reconnects", self.host, self.port, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.qos == 0 and self.cfg.qos == 1:
            self._qos0(msg.topic)
        self.inbox.put([Uplink(msg.topic, bytes(msg.payload), self.clock.now_ns(), msg.qos, msg.mid)])

    def _on_publishes(self, msgs: list[tuple[str, bytes, int, int]]) -> None:
        """A run of PUBLISH packets read in one pass: one receive time, one inbox item."""
        now = self.clock.now_ns()
        if self.cfg.qos == 1:
            for topic, _, qos, _ in msgs:
                if qos == 0:
                    self._qos0(topic)
        self.inbox.put([Uplink(t, p, now, q, m) for t, p, q, m in msgs])

    def _qos0(self, topic: str) -> None:
        n = self.qos0_on_qos1.get(topic, 0)
        if n == 0:
            log.warning("QoS 0 message on %s although we subscribed at QoS 1: the publisher sends QoS 0, "
                        "so messages are lost while we are disconnected (set the publisher to QoS 1)", topic)
        self.qos0_on_qos1[topic] = n + 1

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

    def ack_batch(self, ups: list[Uplink]) -> None:
        """Acknowledge a committed batch in receive order (QoS 2 is never subscribed: cfg.qos <= 1)."""
        self.client.ack_many([u.mid for u in ups if u.qos == 1])

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
