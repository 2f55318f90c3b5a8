"""Notifiers and their dispatcher, offline: the webhook through httpx's mock transport, the
dispatcher with scripted notifiers over a real outbox on a FakeClock (issue 7)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.nodeproc import wait

from greennanny.alerts import tables
from greennanny.alerts.config import NotifierConfig, RuleConfig
from greennanny.alerts.machine import FIRING, Track, Transition
from greennanny.alerts.notify import Dispatcher, MqttNotifier, Notifier, WebhookNotifier, build_notifiers
from greennanny.config import MqttConfig, config_from_dict
from greennanny.errors import ConfigError, NotifyRefused, NotifyUnavailable
from greennanny.model import Batch, Point, SeriesKey
from greennanny.runtime.broker import free_port
from greennanny.runtime.clock import FakeClock
from greennanny.store.duckdb import DuckDBStore

NS = 1_000_000_000
T0 = 1_767_225_600 * NS
RULE = RuleConfig(name="hot", quantity="air_temperature", value=30.0)
EVENT = {"event_id": "ev-1", "event": "firing", "rule": "hot", "series": {"id": 1}, "value": 31.0}


# -- webhook ---------------------------------------------------------------------------------------
def hook(handler: Callable[[httpx.Request], httpx.Response], token: str | None = None) -> WebhookNotifier:
    cfg = NotifierConfig(name="hook", kind="webhook", url="https://alerts.example/hook", timeout_s=2.0)
    return WebhookNotifier(cfg, token, transport=httpx.MockTransport(handler))


def test_webhook_posts_the_event_json_with_its_idempotency_key_and_the_token() -> None:
    seen: list[httpx.Request] = []
    n = hook(lambda r: seen.append(r) or httpx.Response(204), token="tok-1")
    n.send(EVENT)
    n.send(EVENT)  # again: same key, the receiver dedupes
    assert [r.headers["Idempotency-Key"] for r in seen] == ["ev-1", "ev-1"]
    r = seen[0]
    assert r.method == "POST" and str(r.url) == "https://alerts.example/hook"
    assert r.headers["Content-Type"] == "application/json" and r.headers["Authorization"] == "Bearer tok-1"
    assert json.loads(r.content) == EVENT


def test_webhook_without_a_token_sends_no_authorization() -> None:
    seen: list[httpx.Request] = []
    hook(lambda r: seen.append(r) or httpx.Response(200)).send(EVENT)
    assert "Authorization" not in seen[0].headers


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_webhook_answers_worth_retrying(status: int) -> None:
    with pytest.raises(NotifyUnavailable, match=f"HTTP {status}"):
        hook(lambda r: httpx.Response(status, text="busy")).send(EVENT)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 422, 301])
def test_webhook_answers_that_retrying_cannot_help(status: int) -> None:
    with pytest.raises(NotifyRefused, match=f"HTTP {status}"):
        hook(lambda r: httpx.Response(status, text="no")).send(EVENT)


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                 httpx.ConnectTimeout("slow"), httpx.RemoteProtocolError("cut")])
def test_webhook_transport_failures_are_retryable(exc: Exception) -> None:
    def fail(r: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(NotifyUnavailable):
        hook(fail).send(EVENT)


def test_webhook_error_text_never_holds_the_token() -> None:
    echo = hook(lambda r: httpx.Response(401, text=f"bad {r.headers['Authorization']}"), token="tok-XYZ")
    with pytest.raises(NotifyRefused) as info:
        echo.send(EVENT)
    assert "tok-XYZ" not in str(info.value) and "Bearer ***" in str(info.value)


# -- the dispatcher with scripted notifiers ------------------------------------------------------------
class Scripted:
    """Records each send; raises `fail` if set; blocks on `gate` if set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []
        self.fail: Exception | None = None
        self.gate: threading.Event | None = None
        self.closed = False

    def send(self, event: dict[str, Any]) -> None:
        self.calls.append(event["event_id"])
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail

    def close(self) -> None:
        self.closed = True


def cfg(name: str, **kw: Any) -> NotifierConfig:
    return NotifierConfig(name=name, kind="webhook", url="http://127.0.0.1:9/", **kw)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = DuckDBStore(tmp_path / "s.duckdb")
    s.write(Batch.from_points([Point(SeriesKey("gh", f"z{i}", "t", "air_temperature"), T0 - NS, 20.0)
                               for i in range(4)]))
    yield s
    s.close()


