"""Sensor faults and drift (issue 6): the step rule on one series and its related series, the fault
mask used by training and scoring, events with their operator life cycle, Page-Hinkley, and a
window without any reading as a warning (never an event, never a crash)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from greennanny.errors import InputError, UnknownVersion
from greennanny.forecast.quality import QualityReport
from greennanny.forecast.quality.steps import MIN_NS, StepRules, change_at, find_steps, jump_at
from greennanny.mlops.drift import page_hinkley
from greennanny.mlops.events import SENSOR_FAULT, Events, FaultMask, Finding
from greennanny.mlops.faults import FaultRules, quality_findings, step_findings
from greennanny.mlops.monitor import Monitor
from greennanny.model import Batch, SeriesKey
from greennanny.store.duckdb import DuckDBStore

T0 = 1_767_225_600 * 10**9
FIVE = 5 * MIN_NS


def _series(n: int = 120, step_at: int | None = 60, jump: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    t = T0 + np.arange(n, dtype=np.int64) * FIVE
    x = 20 + 0.05 * np.random.default_rng(seed).standard_normal(n)
    if step_at is not None:
        x[step_at:] += jump
    return t, x


def test_a_held_step_is_found_with_its_levels_and_a_spike_is_not() -> None:
    t, x = _series()
    got = find_steps(t, x, StepRules(min_step=2.0), scan_from_ns=T0, scan_to_ns=t[-1])
    assert [c.at_ns for c in got] == [t[60]]
    assert got[0].jump == pytest.approx(3.0, abs=0.2) and got[0].after_long - got[0].before == pytest.approx(3.0, abs=0.05)
    spike = x.copy()
    spike[60:] -= 3.0
    spike[60:63] += 3.0  # 15 minutes up, then back: not an offset
    assert find_steps(t, spike, StepRules(min_step=2.0), scan_from_ns=T0, scan_to_ns=t[-1]) == []
    # not judged before three hours have passed after it (36 readings at 5 min)
    assert find_steps(t[:90], x[:90], StepRules(min_step=2.0), scan_from_ns=T0, scan_to_ns=t[89]) == []


def test_change_and_jump_at_an_instant() -> None:
    t, x = _series(jump=2.0, seed=1)
    assert change_at(t, x, int(t[60])) == pytest.approx(2.0, abs=0.1)
    j, usual = jump_at(t, x, int(t[60]))
    assert j == pytest.approx(2.0, abs=0.2) and usual < 0.1
    assert change_at(t, x, int(t[0]) - 3600 * 10**9) is None


def _store(path: Path, hum_jump: float) -> DuckDBStore:
    """Two zones' air temperature and one zone's humidity, 10 hours at 5 min; zone a's temperature
    jumps +3 at reading 60; its humidity jumps by `hum_jump` at the same reading."""
    store = DuckDBStore(path)
    keys = [SeriesKey("gh", "a", "th", "air_temperature"), SeriesKey("gh", "b", "th", "air_temperature"),
            SeriesKey("gh", "a", "th", "relative_humidity")]
    ta, xa = _series(seed=2)
    _, xb = _series(step_at=None, seed=3)
    _, hum = _series(jump=hum_jump, seed=4)
    hum += 40
    idx = np.repeat(np.arange(3, dtype=np.int32), ta.size)
    store.write(Batch(keys, idx, np.tile(ta, 3), np.concatenate([xa, xb, hum]), np.zeros(idx.size, np.uint8), {}))
    return store


def test_a_step_that_the_zone_humidity_does_not_share_is_a_sensor_fault_with_evidence(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.duckdb", hum_jump=0.0)
    now = T0 + 119 * FIVE
    found = step_findings(store, now, store.series(), FaultRules())
    assert [(f.series_id, f.kind, f.start_ns) for f in found] == [(1, "step", T0 + 60 * FIVE)]
    ev = found[0].evidence
    assert ev["series"] == "gh/a/th/air_temperature" and ev["same_quantity_on_site"] == 1
    assert abs(ev["same_quantity_on_site_median_change"]) < 0.2 and set(ev["zone_related_changes"]) == {"gh/a/th/relative_humidity"}
    store.close()


def test_a_step_that_the_zone_humidity_shares_is_the_air_changing_not_a_fault(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.duckdb", hum_jump=-8.0)
    assert step_findings(store, T0 + 119 * FIVE, store.series(), FaultRules()) == []
    store.close()


def test_events_dedupe_accept_calibrate_and_the_mask_for_training_and_scoring(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "s.duckdb")
    ev = Events(store)
    f = Finding(7, SENSOR_FAULT, "step", T0 + 100, {"jump": 3.0})
    assert ev.raise_(T0 + 200, [f]) == [1]
    assert ev.raise_(T0 + 300, [f, Finding(7, SENSOR_FAULT, "step", T0 + 400)]) == []  # one open step per series
    sid, ts = np.array([7, 7, 8]), np.array([T0, T0 + 100, T0 + 100])
    val = np.array([1.0, 2.0, 3.0])
    mask = FaultMask.load(store)
    assert mask.hidden() == {7}
    assert np.array_equal(mask.apply(sid, ts, val), [1.0, np.nan, 3.0], equal_nan=True)
    got = ev.calibrate(T0 + 500, 1, -3.0, actor="grower", reason="reference thermometer")
    assert (got["status"], got["calibration"], got["resolved_by"]) == ("calibrated", -3.0, "grower")
    assert np.array_equal(FaultMask.load(store).apply(sid, ts, val), [1.0, -1.0, 3.0])
    with pytest.raises(InputError, match="event 1 is a calibrated sensor_fault"):
        ev.accept(T0 + 600, 1, actor="x", reason="y")
    with pytest.raises(UnknownVersion, match="no event 9"):
        ev.accept(T0 + 600, 9, actor="x", reason="y")
    assert ev.raise_(T0 + 700, [f]) == []  # the same step, judged already, is not raised again
    [second] = ev.raise_(T0 + 800, [Finding(7, SENSOR_FAULT, "step", T0 + 900)])
    ev.accept(T0 + 1000, second, actor="grower", reason="probe moved to the crop's head")
    assert FaultMask.load(store).hidden() == set()
    actions = ev.store.reader().execute("SELECT action, actor FROM audit_log ORDER BY seq").fetchall()
    assert actions == [("sensor_fault", "monitor"), ("fault_calibrated", "grower"), ("sensor_fault", "monitor"),
                       ("fault_accepted", "grower")]
    store.close()


def test_page_hinkley_alarms_on_a_held_rise_not_on_one_day() -> None:
    flat = np.log(np.array([0.9, 1.0, 0.95, 0.9, 1.0, 0.92, 0.97, 1.0]))
    assert page_hinkley(flat, 0.1, 2.0, 4) is None
    one_day = flat.copy()
    one_day[5] = np.log(3.0)  # clipped at 3x: alone it never reaches 2.0
    assert page_hinkley(one_day, 0.1, 2.0, 4) is None
    rise = np.concatenate([flat, np.log(np.full(6, 2.0))])
    i, stat, _ = page_hinkley(rise, 0.1, 2.0, 4)
    assert 8 < i < 14 and stat > 2.0


def test_a_series_with_no_reading_in_its_window_is_a_warning_not_an_event(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "s.duckdb")
    keys = [SeriesKey("gh", "a", "th", "air_temperature"), SeriesKey("gh", "a", "th", "relative_humidity")]
    t = T0 + np.arange(12, dtype=np.int64) * FIVE
    store.write(Batch(keys, np.zeros(12, np.int32), t, np.full(12, 20.0), np.zeros(12, np.uint8), {}))
    store.write(Batch(keys, np.ones(12, np.int32), t, np.full(12, 60.0), np.zeros(12, np.uint8), {}))
    series = store.series()
    reports = {s.id: QualityReport(s.id, points=0 if s.id == 1 else 12) for s in series}
    got = Monitor(store).check(t[-1], series, reports, step_ns=3600 * 10**9, window_ns=28 * 86_400 * 10**9)
    assert got.opened == [] and got.warnings == ["series 1 (gh/a/th/air_temperature) has no reading in its 672 h window",
                                                 ("series 2 (gh/a/th/relative_humidity): no reference data (no model "
                                                 "trained on it yet), drift not computed")]
    found, _ = quality_findings(t[-1] + 3 * 3600 * 10**9, series[1:], reports, 3600 * 10**9, 3600 * 10**9,
                                FaultRules())
    assert [(f.series_id, f.kind) for f in found] == [(2, "silent")]  # one series of two silent: the sensor
    store.close()


def test_a_changed_config_is_one_audit_row_naming_the_keys_and_no_secret(tmp_path: Path) -> None:
    from greennanny.config import Config
    from greennanny.mlops.registry import Registry, record_config

    store = DuckDBStore(tmp_path / "s.duckdb")
    cfg = Config().model_dump(mode="json")
    assert record_config(store, cfg, T0) == {}  # the first start: recorded, nothing to compare with
    assert record_config(store, cfg, T0 + 1) == {}  # unchanged: no row
    cfg["forecast"]["promotion_margin"] = 0.05
    cfg["mqtt"]["password_file"] = "mqtt.secret"
    got = record_config(store, {**cfg, "api": {**cfg["api"], "token": "hunter2"}}, T0 + 2, actor="ops")
    assert got["forecast.promotion_margin"] == [0.02, 0.05] and got["api.token"][1] == "(set)"
    rows = Registry(store).audit(action="config")
    assert [r["subject"] for r in rows] == ["first start", f"{len(got)} settings changed"]
    assert "hunter2" not in json.dumps(rows) and rows[-1]["actor"] == "ops"
    store.close()


def test_a_step_on_a_warming_morning_is_judged_against_the_day_before() -> None:
    n = 2 * 288  # two days at 5 min
    t = T0 + np.arange(n, dtype=np.int64) * FIVE
    hours = (t - T0) / 3.6e12 % 24
    x = 21 - 6 * np.cos(2 * np.pi * (hours - 4) / 24) + 0.05 * np.random.default_rng(5).standard_normal(n)
    at = 288 + 10 * 12  # day 2, 10:00, when the day warms fastest (1.6 degC an hour)
    x[at:] += 3.0
    rules = StepRules(min_step=2.0)
    found = find_steps(t, x, rules, scan_from_ns=int(t[288]), scan_to_ns=int(t[-1]) - rules.after_long_ns)
    assert [c.at_ns for c in found] == [int(t[at])]
    # without the day before, the raw 3-hour median has run far from the jump: not judged a held step
    alone = find_steps(t[288:], x[288:], rules, scan_from_ns=int(t[288]), scan_to_ns=int(t[-1]) - rules.after_long_ns)
    assert alone == []
