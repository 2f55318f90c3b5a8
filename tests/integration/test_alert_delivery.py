"""Alert notifications against real receivers (issue 7, acceptance point 4): a webhook receiver
(http.server on a loopback port, stopped and started on the same port) and a real Mosquitto.

Events are made through the real outbox (tables.commit_round on a DuckDB store); the dispatcher
runs its real threads on a FakeClock that the tests move, so ten minutes of outage take seconds.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from greennanny.alerts import tables
from greennanny.alerts.config import NotifierConfig, RuleConfig
from greennanny.alerts.machine import FIRING, OK, Track, Transition
from greennanny.alerts.notify import Dispatcher, MqttNotifier, Notifier, WebhookNotifier, build_notifiers
from greennanny.config import MqttConfig, config_from_dict
from greennanny.errors import NotifyUnavailable
from greennanny.model import Batch, Point, SeriesKey
from greennanny.runtime.broker import Mosquitto, free_port
from greennanny.runtime.clock import FakeClock
from greennanny.store.duckdb import DuckDBStore
from tests.integration.nodeproc import wait

pytestmark = pytest.mark.integration

NS = 1_000_000_000
T0 = 1_767_225_600 * NS  # 2026-01-01T00:00Z
PREFIX = "gh1/alerts"
RULE = RuleConfig(name="hot", quantity="air_temperature", value=30.0, clear=28.0)
TOKEN = "s3cret-t0ken-7f2a"


# -- a webhook receiver --------------------------------------------------------------------------
@dataclass
class Post:
    key: str | None
    event: dict[str, Any]
    auth: str | None
    content_type: str | None
    status: int | None  # None: the receiver hung and never answered


class Receiver:
    """Records every POST. Modes: ok (200), 500, 400, echo (500 with the request's Authorization
    in the body, as a careless receiver might), hang (answers nothing until stopped). `stop` closes
    the port (connections are refused); `start` opens the same port again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mode = "ok"
        self.posts: list[Post] = []
        self.hanging = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/alerts"

    def start(self) -> None:
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                mode, release = recv.mode, recv._release
                status = {"ok": 200, "500": 500, "400": 400, "echo": 500}.get(mode)
                with recv._lock:
                    recv.posts.append(Post(self.headers.get("Idempotency-Key"), json.loads(body),
                                           self.headers.get("Authorization"), self.headers.get("Content-Type"),
                                           status))
                if status is None:  # hang: hold the connection, answer nothing
                    with recv._lock:
                        recv.hanging += 1
                    release.wait(30)
                    with recv._lock:
                        recv.hanging -= 1
                    return
                text = f"echo: {self.headers.get('Authorization')}" if mode == "echo" else "thanks"
                self.send_response(status)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def release(self) -> None:
        """End the hung requests (their clients have long given up)."""
        self._release.set()
        self._release = threading.Event()
        assert wait(lambda: self.hanging == 0, timeout=5)

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)

    def snapshot(self) -> list[Post]:
        with self._lock:
            return list(self.posts)

    def keys(self) -> list[str | None]:
        return [p.key for p in self.snapshot()]

    def accepted(self) -> list[str | None]:
        return [p.key for p in self.snapshot() if p.status == 200]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


# -- an MQTT subscriber ---------------------------------------------------------------------------
class Watcher:
    """Subscribes `topic` at QoS 1 and keeps (topic, payload, retained) of every message."""

    def __init__(self, broker: Mosquitto, topic: str, client_id: str) -> None:
        self.messages: list[tuple[str, dict[str, Any], bool]] = []
        self._lock = threading.Lock()
        self._subacked: queue.Queue[bool] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subacked.put(True)
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        assert self._subacked.get(timeout=10)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def event_ids(self) -> list[str]:
        with self._lock:
            return [m["event_id"] for t, m, _ in self.messages if t == f"{PREFIX}/events"]

    def states(self) -> dict[str, dict[str, Any]]:
        """The last message seen on each state topic."""
        with self._lock:
            return {t: m for t, m, _ in self.messages if t.startswith(f"{PREFIX}/state/")}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained_states(broker: Mosquitto, n: int) -> dict[str, dict[str, Any]]:
    """What a subscriber arriving now is told on the state topics (the retained messages)."""
    w = Watcher(broker, f"{PREFIX}/state/#", f"late-{time.monotonic_ns()}")
    try:
        assert wait(lambda: len(w.states()) >= n, timeout=5), w.states()
        assert all(retained for _, _, retained in w.messages)
        return w.states()
    finally:
        w.close()


