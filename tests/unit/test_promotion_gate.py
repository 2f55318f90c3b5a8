"""The promotion gate (mlops/gate.py): a refit replaces production only when it beats production
on the same recent origins by the margin, with calibrated intervals; every decision is recorded
with its numbers, and a kept production version keeps serving the forecasts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.unit.test_model_registry import END, H, _daily_store

from greennanny.config import ForecastConfig
from greennanny.forecast.panel import Panel
from greennanny.forecast.refresh import Choice
from greennanny.forecast.service import ForecastService
from greennanny.mlops.gate import GateRules, decide
from greennanny.mlops.registry import CANDIDATE, Registry
from greennanny.model import Batch, SeriesKey
from greennanny.runtime.clock import SystemClock
from greennanny.store.duckdb import DuckDBStore

HORIZON = 12  # 3 origins x 12 steps: 36 cells, enough for the gate to judge an 80 % interval


def _panel(days: int = 10) -> Panel:
    t = np.arange(days * 24)
    rng = np.random.default_rng(1)
    vals = np.stack([20 + 4 * np.sin(t / 24 * 2 * np.pi) + rng.normal(0, 0.3, t.size) for _ in range(2)])
    return Panel(np.array([1, 2], np.int64), END - t.size * H, H, vals)


def _choice(model: str, half: float = 0.55) -> Choice:  # ~80 % of seasonal naive's errors on _panel's noise
    return Choice(model, 1.0, 1.0, None, np.nan, np.full(HORIZON, half), np.full(HORIZON, 2 * half))


def test_a_better_calibrated_candidate_is_promoted_and_a_worse_one_is_kept_with_numbers() -> None:
    panel = _panel()
    good, bad = _choice("seasonal_naive"), _choice("last_value", half=3.0)
    up = decide(panel, {1: bad, 2: bad}, {1: good, 2: good}, horizon=HORIZON, season=24, rules=GateRules())
    assert all(d.promoted for d in up.values())
    d = up[1]
    assert d.candidate_mase < 0.5 * d.production_mase and d.cells == 3 * HORIZON
    assert "promoted" in d.reason and f"candidate MASE {d.candidate_mase:.3f}" in d.reason
    down = decide(panel, {1: good}, {1: bad}, horizon=HORIZON, season=24, rules=GateRules())
    assert not down[1].promoted and "not better by the margin, kept" in down[1].reason
    assert down[1].production_mase == pytest.approx(up[1].candidate_mase)  # the same origins, the same cells


def test_a_better_candidate_with_intervals_that_do_not_hold_is_kept() -> None:
    panel = _panel()
    narrow = _choice("seasonal_naive", half=0.01)  # 80 % interval of 0.01 degC around a 0.3-noise series
    out = decide(panel, {1: _choice("last_value")}, {1: narrow}, horizon=HORIZON, season=24, rules=GateRules())
    assert not out[1].promoted and out[1].coverage80 < 0.1 and "outside [0.60, 0.99]: kept" in out[1].reason


def test_margin_decides_between_near_equal_versions() -> None:
    panel = _panel()
    same = _choice("seasonal_naive")
    out = decide(panel, {1: same}, {1: same}, horizon=HORIZON, season=24, rules=GateRules(margin=0.02))
    assert not out[1].promoted and out[1].candidate_mase == pytest.approx(out[1].production_mase)
    out = decide(panel, {1: same}, {1: same}, horizon=HORIZON, season=24, rules=GateRules(margin=0.0))
    assert out[1].promoted


def _shift_store(store: DuckDBStore, start: int, hours: int, amp: float) -> None:
    """More hours of the three series, with a daily amplitude `amp` (a changed climate)."""
    t = start + np.arange(hours, dtype=np.int64) * H
    hod = (t // 10**9 % 86_400) / 3600
    keys = [SeriesKey("gh", f"z{i}", f"dev{i}", "air_temperature") for i in range(3)]
    rng = np.random.default_rng(7)
    vals = np.concatenate([np.round(20 + amp * np.sin((hod - 9) / 24 * 2 * np.pi) + rng.normal(0, 0.2, len(t)), 2)
                           for _ in range(3)])
    idx = np.repeat(np.arange(3, dtype=np.int32), len(t))
    store.write(Batch(keys, idx, np.tile(t, 3), vals, np.zeros(len(idx), np.uint8), {}))


def test_service_keeps_production_when_the_refit_is_no_better_and_records_every_decision(tmp_path: Path) -> None:
    store = _daily_store(tmp_path / "s.duckdb")
    cfg = ForecastConfig(step_min=60, horizon_h=HORIZON, refit_h=0, models=["ets", "seasonal_naive"])
    svc = ForecastService(store, cfg, SystemClock())
    first = svc.run_once(END + 1)
    assert (first.registered, first.promoted, first.kept) == (3, 0, 0)  # first versions: no gate
    reg = Registry(store)
    v1 = {r["series_id"]: r["model"] for r in reg.production()}
    second = svc.run_once(END + 1)  # the same data again: the refit cannot beat production by 2 %
    assert (second.registered, second.kept, second.promoted) == (3, 3, 0)
    assert {r["version"] for r in reg.production()} == {1}
    cands = reg.store.reader().execute("SELECT series_id, version FROM model_aliases WHERE alias = ?",
                                       [CANDIDATE]).fetchall()
    assert sorted(cands) == [(s, 2) for s in sorted(v1)]
    for sid, model in v1.items():  # production serves the forecast, labelled as itself
        meta, _ = store.latest_forecast(sid)
        assert (meta["run_id"], meta["model"], meta["fallback_reason"]) == (second.run_id, model, None)
    rows = reg.gate_decisions()
    assert len(rows) == 3 and not any(r["promoted"] for r in rows)
    assert all(r["candidate_mase"] >= r["production_mase"] * 0.98 and r["cells"] > 0 for r in rows)
    assert [a["action"] for a in reg.audit()][-2:] == ["register", "gate"]
    assert reg.audit()[-1]["detail"]["kept"] == 3

    # the climate changes (a daily swing of 9 degC instead of 3-5): the refit on the new days wins
    _shift_store(store, END, 4 * 24, 9.0)
    third = svc.run_once(END + 4 * 24 * H + 1)
    assert third.promoted == 3, reg.gate_decisions(limit=3)
    assert {r["version"] for r in reg.production()} == {3}
    hist = reg.history(1)
    assert hist[-1]["alias"] == "production" and hist[-1]["reason"].startswith("gate: candidate MASE")
    assert not reg.store.reader().execute("SELECT * FROM model_aliases WHERE alias = ?", [CANDIDATE]).fetchall()
    store.close()


def test_a_model_that_fails_at_refresh_falls_back_labelled_raises_an_event_and_refits(tmp_path: Path) -> None:
    from dataclasses import replace

    from greennanny.mlops.events import Events

    store = _daily_store(tmp_path / "s.duckdb")
    cfg = ForecastConfig(step_min=60, horizon_h=HORIZON, refit_h=24)
    svc = ForecastService(store, cfg, SystemClock())
    svc.run_once(END + 1)
    sid = store.series()[0].id
    svc._choices[sid] = replace(svc._choices[sid], model="no_such_model")  # say, an artifact of a newer version
    run = svc.run_once(END + H + 1)
    assert (run.refreshed, run.fallbacks) == (3, 1)
    meta, pts = store.latest_forecast(sid)
    assert meta["model"] == "seasonal_naive" and "no_such_model raised at refresh (ConfigError" in meta["fallback_reason"]
    assert np.isfinite(pts["mean"]).all() and np.isfinite(pts["hi80"]).all()
    [ev] = Events(store).list(category="fallback")
    assert (ev["series_id"], ev["kind"], ev["status"]) == (sid, "refresh", "open")
    again = svc.run_once(END + 2 * H + 1)  # the failed series is refit the full way, the others refreshed
    assert (again.retrained, again.refreshed, again.fallbacks) == (1, 2, 0)
    meta, _ = store.latest_forecast(sid)
    assert meta["fallback_reason"] is None and meta["model"] in cfg.models
    assert Events(store).get(ev["event_id"])["status"] == "closed"
    store.close()


def test_a_run_of_other_series_leaves_queued_retrains_for_the_next_run(tmp_path: Path) -> None:
    store = _daily_store(tmp_path / "s.duckdb")
    svc = ForecastService(store, ForecastConfig(step_min=60, horizon_h=HORIZON, refit_h=24), SystemClock())
    svc.run_once(END + 1)
    a, b = (s.id for s in store.series()[:2])
    svc.request_retrain([a], actor="monitor", reason="decay: test")
    run = svc.run_once(END + H + 1, series_ids=[b])  # an operator's run of another series
    assert (run.retrained, run.retrain_waiting) == (0, 1)
    run = svc.run_once(END + 2 * H + 1)
    assert (run.retrained, run.retrain_waiting) == (1, 0)
    assert Registry(store).versions(a)[-1]["reason"] == "decay: test"
    store.close()
