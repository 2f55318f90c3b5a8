"""Issue 7 point 3: hysteresis and the alert life cycle, on a real store (DuckDB in tmp_path).

One alert per episode for a series oscillating around its threshold; a restart while firing does
not notify again; an acknowledged alert stays acknowledged (over a restart too); a spike shorter
than `for_s` never fires; a flagged reading (BR-09's 327.67 degC marker) never raises an alert.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from greennanny.alerts import tables
from greennanny.alerts.config import AlertsConfig
from greennanny.alerts.engine import AlertEngine, add_rule, check_rule_series, delete_rule
from greennanny.alerts.machine import FIRING, OK, PENDING, Track
from greennanny.errors import ConfigError, InputError
from greennanny.model import BatchBuilder, Quality, SeriesKey
from greennanny.store.duckdb import DuckDBStore

S = 1_000_000_000
T0 = 1_780_000_000 * S  # 2026-05-28
KEY = SeriesKey("gh", "z1", "th1", "air_temperature")


def write(store: DuckDBStore, ts: np.ndarray, values: np.ndarray, key: SeriesKey = KEY,
          quality: int = 0) -> None:
    b = BatchBuilder()
    for t, v in zip(ts, values):
        b.add(key, int(t), float(v), quality, "out of range" if quality else None)
    store.write(b.build())


def alerts_cfg(**rule: object) -> AlertsConfig:
    base = {"name": "heat", "quantity": "air_temperature", "value": 30.0, "clear": 28.0, "for_s": 300}
    return AlertsConfig.model_validate({"rules": [{**base, **rule}],
                                        "notifiers": [{"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/x"}]})


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    s = DuckDBStore(tmp_path / "g.duckdb")
    yield s
    s.close()


def events(store: DuckDBStore) -> list[tuple[str, int]]:
    return [(k, int(a)) for k, a in store.reader().execute(
        "SELECT kind, alert_id FROM alert_events ORDER BY at_ns, kind").fetchall()]


def test_machine_hysteresis_and_minimum_duration() -> None:
    t = Track("heat", 1)
    for_ns = 300 * S
    assert t.step(T0, 31, True, False, for_ns).kind == "pending"  # type: ignore[union-attr]
    assert t.step(T0 + 60 * S, 29.5, False, False, for_ns) is None  # between the levels: holds
    assert t.state == PENDING
    tr = t.step(T0 + 300 * S, 30.5, True, False, for_ns)
    assert tr is not None and tr.kind == "firing" and tr.since_ns == T0
    assert t.step(T0 + 360 * S, 29.0, False, False, for_ns) is None  # below value, above clear: still firing
    assert t.state == FIRING
    assert t.step(T0 + 360 * S, 20.0, False, True, for_ns) is None  # same instant again: ignored (replay)
    tr = t.step(T0 + 420 * S, 27.9, False, True, for_ns)
    assert tr is not None and tr.kind == "resolved" and tr.peak == 31 and t.state == OK
    # a spike shorter than for_s is a pending that is cancelled, never a firing
    assert t.step(T0 + 500 * S, 35, True, False, for_ns).kind == "pending"  # type: ignore[union-attr]
    assert t.step(T0 + 560 * S, 27, False, True, for_ns).kind == "cancelled"  # type: ignore[union-attr]


def test_oscillation_around_threshold_raises_one_alert(store: DuckDBStore) -> None:
    """3 hours of 1-minute readings swinging 29..31 degC around a 30 degC threshold (clear at 28):
    45 upward crossings of the threshold, one alert; then it cools to 26 and the alert resolves once."""
    ts = T0 + np.arange(240) * 60 * S
    v = np.where(np.arange(240) < 180, 30 + np.sin(np.arange(240) * math.pi / 2), 26.0)
    crossings = int(np.sum(np.diff((v > 30).astype(int)) == 1))
    assert crossings == 45
    write(store, ts, v)
    eng = AlertEngine(store, alerts_cfg())
    for k in range(0, 240, 30):  # rounds every 30 minutes of node time
        eng.run(int(ts[min(k + 29, 239)]) + S)
    ev = events(store)
    assert [k for k, _ in ev] == ["firing", "resolved"], ev
    a = tables.list_alerts(store)
    assert len(a) == 1 and a[0]["state"] == "resolved" and a[0]["peak"] == pytest.approx(31.0)
    d = tables.deliveries(store)
    assert {r["status"] for r in d} == {"pending"} and len(d) == 2  # one delivery per event and notifier


def test_restart_while_firing_does_not_notify_again(tmp_path: Path) -> None:
    path = tmp_path / "g.duckdb"
    s = DuckDBStore(path)
    ts = T0 + np.arange(30) * 60 * S
    write(s, ts, np.full(30, 33.0))
    AlertEngine(s, alerts_cfg()).run(int(ts[-1]) + S)
    assert [k for k, _ in events(s)] == ["firing"]
    s.close()
    s = DuckDBStore(path)  # the node restarts; still hot
    write(s, ts + 30 * 60 * S, np.full(30, 33.5))
    eng = AlertEngine(s, alerts_cfg())
    assert eng.tracks[("heat", 1)].state == FIRING
    eng.run(int(ts[-1]) + 30 * 60 * S + S)
    eng.run(int(ts[-1]) + 31 * 60 * S)
    assert [k for k, _ in events(s)] == ["firing"]
    a = tables.list_alerts(s)[0]
    assert a["state"] == FIRING and a["value"] == pytest.approx(33.5)  # the firing alert shows the latest value
    s.close()


def test_acknowledged_alert_stays_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "g.duckdb"
    s = DuckDBStore(path)
    ts = T0 + np.arange(30) * 60 * S
    write(s, ts, np.full(30, 33.0))
    eng = AlertEngine(s, alerts_cfg())
    eng.run(int(ts[-1]) + S)
    aid = tables.list_alerts(s)[0]["alert_id"]
    series = {1: {"id": 1}}
    a = tables.ack(s, int(ts[-1]) + 2 * S, aid, actor="maria", note="vents opened", notifiers=lambda r: ["hook"],
                   series=lambda sid: series[sid])
    assert a["acked_by"] == "maria"
    with pytest.raises(InputError, match="already acknowledged by maria"):
        tables.ack(s, int(ts[-1]) + 3 * S, aid, actor="joe", note="", notifiers=lambda r: ["hook"],
                   series=lambda sid: series[sid])
    s.close()
    s = DuckDBStore(path)
    write(s, ts + 30 * 60 * S, np.full(30, 34.0))
    AlertEngine(s, alerts_cfg()).run(int(ts[-1]) + 31 * 60 * S)
    a = tables.get_alert(s, aid)
    assert a["acked_by"] == "maria" and a["state"] == FIRING and a["ack_note"] == "vents opened"
    assert [k for k, _ in events(s)] == ["firing", "acknowledged"]
    audit = s.reader().execute("SELECT actor, action FROM audit_log WHERE action = 'alert_ack'").fetchall()
    assert audit == [("maria", "alert_ack")]
    # cooled down: the acknowledged episode resolves; the next heat is a new, unacknowledged alert
    write(s, ts + 60 * 60 * S, np.full(30, 25.0))
    write(s, ts + 90 * 60 * S, np.full(30, 35.0))
    AlertEngine(s, alerts_cfg()).run(int(ts[-1]) + 121 * 60 * S)
    rows = tables.list_alerts(s)
    assert [(r["state"], r["acked_by"]) for r in rows] == [(FIRING, None), ("resolved", "maria")]
    s.close()


def test_silenced_alert_fires_but_is_not_delivered(store: DuckDBStore) -> None:
    ts = T0 + np.arange(30) * 60 * S
    tables.silence(store, T0, rule="heat", series_id=None, until_ns=T0 + 3600 * S, actor="maria", reason="maintenance")
    write(store, ts, np.full(30, 33.0))
    AlertEngine(store, alerts_cfg()).run(int(ts[-1]) + S)
    assert [k for k, _ in events(store)] == ["firing"]
    assert [r["status"] for r in tables.deliveries(store)] == ["silenced"]
    with pytest.raises(InputError, match="reason"):
        tables.silence(store, T0, rule="heat", series_id=None, until_ns=T0 + S, actor="x", reason=" ")


def test_flagged_reading_never_raises_an_alert(store: DuckDBStore) -> None:
    """BR-09: an LHT65 without its probe sends 327.67 degC; stored flagged, kept out of alerts."""
    ts = T0 + np.arange(20) * 60 * S
    write(store, ts, np.full(20, 22.0))
    write(store, ts[5:15] + 30 * S, np.full(10, 327.67), quality=int(Quality.FLAGGED))
    AlertEngine(store, alerts_cfg(for_s=0)).run(int(ts[-1]) + S)
    assert events(store) == []


def test_rate_and_stale_rules(store: DuckDBStore) -> None:
    ts = T0 + np.arange(60) * 60 * S
    v = np.where(np.arange(60) < 30, 20.0, 20.0 + (np.arange(60) - 30) * 0.2)  # +12 degC/h from minute 30
    write(store, ts, v)
    cfg = AlertsConfig.model_validate({"rules": [
        {"name": "rise", "kind": "rate", "quantity": "air_temperature", "value": 6.0, "clear": 2.0, "window_s": 900},
        {"name": "silent", "kind": "stale", "quantity": "air_temperature", "stale_after_s": 600}]})
    eng = AlertEngine(store, cfg)
    eng.run(int(ts[-1]) + S)
    fired = {r["rule"]: r for r in tables.list_alerts(store)}
    assert set(fired) == {"rise"}
    assert fired["rise"]["value"] == pytest.approx(12.0, abs=0.01)
    eng.run(int(ts[-1]) + 11 * 60 * S)  # 11 minutes without a reading
    assert {r["rule"] for r in tables.list_alerts(store, state="open")} == {"rise", "silent"}
    write(store, np.array([ts[-1] + 12 * 60 * S]), np.array([32.0]))
    eng.run(int(ts[-1]) + 12 * 60 * S + S)
    assert {r["rule"]: r["state"] for r in tables.list_alerts(store)}["silent"] == "resolved"


def test_rule_naming_no_series_is_refused(store: DuckDBStore) -> None:
    write(store, np.array([T0]), np.array([20.0]))
    cfg = AlertsConfig.model_validate({"rules": [{"name": "co2-high", "quantity": "co2", "value": 1500}]})
    with pytest.raises(ConfigError, match="'co2-high'.*no series of quantity 'co2'"):
        AlertEngine(store, cfg).check()
    cfg = AlertsConfig.model_validate({"rules": [{"name": "hot-z9", "quantity": "air_temperature", "zone": "z9", "value": 30}]})
    with pytest.raises(ConfigError, match=r"'hot-z9'.*zone='z9'.*gh/z1"):
        check_rule_series(store, cfg.rules[0], where="alerts.rules:")
    # a derived quantity whose inputs exist is accepted before its first value
    check_rule_series(store, AlertsConfig.model_validate(
        {"rules": [{"name": "vpd", "quantity": "vpd", "value": 1.5}]}).rules[0], where="")


def test_rules_from_the_api(store: DuckDBStore) -> None:
    write(store, np.array([T0]), np.array([20.0]))
    cfg = alerts_cfg()
    r = add_rule(store, cfg, {"name": "cold", "quantity": "air_temperature", "op": "below", "value": 10},
                 actor="maria", now_ns=T0)
    assert r.clear_level == 10
    with pytest.raises(InputError, match="exists already"):
        add_rule(store, cfg, {"name": "heat", "quantity": "air_temperature", "value": 1}, actor="maria", now_ns=T0)
    with pytest.raises(InputError, match="value is required for a threshold rule"):
        add_rule(store, cfg, {"name": "x2", "quantity": "air_temperature"}, actor="maria", now_ns=T0)
    with pytest.raises(InputError, match="quantity"):
        add_rule(store, cfg, {"name": "x", "quantity": "temp", "value": 1}, actor="maria", now_ns=T0)
    with pytest.raises(InputError, match="no series of quantity 'co2'"):
        add_rule(store, cfg, {"name": "y", "quantity": "co2", "value": 1}, actor="maria", now_ns=T0)
    assert [x.name for x in AlertEngine(store, cfg).rules] == ["heat", "cold"]
    with pytest.raises(InputError, match="config file"):
        delete_rule(store, "heat", actor="maria", now_ns=T0)
    delete_rule(store, "cold", actor="maria", now_ns=T0)
    assert [x.name for x in AlertEngine(store, cfg).rules] == ["heat"]


def test_retention_removes_old_closed_history_and_keeps_what_is_open(tmp_path: Path) -> None:
    """events_days: a resolved alert of last year goes with its events and delivered rows; a firing
    alert and an undelivered notification stay."""
    from greennanny.store.duckdb_maintain import Retention

    s = DuckDBStore(tmp_path / "g.duckdb", retention=Retention(raw_days=0, rollup_1m_days=0, events_days=30))
    ts = T0 + np.arange(30) * 60 * S
    write(s, ts, np.r_[np.full(15, 33.0), np.full(15, 25.0)])  # one episode, resolved
    eng = AlertEngine(s, alerts_cfg(for_s=0))
    eng.run(int(ts[-1]) + S)
    for eid, _, _, _ in tables.due(s, "hook", int(ts[-1]) + S):
        tables.mark(s, eid, "hook", status=tables.DELIVERED, now_ns=int(ts[-1]) + 2 * S)
    later = ts + 40 * 86_400 * S  # 40 days on: a new episode, still firing, its firing undelivered
    write(s, later, np.full(30, 34.0))
    eng.run(int(later[-1]) + S)
    done = s.maintain(int(later[-1]) + 2 * S)
    assert (done["alerts_removed"], done["alert_deliveries_removed"], done["alert_events_removed"]) == (1, 2, 2)
    assert [(a["state"], a["value"]) for a in tables.list_alerts(s)] == [(FIRING, 34.0)]
    assert [d["status"] for d in tables.deliveries(s)] == ["pending"]
    s.close()


def test_tracks_round_trip_through_the_store_set_wise(store: DuckDBStore) -> None:
    """commit_round writes every track in one statement: a second round replaces the rows (no
    duplicates), NaN value/peak come back as NaN (stored NULL), a firing alert shows its track's
    latest value and peak, and a track with no alert keeps alert_id empty."""
    write(store, T0 + np.arange(3) * 60 * S, np.array([31.0, 31.5, 32.0]))
    write(store, T0 + np.arange(3) * 60 * S, np.array([20.0, 20.0, 20.0]), SeriesKey("gh", "z2", "th2", "air_temperature"))
    eng = AlertEngine(store, alerts_cfg(for_s=0))
    eng.run(T0 + 3 * 60 * S)
    tracks = tables.load_tracks(store)
    assert len(tracks) == 2
    firing = [t for t in tracks.values() if t.state == FIRING]
    quiet = [t for t in tracks.values() if t.state == OK]
    assert len(firing) == 1 and len(quiet) == 1 and quiet[0].alert_id is None
    aid = firing[0].alert_id
    assert aid is not None and firing[0].peak == 32.0
    # the next round: a hotter reading moves the alert's value and peak, the rows are replaced
    write(store, np.array([T0 + 3 * 60 * S]), np.array([33.0]))
    eng.run(T0 + 4 * 60 * S)
    assert store.reader().execute("SELECT count(*) FROM alert_tracks").fetchall() == [(2,)]
    assert store.reader().execute("SELECT value, peak FROM alerts WHERE alert_id = ?", [aid]).fetchall() == [(33.0, 33.0)]
    t = Track("heat", 99, OK, 0, T0, None, math.nan, math.nan)
    tables.commit_round(store, T0 + 5 * 60 * S, [t], [])
    again = tables.load_tracks(store)[("heat", 99)]
    assert math.isnan(again.value) and math.isnan(again.peak) and again.last_ts == T0
    assert store.reader().execute("SELECT value IS NULL, peak IS NULL FROM alert_tracks WHERE series_id = 99"
                                  ).fetchall() == [(True, True)]