# -- the node side -----------------------------------------------------------------------------
def make_store(path: Path) -> tuple[DuckDBStore, list[dict[str, Any]]]:
    store = DuckDBStore(path)
    keys = [SeriesKey("gh1", "z1", "t1", "air_temperature"), SeriesKey("gh1", "z2", "t2", "air_temperature")]
    store.write(Batch.from_points([Point(k, T0 - 60 * NS, 25.0) for k in keys]))
    series = [{"id": s.id, "site": s.key.site, "zone": s.key.zone, "device": s.key.device,
               "quantity": s.key.quantity, "unit": s.unit} for s in store.series()]
    assert len(series) == 2
    return store, series


def event(store: DuckDBStore, kind: str, series: dict[str, Any], now_ns: int, notifiers: list[str]) -> str:
    """One evaluation round with one firing or resolved transition: returns the event id."""
    sid = int(series["id"])
    if kind == "firing":
        track = Track(RULE.name, sid, FIRING, now_ns, now_ns)
        tr = Transition("firing", now_ns, 31.0, now_ns, 31.5)
    else:
        track = Track(RULE.name, sid, OK, 0, now_ns)
        tr = Transition("resolved", now_ns, 27.0, now_ns - 60 * NS, 31.5)
    ids = tables.commit_round(store, now_ns, [track], [tables.Change(track, tr, RULE, series, notifiers)])
    assert len(ids) == 1, f"no {kind} event written for series {sid}"
    return ids[0]


def rows(store: DuckDBStore, notifier: str) -> dict[str, dict[str, Any]]:
    return {r["event_id"]: r for r in tables.deliveries(store) if r["notifier"] == notifier}


def hook_cfg(url: str, **kw: Any) -> NotifierConfig:
    args: dict[str, Any] = {"timeout_s": 1.0, "backoff_s": 5.0, "backoff_max_s": 60.0} | kw
    return NotifierConfig(name="hook", kind="webhook", url=url, **args)


BUS = NotifierConfig(name="bus", kind="mqtt", topic_prefix=PREFIX, timeout_s=2.0, backoff_s=1.0)


def dispatcher(store: DuckDBStore, clock: FakeClock, cfgs: list[NotifierConfig], broker: Mosquitto | None,
               token: str | None = None) -> Dispatcher:
    notifiers: list[Notifier] = []
    for c in cfgs:
        if c.kind == "webhook":
            notifiers.append(WebhookNotifier(c, token))
        else:
            assert broker is not None
            notifiers.append(MqttNotifier(c, MqttConfig(url=broker.url, client_id="gn-test"), reconnect_max_s=2))
    d = Dispatcher(store, notifiers, cfgs, clock, poll_s=0.02)
    d.start()
    return d


def settle(d: Dispatcher, clock: FakeClock, *names: str) -> None:
    """Wait until each notifier's thread finished a round at the clock's present time."""
    now = clock.now_ns()
    for name in names:
        assert wait(lambda n=name: d.last_round_ns(n) >= now, timeout=10), f"{name}: no round at {now}"