def fire(store: DuckDBStore, sid: int, now_ns: int, notifiers: list[str]) -> str:
    track = Track(RULE.name, sid, FIRING, now_ns, now_ns)
    ch = tables.Change(track, Transition("firing", now_ns, 31.0, now_ns, 31.0), RULE, {"id": sid}, notifiers)
    return tables.commit_round(store, now_ns, [track], [ch])[0]


def row(store: DuckDBStore, event_id: str, notifier: str) -> dict[str, Any]:
    return next(r for r in tables.deliveries(store) if r["event_id"] == event_id and r["notifier"] == notifier)


def run(store: DuckDBStore, clock: FakeClock, pairs: list[tuple[Notifier, NotifierConfig]]) -> Dispatcher:
    d = Dispatcher(store, [n for n, _ in pairs], [c for _, c in pairs], clock, poll_s=0.01)
    d.start()
    return d


def settle(d: Dispatcher, clock: FakeClock, name: str) -> None:
    now = clock.now_ns()
    assert wait(lambda: d.last_round_ns(name) >= now)


def test_retries_back_off_doubling_up_to_the_cap_and_only_when_due(store: DuckDBStore) -> None:
    clock = FakeClock(T0)
    n = Scripted("hook")
    n.fail = NotifyUnavailable("down")
    d = run(store, clock, [(n, cfg("hook", backoff_s=2.0, backoff_max_s=30.0))])
    try:
        eid = fire(store, 1, clock.now_ns(), ["hook"])
        d.wake()
        assert wait(lambda: row(store, eid, "hook")["attempts"] == 1)
        delays = []
        for k in range(2, 8):
            r = row(store, eid, "hook")
            delays.append((r["next_ns"] - clock.now_ns()) / NS)
            clock.t = r["next_ns"] - 1  # a nanosecond early: nothing
            settle(d, clock, "hook")
            assert len(n.calls) == k - 1
            clock.t += 1
            d.wake()
            assert wait(lambda k=k: row(store, eid, "hook")["attempts"] == k)
        assert delays == [2, 4, 8, 16, 30, 30]
        assert row(store, eid, "hook")["status"] == "pending" and row(store, eid, "hook")["last_error"] == "down"
        assert d.stats()["hook"] == {"delivered": 0, "retried": 7, "failed": 0}
    finally:
        d.stop()
    assert n.closed


def test_a_failing_receiver_is_probed_by_the_oldest_event_only_and_events_keep_their_order(
        store: DuckDBStore) -> None:
    clock = FakeClock(T0)
    n = Scripted("hook")
    n.fail = NotifyUnavailable("down")
    c = cfg("hook", backoff_s=5.0)
    d = run(store, clock, [(n, c)])
    try:
        ids = [fire(store, 1, clock.now_ns(), ["hook"])]
        d.wake()
        assert wait(lambda: n.calls == ids[:1])
        for sid in (2, 3):
            clock.advance(1)
            ids.append(fire(store, sid, clock.now_ns(), ["hook"]))
            d.wake()
            settle(d, clock, "hook")
        assert n.calls == ids[:1]  # held until the head's retry
        n.fail = None
        clock.advance(3)
        d.wake()
        assert wait(lambda: n.calls == ids[:1] + ids)
        assert {row(store, e, "hook")["status"] for e in ids} == {"delivered"}
    finally:
        d.stop()

    # after a restart, the head's backoff still holds the later events back (no reordering)
    clock2 = FakeClock(T0 + 100 * NS)
    n2 = Scripted("hook")
    n2.fail = NotifyUnavailable("down")
    d2 = run(store, clock2, [(n2, c)])
    try:
        a = fire(store, 1, clock2.now_ns(), ["hook"])
        d2.wake()
        assert wait(lambda: n2.calls == [a])
        d2.stop()
        clock2.advance(1)
        b = fire(store, 2, clock2.now_ns(), ["hook"])  # due now; a is due in 4 s
        n3 = Scripted("hook")
        d2 = run(store, clock2, [(n3, c)])
        settle(d2, clock2, "hook")
        assert n3.calls == []
        clock2.advance(4)
        d2.wake()
        assert wait(lambda: n3.calls == [a, b])
    finally:
        d2.stop()


