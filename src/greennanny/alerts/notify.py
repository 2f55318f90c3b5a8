"""Notifiers (webhook, MQTT) and the dispatcher that drains the alert outbox into them.

Why an outbox and a thread per notifier: an event is written with its deliveries in the round
that made it (tables.py), so nothing is lost to a crash or a receiver that is down; each notifier
drains its own deliveries on its own thread, so a webhook that hangs or refuses connections never
holds up the MQTT notifications, the other notifiers or the rule engine. A notifier makes one
attempt per call and says, by the error it raises, whether trying again can help
(`NotifyUnavailable`: down, timeout, 5xx, 408, 429) or not (`NotifyRefused`: another 4xx); the
dispatcher keeps the schedule: backoff from `backoff_s` doubling up to `backoff_max_s`, and
`give_up_h` after which an undelivered event is marked failed. Time comes from the node's clock.

Delivery is at least once, and receivers deduplicate by the event id: it is the webhook's
`Idempotency-Key` header and the `event_id` of every MQTT payload. While a notifier is failing,
its thread holds back until the retry time of the event that failed and then tries the oldest
due event first, so events arrive in order and a receiver that is down is probed once per backoff
step, not once per event.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlparse

import httpx
import paho.mqtt.client as mqtt

from greennanny import __version__
from greennanny.alerts import tables
from greennanny.alerts.config import NotifierConfig
from greennanny.config import Config, MqttConfig
from greennanny.errors import BrokerError, ConfigError, NotifyRefused, NotifyUnavailable
from greennanny.runtime.clock import Clock
from greennanny.store.duckdb import DuckDBStore

log = logging.getLogger("greennanny.alerts.notify")

_NS = 1_000_000_000
_FOREVER_NS = 2**62


class Notifier(Protocol):
    """One attempt to deliver one event; the same event may be sent again (same `event_id`) and
    the receiver must see it once. Raises `NotifyUnavailable` (retry later) or `NotifyRefused`."""

    name: str

    def send(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def _json(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, default=str)


class WebhookNotifier:
    """HTTP POST of the event as JSON, `Idempotency-Key: <event_id>`, a bearer token if given.

    `timeout_s` bounds the connection and the wait for the answer (httpx applies it to connect,
    write and read each), so a receiver that accepts and never answers is a failed attempt.
    The token is only ever a header: it is taken out of any error text (a receiver may echo it).
    """

    def __init__(self, cfg: NotifierConfig, token: str | None = None, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.name = cfg.name
        self.url = cfg.url
        self.timeout_s = cfg.timeout_s
        self._token = token or None
        headers = {"Content-Type": "application/json", "User-Agent": f"greennanny/{__version__}"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(cfg.timeout_s), transport=transport,
                                    follow_redirects=False)

    def _clean(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def send(self, event: dict[str, Any]) -> None:
        body = _json(event).encode()
        try:
            resp = self._client.post(self.url, content=body, headers={"Idempotency-Key": str(event["event_id"])})
        except httpx.TimeoutException as exc:
            raise NotifyUnavailable(f"{self.url}: no answer within {self.timeout_s:g} s "
                                    f"({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:  # refused, reset, DNS, TLS, a broken answer
            raise NotifyUnavailable(self._clean(f"{self.url}: {type(exc).__name__}: {exc}")) from exc
        status = resp.status_code
        if 200 <= status < 300:
            return
        answer = self._clean(f"{self.url} answered HTTP {status} {resp.reason_phrase}: {resp.text[:200].strip()}")
        if status in (408, 429) or status >= 500:
            raise NotifyUnavailable(answer)
        if 300 <= status < 400:
            answer += " (redirects are not followed: set url to the final address)"
        raise NotifyRefused(answer)

    def close(self) -> None:
        self._client.close()


class MqttNotifier:
    """Publishes each event at QoS 1 on `<prefix>/events` and the alert's state as of that event
    (the same JSON, retained, QoS 1) on `<prefix>/state/<rule>/<series id>`; `send` returns once
    the broker acknowledged both (PUBACK) within `timeout_s`.

    Its own paho client (`<mqtt.client_id>-alerts`, the node's broker settings) connects in the
    background and reconnects by itself; while it is not connected, `send` waits up to
    `timeout_s` and raises `NotifyUnavailable`.
    """

    def __init__(self, cfg: NotifierConfig, mqtt_cfg: MqttConfig, password: str | None = None, *,
                 reconnect_max_s: int = 30) -> None:
        self.name = cfg.name
        self.prefix = cfg.topic_prefix.rstrip("/")
        self.timeout_s = cfg.timeout_s
        self.connected = threading.Event()
        self.connects = 0
        self._closing = False
        self._fails, self._fail_logged = 0, 0.0
        u = urlparse(mqtt_cfg.url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (8883 if u.scheme == "mqtts" else 1883)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{mqtt_cfg.client_id}-alerts",
                                  clean_session=True)
        if mqtt_cfg.username:
            self.client.username_pw_set(mqtt_cfg.username, password)
        if u.scheme == "mqtts":
            self.client.tls_set_context(ssl.create_default_context(cafile=mqtt_cfg.ca_file or None))
        self.client.reconnect_delay_set(min_delay=1, max_delay=reconnect_max_s)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        try:
            self.client.connect_async(self.host, self.port, keepalive=mqtt_cfg.keepalive_s)
        except (OSError, ValueError) as exc:
            raise BrokerError(f"notifier {self.name}: cannot connect to {mqtt_cfg.url}: {exc}") from exc
        self.client.loop_start()

    # paho callbacks run on paho's network thread: short, never raise.
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                    properties: object) -> None:
        if getattr(reason_code, "is_failure", False):
            log.error("notifier %s: broker %s:%s refused the connection: %s", self.name, self.host, self.port,
                      reason_code)
            return
        self.connects += 1
        self._fails = 0
        log.info("notifier %s: connected to %s:%s", self.name, self.host, self.port)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason_code: object,
                       properties: object) -> None:
        self.connected.clear()
        if not self._closing:
            log.warning("notifier %s: disconnected from %s:%s (%s); reconnecting", self.name, self.host, self.port,
                        reason_code)

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        self._fails += 1
        now = time.monotonic()  # only paces the log line
        if self._fails == 1 or now - self._fail_logged >= 60:
            self._fail_logged = now
            log.warning("notifier %s: cannot reach the broker at %s:%s (%d attempts); retrying", self.name,
                        self.host, self.port, self._fails)

    def send(self, event: dict[str, Any]) -> None:
        if not self.connected.wait(self.timeout_s):
            raise NotifyUnavailable(f"broker {self.host}:{self.port}: not connected (waited {self.timeout_s:g} s)")
        body = _json(event)
        topics = [(f"{self.prefix}/events", False)]
        series = event.get("series") or {}
        if event.get("rule") and series.get("id") is not None:
            topics.append((f"{self.prefix}/state/{event['rule']}/{series['id']}", True))
        deadline = time.monotonic() + self.timeout_s
        for topic, retain in topics:
            try:
                info = self.client.publish(topic, body, qos=1, retain=retain)
            except ValueError as exc:  # a topic MQTT does not allow: sending again cannot help
                raise NotifyRefused(f"topic {topic!r}: {exc}") from exc
            try:
                info.wait_for_publish(max(deadline - time.monotonic(), 0.0))
                done = info.is_published()
            except (RuntimeError, ValueError) as exc:  # not connected any more, queue full
                raise NotifyUnavailable(f"broker {self.host}:{self.port}: {topic}: {exc}") from exc
            if not done:
                raise NotifyUnavailable(f"broker {self.host}:{self.port}: no PUBACK for {topic} within "
                                        f"{self.timeout_s:g} s")

    def close(self) -> None:
        self._closing = True
        self.client.disconnect()
        self.client.loop_stop()


@dataclass(eq=False)
class _Worker:
    notifier: Notifier
    cfg: NotifierConfig
    wake: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    hold_until_ns: int = 0  # after a retryable failure: nothing is tried before this
    last_round_ns: int = -1  # node time of the last finished round
    last_error: str = ""
    blocked: bool = False  # events are due, but the oldest undelivered one is not
    error_logged: float = -1e9  # monotonic time the last failed round was logged
    failing: int = 0  # retryable failures in a row
    counts: dict[str, int] = field(default_factory=lambda: {"delivered": 0, "retried": 0, "failed": 0})


class Dispatcher:
    """Drains `alert_deliveries` into the notifiers, one thread each (see the module docstring).

    `wake()` after a round that wrote events; the threads also poll every `poll_s` (real seconds),
    so a schedule on an injected clock that jumps is noticed. The dispatcher owns the notifiers:
    `stop()` closes them.
    """

    def __init__(self, store: DuckDBStore, notifiers: Sequence[Notifier], cfgs: Sequence[NotifierConfig],
                 clock: Clock, *, poll_s: float = 1.0, batch: int = 100) -> None:
        by_name = {c.name: c for c in cfgs}
        missing = [n.name for n in notifiers if n.name not in by_name]
        if missing:
            raise ConfigError(f"alerts.notifiers: no configuration for notifier(s) {missing}")
        self.store = store
        self.clock = clock
        self.poll_s = poll_s
        self.batch = batch
        self._workers = {n.name: _Worker(n, by_name[n.name]) for n in notifiers}
        self._stopping = threading.Event()

    def start(self) -> None:
        for name, w in self._workers.items():
            w.thread = threading.Thread(target=self._run, args=(w,), name=f"notify-{name}", daemon=True)
            w.thread.start()

    def wake(self) -> None:
        for w in self._workers.values():
            w.wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self.wake()
        for name, w in self._workers.items():
            if w.thread is not None:
                w.thread.join(timeout=w.cfg.timeout_s + self.poll_s + 5)
                if w.thread.is_alive():
                    log.warning("notifier %s: its thread did not stop (a send still hangs)", name)
        for w in self._workers.values():
            try:
                w.notifier.close()
            except Exception:  # stopping must not fail; say why it was not clean
                log.warning("notifier %s did not close cleanly", w.notifier.name, exc_info=True)

    def stats(self) -> dict[str, dict[str, int]]:
        """Per notifier since start: delivered, retried (attempts that will be tried again), failed."""
        return {name: dict(w.counts) for name, w in self._workers.items()}

    def last_round_ns(self, name: str) -> int:
        """Node time at which the notifier's thread last finished a round (-1: none yet)."""
        return self._workers[name].last_round_ns

    # -- the threads ----------------------------------------------------------------------------
    def _run(self, w: _Worker) -> None:
        while not self._stopping.is_set():
            w.wake.clear()  # a wake() during the round makes the wait below return at once
            busy, nxt = False, None
            try:
                busy = self._round(w)
                nxt = None if w.blocked else self._next_ns(w)  # blocked: its retry time is not known, poll
            except Exception:  # the store is unavailable, or a bug: the outbox keeps it all, try again
                if time.monotonic() - w.error_logged >= 60:  # said once a minute, not every poll
                    w.error_logged = time.monotonic()
                    log.exception("notifier %s: dispatch round failed; trying again", w.notifier.name)
            if self._stopping.is_set():
                break
            if busy:
                continue
            now = self.clock.now_ns()
            timeout = self.poll_s if nxt is None else min(self.poll_s, max((nxt - now) / _NS, 0.01))
            w.wake.wait(timeout)

    def _next_ns(self, w: _Worker) -> int | None:
        due = tables.next_due_ns(self.store, w.notifier.name)
        return None if due is None else max(due, w.hold_until_ns)

    def _round(self, w: _Worker) -> bool:
        """Send what is due, oldest first, until a retryable failure; True if there may be more."""
        name, cfg = w.notifier.name, w.cfg
        now = self.clock.now_ns()
        w.blocked = False
        try:
            if now < w.hold_until_ns:
                return False
            rows = tables.due(self.store, name, now, limit=self.batch)
            w.blocked = bool(rows) and rows[0][0] != tables.due(self.store, name, _FOREVER_NS, limit=1)[0][0]
            if w.blocked:  # the oldest undelivered event waits for a retry set before a restart: so do the rest
                return False
            give_up_ns = int(cfg.give_up_h * 3600 * _NS)
            for event_id, payload, attempts, created_ns in rows:
                if self._stopping.is_set():
                    return False
                now = self.clock.now_ns()
                if now - created_ns >= give_up_ns:
                    self._fail(w, event_id, now, attempt=False, err=f"gave up: undelivered after {cfg.give_up_h:g} h and {attempts} "
                                                 f"attempts" + (f"; last error: {w.last_error}" if w.last_error else ""))
                    continue
                try:
                    w.notifier.send(payload)
                except NotifyRefused as exc:
                    self._fail(w, event_id, self.clock.now_ns(), f"refused: {exc}")
                    continue
                except NotifyUnavailable as exc:
                    self._retry(w, event_id, attempts, created_ns, give_up_ns, str(exc))
                    return False
                except Exception as exc:  # a notifier's bug: said with its traceback, the event kept and retried
                    log.exception("notifier %s: send raised an unexpected error", name)
                    self._retry(w, event_id, attempts, created_ns, give_up_ns, f"{type(exc).__name__}: {exc}")
                    return False
                now = self.clock.now_ns()
                tables.mark(self.store, event_id, name, status=tables.DELIVERED, now_ns=now)
                w.counts["delivered"] += 1
                if w.failing:
                    log.info("notifier %s: delivering again after %d failed attempts", name, w.failing)
                    w.failing = 0
            return len(rows) == self.batch
        finally:
            w.last_round_ns = now

    def _retry(self, w: _Worker, event_id: str, attempts: int, created_ns: int, give_up_ns: int, err: str) -> None:
        name, cfg = w.notifier.name, w.cfg
        now = self.clock.now_ns()
        w.last_error = err
        if now - created_ns >= give_up_ns:
            self._fail(w, event_id, now, f"gave up after {cfg.give_up_h:g} h and {attempts + 1} attempts: {err}")
            return
        delay_s = min(cfg.backoff_s * 2 ** min(attempts, 40), cfg.backoff_max_s)
        nxt = now + int(delay_s * _NS)
        tables.mark(self.store, event_id, name, status=tables.PENDING_DELIVERY, now_ns=now, next_ns=nxt, error=err)
        w.hold_until_ns = nxt
        w.counts["retried"] += 1
        w.failing += 1
        if w.failing == 1:
            log.warning("notifier %s: %s; events stay in the outbox and are retried (next in %g s)", name, err,
                        delay_s)
        else:
            log.debug("notifier %s: attempt failed (%d in a row): %s", name, w.failing, err)

    def _fail(self, w: _Worker, event_id: str, now: int, err: str, *, attempt: bool = True) -> None:
        tables.mark(self.store, event_id, w.notifier.name, status=tables.FAILED, now_ns=now, error=err, attempt=attempt)
        w.counts["failed"] += 1
        log.error("notifier %s: event %s failed: %s", w.notifier.name, event_id, err)


def build_notifiers(cfg: Config) -> list[Notifier]:
    """The notifiers of `[[alerts.notifiers]]`: a webhook's token from its token_file (relative to
    the config file), the MQTT ones with the node's broker settings and password."""
    out: list[Notifier] = []
    try:
        for i, n in enumerate(cfg.alerts.notifiers):
            if n.kind == "webhook":
                token = None
                if n.token_file:
                    p = cfg.path(n.token_file)
                    try:
                        token = p.read_text().strip() or None
                    except OSError as exc:
                        raise ConfigError(f"alerts.notifiers.{i}.token_file: cannot read {p}: "
                                          f"{exc.strerror or exc}") from None
                out.append(WebhookNotifier(n, token))
            else:
                out.append(MqttNotifier(n, cfg.mqtt, cfg.mqtt_password()))
    except Exception:
        for made in out:
            made.close()
        raise
    return out