# -- acceptance point 4 ------------------------------------------------------------------------
def test_webhook_down_ten_minutes_every_event_delivered_once_and_mqtt_keeps_flowing(
        mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    path = tmp_path / "node" / "greennanny.duckdb"
    store, (a, b) = make_store(path)
    cfgs = [hook_cfg(receiver.url), BUS]
    names = ["hook", "bus"]
    watcher = Watcher(mosquitto, f"{PREFIX}/#", "watcher")
    d = dispatcher(store, clock, cfgs, mosquitto)
    events: list[str] = []
    last: dict[int, str] = {}
    try:
        events.append(event(store, "firing", a, clock.now_ns(), names))  # before the outage: both ways
        last[a["id"]] = events[-1]
        d.wake()
        assert wait(lambda: receiver.accepted() == events and watcher.event_ids() == events)

        receiver.stop()  # the port is closed for ten minutes
        # step (30 s each) -> (transition, series) arriving during the outage
        schedule = {1: ("resolved", a), 2: ("firing", b), 4: ("firing", a), 7: ("resolved", b),
                    11: ("resolved", a), 13: ("firing", b), 16: ("firing", a), 19: ("resolved", b)}
        for step in range(1, 21):
            clock.advance(30)
            if step == 10:  # the node restarts mid-outage: a new dispatcher over the reopened store file
                d.stop()
                store.close()
                store = DuckDBStore(path)
                d = dispatcher(store, clock, cfgs, mosquitto)
            if step in schedule:
                kind, s = schedule[step]
                events.append(event(store, kind, s, clock.now_ns(), names))
                last[s["id"]] = events[-1]
                d.wake()
            settle(d, clock, *names)
            # MQTT keeps flowing: every event so far is on <prefix>/events and delivered for `bus`
            assert wait(lambda: set(watcher.event_ids()) == set(events), timeout=5), f"step {step}"
            assert wait(lambda s=store: {r["status"] for r in rows(s, "bus").values()} == {"delivered"}, timeout=5)
        assert receiver.keys() == events[:1], "nothing can reach a closed port"
        during = rows(store, "hook")
        head = during[events[1]]
        assert all(during[e]["status"] == "pending" for e in events[1:])
        assert head["attempts"] >= 5 and "ConnectError" in (head["last_error"] or "")
        # only the oldest undelivered event probes the receiver, once per backoff step
        assert all(during[e]["attempts"] == 0 for e in events[2:])
        retained = retained_states(mosquitto, 2)
        assert {t: m["event_id"] for t, m in retained.items()} == {
            f"{PREFIX}/state/hot/{sid}": eid for sid, eid in last.items()}
        assert retained[f"{PREFIX}/state/hot/{a['id']}"]["state"] == "firing"
        assert retained[f"{PREFIX}/state/hot/{b['id']}"]["state"] == "resolved"

        receiver.start()  # back, same port, after 10 simulated minutes
        for _ in range(20):
            clock.advance(10)
            settle(d, clock, "hook")
            if all(r["status"] == "delivered" for r in rows(store, "hook").values()):
                break
        after = rows(store, "hook")
        posts = receiver.snapshot()
        keys = [p.key for p in posts]
        dup = sum(n - 1 for n in Counter(keys).values())
        print(f"\nwebhook down 10 min: events {len(events)} ({len(schedule)} during the outage), "
              f"webhook attempts {sum(r['attempts'] for r in after.values())} "
              f"(oldest event {after[events[1]]['attempts']}), POSTs received {len(posts)}, "
              f"distinct Idempotency-Keys {len(set(keys))}, duplicates {dup}; "
              f"MQTT events received {len(watcher.event_ids())} (distinct {len(set(watcher.event_ids()))})")
        assert set(keys) == set(events)
        assert len(set(keys)) == len(events)
        assert dup == 0, f"the receiver was sent {dup} duplicates"
        assert all(p.key == p.event["event_id"] and p.status == 200 for p in posts)
        assert all(p.content_type == "application/json" for p in posts)
        assert keys[1:] == events[1:], "delivered in the order the events happened"
        assert all(r["status"] == "delivered" and r["attempts"] >= 1 for r in after.values())
        assert set(watcher.event_ids()) == set(events)
    finally:
        d.stop()
        watcher.close()
        store.close()


# -- failures of one kind or another ---------------------------------------------------------------
def test_a_500_is_retried_after_the_backoff_and_delivered(receiver: Receiver, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store, (a, _) = make_store(tmp_path / "s.duckdb")
    d = dispatcher(store, clock, [hook_cfg(receiver.url, backoff_s=5.0)], None)
    try:
        receiver.mode = "500"
        eid = event(store, "firing", a, clock.now_ns(), ["hook"])
        d.wake()
        assert wait(lambda: rows(store, "hook")[eid]["attempts"] == 1)
        row = rows(store, "hook")[eid]
        assert row["status"] == "pending" and "HTTP 500" in row["last_error"]
        assert row["next_ns"] == T0 + 5 * NS
        receiver.mode = "ok"
        clock.advance(4)  # not yet due: nothing is sent
        settle(d, clock, "hook")
        assert len(receiver.snapshot()) == 1
        clock.advance(1)
        d.wake()
        assert wait(lambda: rows(store, "hook")[eid]["status"] == "delivered")
        posts = receiver.snapshot()
        print(f"\n500 then 200: statuses {[p.status for p in posts]}, attempts {rows(store, 'hook')[eid]['attempts']}")
        assert [(p.key, p.status) for p in posts] == [(eid, 500), (eid, 200)]
        assert rows(store, "hook")[eid]["attempts"] == 2
        assert d.stats()["hook"] == {"delivered": 1, "retried": 1, "failed": 0}
    finally:
        d.stop()
        store.close()


def test_a_hanging_receiver_times_out_and_mqtt_is_not_held_up(mosquitto: Mosquitto, receiver: Receiver,
                                                              tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store, (a, b) = make_store(tmp_path / "s.duckdb")
    hook = hook_cfg(receiver.url, timeout_s=1.0)
    receiver.mode = "hang"
    # one attempt on its own: it ends, as a retryable failure, when timeout_s runs out
    alone = WebhookNotifier(hook)
    start = time.monotonic()
    with pytest.raises(NotifyUnavailable, match="no answer within 1 s"):
        alone.send({"event_id": "e-alone", "rule": "hot"})
    took = time.monotonic() - start
    alone.close()
    receiver.release()
    print(f"\nhanging receiver: one attempt took {took:.2f} s (timeout_s {hook.timeout_s:g})")
    assert hook.timeout_s <= took < hook.timeout_s + 0.5

    watcher = Watcher(mosquitto, f"{PREFIX}/#", "watcher")
    d = dispatcher(store, clock, [hook, BUS], mosquitto)
    try:
        e1 = event(store, "firing", a, clock.now_ns(), ["hook", "bus"])
        d.wake()
        assert wait(lambda: receiver.hanging == 1)
        e2 = event(store, "firing", b, clock.now_ns(), ["hook", "bus"])
        d.wake()
        # both reach MQTT while the webhook's first attempt still hangs
        assert wait(lambda: set(watcher.event_ids()) == {e1, e2}, timeout=0.9)
        assert receiver.hanging == 1 and rows(store, "hook")[e1]["attempts"] == 0
        assert {r["status"] for r in rows(store, "bus").values()} == {"delivered"}
        assert wait(lambda: rows(store, "hook")[e1]["attempts"] == 1, timeout=3)
        row = rows(store, "hook")[e1]
        assert row["status"] == "pending" and "no answer within 1 s" in row["last_error"]
    finally:
        receiver.stop()  # release the hung handler
        d.stop()
        watcher.close()
        store.close()


def test_a_400_is_failed_with_the_status_and_the_next_event_still_goes(receiver: Receiver, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store, (a, b) = make_store(tmp_path / "s.duckdb")
    d = dispatcher(store, clock, [hook_cfg(receiver.url)], None)
    try:
        receiver.mode = "400"
        e1 = event(store, "firing", a, clock.now_ns(), ["hook"])
        d.wake()
        assert wait(lambda: rows(store, "hook")[e1]["status"] == "failed")
        row = rows(store, "hook")[e1]
        print(f"\n400: status {row['status']}, attempts {row['attempts']}, last_error {row['last_error']!r}")
        assert row["attempts"] == 1 and "HTTP 400" in row["last_error"] and "refused" in row["last_error"]
        receiver.mode = "ok"
        e2 = event(store, "firing", b, clock.now_ns(), ["hook"])
        d.wake()
        assert wait(lambda: rows(store, "hook")[e2]["status"] == "delivered")
        clock.advance(3600)  # a failed delivery is never tried again
        settle(d, clock, "hook")
        assert receiver.keys() == [e1, e2]
    finally:
        d.stop()
        store.close()


def test_an_event_undelivered_after_give_up_h_is_failed(receiver: Receiver, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store, (a, b) = make_store(tmp_path / "s.duckdb")
    receiver.stop()
    hook = hook_cfg(receiver.url, give_up_h=0.01, backoff_s=10.0, backoff_max_s=20.0)  # gives up at 36 s
    d = dispatcher(store, clock, [hook], None)
    try:
        e1 = event(store, "firing", a, clock.now_ns(), ["hook"])
        d.wake()
        assert wait(lambda: rows(store, "hook")[e1]["attempts"] == 1)
        for seconds in (10, 20):  # attempts at 0, 10 and 30 s (backoff 10, 20)
            clock.advance(seconds)
            settle(d, clock, "hook")
        assert rows(store, "hook")[e1]["status"] == "pending" and rows(store, "hook")[e1]["attempts"] == 3
        e2 = event(store, "firing", b, clock.now_ns(), ["hook"])
        clock.advance(20)  # the next retry is due: e1 is 50 s old, e2 20 s
        d.wake()
        settle(d, clock, "hook")
        got = rows(store, "hook")
        print(f"\ngive_up_h 0.01: {got[e1]['status']} after {got[e1]['attempts']} attempts "
              f"({got[e1]['last_error']!r}); the younger event {got[e2]['status']}")
        assert got[e1]["status"] == "failed" and "gave up" in got[e1]["last_error"]
        assert "ConnectError" in got[e1]["last_error"]
        assert got[e2]["status"] == "pending" and got[e2]["attempts"] == 1
        assert receiver.keys() == []
    finally:
        d.stop()
        store.close()


def test_silenced_deliveries_are_never_sent(mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store, (a, b) = make_store(tmp_path / "s.duckdb")
    tables.silence(store, clock.now_ns(), rule="hot", series_id=a["id"], until_ns=T0 + 3600 * NS, actor="test",
                   reason="sensor maintenance")
    watcher = Watcher(mosquitto, f"{PREFIX}/#", "watcher")
    d = dispatcher(store, clock, [hook_cfg(receiver.url), BUS], mosquitto)
    try:
        quiet = event(store, "firing", a, clock.now_ns(), ["hook", "bus"])
        loud = event(store, "firing", b, clock.now_ns(), ["hook", "bus"])
        d.wake()
        assert wait(lambda: receiver.keys() == [loud] and watcher.event_ids() == [loud])
        clock.advance(600)
        settle(d, clock, "hook", "bus")
        for name in ("hook", "bus"):
            r = rows(store, name)
            assert r[quiet]["status"] == "silenced" and r[quiet]["attempts"] == 0
            assert r[loud]["status"] == "delivered"
        assert receiver.keys() == [loud] and watcher.event_ids() == [loud]
        assert f"{PREFIX}/state/hot/{a['id']}" not in watcher.states()
    finally:
        d.stop()
        watcher.close()
        store.close()


def test_the_token_is_sent_and_never_logged(mosquitto: Mosquitto, receiver: Receiver, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "hook_token").write_text(TOKEN + "\n")
    cfg = config_from_dict({"mqtt": {"url": mosquitto.url, "client_id": "gn-tok"}, "alerts": {"notifiers": [
        {"name": "hook", "kind": "webhook", "url": receiver.url, "token_file": "hook_token", "timeout_s": 1,
         "backoff_s": 1},
        {"name": "bus", "kind": "mqtt", "topic_prefix": PREFIX}]}}, base_dir=tmp_path)
    clock = FakeClock(T0)
    store, (a, _) = make_store(tmp_path / "s.duckdb")
    receiver.mode = "echo"  # a 500 whose body repeats the Authorization header
    with caplog.at_level(logging.DEBUG):
        d = Dispatcher(store, build_notifiers(cfg), cfg.alerts.notifiers, clock, poll_s=0.02)
        d.start()
        try:
            eid = event(store, "firing", a, clock.now_ns(), ["hook", "bus"])
            d.wake()
            assert wait(lambda: rows(store, "hook")[eid]["attempts"] == 1)
            err = rows(store, "hook")[eid]["last_error"]
            assert "echo: Bearer ***" in err and TOKEN not in err
            receiver.mode = "ok"
            clock.advance(1)
            d.wake()
            assert wait(lambda: rows(store, "hook")[eid]["status"] == "delivered")
            assert wait(lambda: rows(store, "bus")[eid]["status"] == "delivered")
        finally:
            d.stop()
            store.close()
    assert {p.auth for p in receiver.snapshot()} == {f"Bearer {TOKEN}"}
    assert "HTTP 500" in caplog.text and "httpx" in {r.name for r in caplog.records}  # the log was captured
    assert TOKEN not in caplog.text


def test_a_broker_that_is_down_is_a_retryable_failure_and_delivery_resumes(mosquitto: Mosquitto,
                                                                           tmp_path: Path) -> None:
    clock = FakeClock(T0)
    store, (a, _) = make_store(tmp_path / "s.duckdb")
    bus = NotifierConfig(name="bus", kind="mqtt", topic_prefix=PREFIX, timeout_s=0.5, backoff_s=1.0)
    d = dispatcher(store, clock, [bus], mosquitto)
    try:
        first = event(store, "firing", a, clock.now_ns(), ["bus"])
        d.wake()
        assert wait(lambda: rows(store, "bus")[first]["status"] == "delivered")
        mosquitto.stop()
        eid = event(store, "resolved", a, clock.now_ns(), ["bus"])
        d.wake()
        assert wait(lambda: rows(store, "bus")[eid]["attempts"] >= 1)
        row = rows(store, "bus")[eid]
        assert row["status"] == "pending" and "not connected" in row["last_error"]
        mosquitto.start()
        for _ in range(100):
            clock.advance(2)
            settle(d, clock, "bus")
            if rows(store, "bus")[eid]["status"] == "delivered":
                break
        row = rows(store, "bus")[eid]
        print(f"\nbroker down then back: delivered after {row['attempts']} attempts")
        assert row["status"] == "delivered" and row["attempts"] >= 2
        state = retained_states(mosquitto, 1)[f"{PREFIX}/state/hot/{a['id']}"]
        assert state["event_id"] == eid and state["state"] == "resolved"
    finally:
        d.stop()
        store.close()