def test_a_refused_event_fails_and_the_next_one_is_still_sent(store: DuckDBStore) -> None:
    clock = FakeClock(T0)
    n = Scripted("hook")
    d = run(store, clock, [(n, cfg("hook"))])
    try:
        n.fail = NotifyRefused("HTTP 422 Unprocessable")
        e1 = fire(store, 1, clock.now_ns(), ["hook"])
        d.wake()
        assert wait(lambda: row(store, e1, "hook")["status"] == "failed")
        assert "HTTP 422" in row(store, e1, "hook")["last_error"]
        n.fail = None
        e2 = fire(store, 2, clock.now_ns(), ["hook"])
        d.wake()
        assert wait(lambda: row(store, e2, "hook")["status"] == "delivered")
        assert n.calls == [e1, e2]
    finally:
        d.stop()


def test_a_hanging_notifier_holds_up_neither_the_others_nor_wake(store: DuckDBStore) -> None:
    clock = FakeClock(T0)
    slow, fast = Scripted("slow"), Scripted("fast")
    slow.gate = threading.Event()
    d = run(store, clock, [(slow, cfg("slow")), (fast, cfg("fast"))])
    try:
        e1 = fire(store, 1, clock.now_ns(), ["slow", "fast"])
        d.wake()
        assert wait(lambda: slow.calls == [e1])
        e2 = fire(store, 2, clock.now_ns(), ["slow", "fast"])
        start = time.monotonic()
        d.wake()
        assert time.monotonic() - start < 0.1
        assert wait(lambda: row(store, e2, "fast")["status"] == "delivered")
        assert slow.calls == [e1] and row(store, e1, "slow")["attempts"] == 0
        slow.gate.set()
        assert wait(lambda: row(store, e2, "slow")["status"] == "delivered")
    finally:
        slow.gate.set()
        d.stop()


def test_an_unexpected_error_in_a_notifier_is_logged_and_retried(store: DuckDBStore,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(T0)
    n = Scripted("hook")
    n.fail = KeyError("series")
    d = run(store, clock, [(n, cfg("hook"))])
    try:
        with caplog.at_level(logging.ERROR, logger="greennanny.alerts.notify"):
            eid = fire(store, 1, clock.now_ns(), ["hook"])
            d.wake()
            assert wait(lambda: row(store, eid, "hook")["attempts"] == 1)
        r = row(store, eid, "hook")
        assert r["status"] == "pending" and "KeyError" in r["last_error"]
        assert any(rec.exc_info for rec in caplog.records)
    finally:
        d.stop()


def test_a_notifier_without_its_config_is_refused(store: DuckDBStore) -> None:
    with pytest.raises(ConfigError, match="ghost"):
        Dispatcher(store, [Scripted("ghost")], [cfg("hook")], FakeClock(T0))


# -- building them from the config, MQTT without a broker ---------------------------------------------
def test_build_notifiers_reads_the_token_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "hook").write_text("tok-abc\n")
    c = config_from_dict({"mqtt": {"url": f"mqtt://127.0.0.1:{free_port()}"}, "alerts": {"notifiers": [
        {"name": "hook", "kind": "webhook", "url": "https://x.example/", "token_file": "secrets/hook"},
        {"name": "bus", "kind": "mqtt"}]}}, base_dir=tmp_path)
    made = build_notifiers(c)
    try:
        assert [type(n).__name__ for n in made] == ["WebhookNotifier", "MqttNotifier"]
        assert made[0]._token == "tok-abc"  # type: ignore[attr-defined]
        assert made[1].client._client_id == b"greennanny-node-alerts"  # type: ignore[attr-defined]
    finally:
        for n in made:
            n.close()
    c.alerts.notifiers[0].token_file = "secrets/missing"
    with pytest.raises(ConfigError, match=r"alerts\.notifiers\.0\.token_file"):
        build_notifiers(c)


def test_mqtt_send_without_a_broker_is_retryable_within_its_timeout() -> None:
    cfg_ = NotifierConfig(name="bus", kind="mqtt", timeout_s=0.3)
    n = MqttNotifier(cfg_, MqttConfig(url=f"mqtt://127.0.0.1:{free_port()}", client_id="t"))
    try:
        start = time.monotonic()
        with pytest.raises(NotifyUnavailable, match="not connected"):
            n.send(EVENT)
        assert time.monotonic() - start < 1.0
    finally:
        n.close()
