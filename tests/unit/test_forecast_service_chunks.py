"""ForecastService runs chunk by chunk of series: the same forecasts as one panel, progress per
chunk, and a backtest that says per series what each model scored and why a series was left out."""

from __future__ import annotations

import numpy as np
import pytest

from greennanny.config import ForecastConfig
from greennanny.forecast.service import ForecastService
from greennanny.model import Batch, SeriesKey
from greennanny.runtime.clock import SystemClock
from greennanny.store.duckdb import DuckDBStore

STEP = 300 * 10**9
END = 1_767_225_600 * 10**9  # 2026-01-01T00:00Z


def _store(path, n_sine: int = 3) -> DuckDBStore:
    """`n_sine` daily-cycle temperatures (10 days at 5 min), a constant CO2, a one-reading probe."""
    store = DuckDBStore(path)
    t = END - np.arange(10 * 288, 0, -1, dtype=np.int64) * STEP
    hours = (t // 10**9 % 86_400) / 3600
    keys, idx, ts, val = [], [], [], []
    rng = np.random.default_rng(7)
    for i in range(n_sine):
        keys.append(SeriesKey("gh", f"z{i}", f"dev{i}", "air_temperature"))
        idx.append(np.full(len(t), i))
        ts.append(t)
        val.append(np.round(20 + (3 + i) * np.sin((hours - 9) / 24 * 2 * np.pi) + rng.normal(0, 0.2, len(t)), 2))
    keys.append(SeriesKey("gh", "z0", "co2-1", "co2"))
    idx.append(np.full(len(t), n_sine))
    ts.append(t)
    val.append(np.full(len(t), 415.0))
    keys.append(SeriesKey("gh", "z0", "new-probe", "air_temperature"))
    idx.append(np.array([n_sine + 1]))
    ts.append(t[-1:])
    val.append(np.array([21.5]))
    i_all = np.concatenate(idx).astype(np.int32)
    store.write(Batch(keys, i_all, np.concatenate(ts), np.concatenate(val), np.zeros(len(i_all), np.uint8), {}))
    return store


def _latest(store: DuckDBStore) -> dict[int, tuple[str, np.ndarray]]:
    out = {}
    for s in store.series():
        got = store.latest_forecast(s.id)
        if got is not None:
            out[s.id] = (got[0]["model"], got[1]["mean"].to_numpy(np.float64))
    return out


def test_chunks_give_the_forecasts_of_one_panel_and_report_progress(tmp_path):
    one = _store(tmp_path / "one.duckdb")
    many = _store(tmp_path / "many.duckdb")
    calls: list[tuple[int, int]] = []
    a = ForecastService(one, ForecastConfig(chunk_series=500, horizon_h=6), SystemClock()).run_once(END + 1)
    b = ForecastService(many, ForecastConfig(chunk_series=2, horizon_h=6), SystemClock()).run_once(
        END + 1, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert (a.forecasts, a.fallbacks, a.models) == (b.forecasts, b.fallbacks, b.models)
    assert a.forecasts == 5 and a.fallbacks == 2 and a.models["last_value"] == 2
    fa, fb = _latest(one), _latest(many)
    assert fa.keys() == fb.keys() and len(fa) == 5
    for sid in fa:
        assert fa[sid][0] == fb[sid][0]
        np.testing.assert_allclose(fa[sid][1], fb[sid][1], rtol=0, atol=1e-9)
    # one run id over all chunks
    assert many._cur().execute("SELECT DISTINCT run_id FROM forecast_runs").fetchall() == [(b.run_id,)]


def test_backtest_scores_each_model_and_names_why_a_series_is_left_out(tmp_path):
    store = _store(tmp_path / "s.duckdb")
    svc = ForecastService(store, ForecastConfig(chunk_series=2, horizon_h=6), SystemClock())
    rows = {r["device"]: r for r in svc.backtest(END + 1, models=["seasonal_naive", "ets", "last_value"])}
    assert set(rows) == {"dev0", "dev1", "dev2", "co2-1", "new-probe"}
    for dev in ("dev0", "dev1", "dev2"):
        r = rows[dev]
        scores = {m: r[f"{m}_mase"] for m in ("seasonal_naive", "ets", "last_value")}
        assert all(v is not None and v > 0 for v in scores.values()), r
        assert r["choice"] == min(scores, key=lambda m: scores[m])
        assert r["runner_up"] == sorted(scores, key=lambda m: scores[m])[1]
        # a clean daily cycle: the one-day seasonal naive beats carrying the last value forward
        assert scores["seasonal_naive"] < scores["last_value"]
    assert rows["co2-1"]["choice"] is None and "constant" in rows["co2-1"]["reason"]
    assert rows["new-probe"]["choice"] is None and "too short: 1 observation" in rows["new-probe"]["reason"]
    assert store.latest_forecast(1) is None  # a backtest stores nothing


def test_backtest_refuses_an_unknown_model_by_name(tmp_path):
    svc = ForecastService(_store(tmp_path / "s.duckdb"), ForecastConfig(), SystemClock())
    with pytest.raises(Exception, match="unknown forecast model 'prophet'; known:"):
        svc.backtest(END + 1, models=["prophet"])


def test_refreshes_reuse_each_series_choice_and_widths_until_the_refit_is_due(tmp_path):
    from greennanny.forecast.models import make_model
    from greennanny.forecast.panel import Panel

    store = _store(tmp_path / "s.duckdb")
    svc = ForecastService(store, ForecastConfig(horizon_h=6, refit_h=24), SystemClock())
    first = svc.run_once(END + 1)
    assert first.refit and first.refreshed == 0 and first.forecasts == 5
    chosen = {sid: (m, mean.copy()) for sid, (m, mean) in _latest(store).items()}
    meta = {s.id: store.latest_forecast(s.id)[0] for s in store.series()}
    kept = {sid: c.params for sid, c in svc._choices.items()}

    later = END + 1 + 15 * 60 * 10**9  # the next refresh, 15 min on
    second = svc.run_once(later)
    assert not second.refit and second.refreshed == 3  # the three sine series; the fallbacks go the full way
    assert second.forecasts == 5 and second.fallbacks == 2
    for s in store.series():
        got, pts = store.latest_forecast(s.id)
        assert got["model"] == chosen[s.id][0]
        if s.key.quantity == "air_temperature" and s.key.device.startswith("dev"):
            # the refit's backtest figures and interval half-widths ride along
            assert got["backtest_mase"] == meta[s.id]["backtest_mase"]
            old = store._cur().execute(
                "SELECT hi80 - mean, hi95 - mean FROM forecast_points WHERE run_id = ? AND series_id = ? ORDER BY ts",
                [first.run_id, s.id]).fetchall()
            # stored at air temperature's 0.01 degC resolution (mean and half-widths each rounded)
            np.testing.assert_allclose((pts["hi80"] - pts["mean"]).to_numpy(), [a for a, _ in old], atol=0.0051)
            np.testing.assert_allclose((pts["hi95"] - pts["mean"]).to_numpy(), [b for _, b in old], atol=0.0051)
            # and the mean is the chosen model run on today's window with the refit's parameters
            model = make_model(got["model"], 96)
            panel = svc._prepared(np.array([s.id]), later).panel
            today = Panel(panel.series_ids, panel.start_ns, panel.step_ns, panel.values)
            assert kept[s.id] and "m0.alpha" in kept[s.id]  # blend: ETS member's alpha, weights w0..
            model.use_params([kept[s.id]])
            model.update(today)
            np.testing.assert_allclose(pts["mean"].to_numpy(), model.predict(24)[0], atol=0.0051)
            model.fit(today)  # a fit would choose again: the refresh did not
            assert model.params()[0] != kept[s.id]

    assert svc.run_once(END + 1 + 25 * 3600 * 10**9).refit  # a day on: chosen again
    assert svc.run_once(END + 1).refit  # the clock went back (a run --at an earlier time)
    always = ForecastService(store, ForecastConfig(horizon_h=6, refit_h=0), SystemClock())
    assert always.run_once(END + 1).refit and always.run_once(later).refit


def test_a_series_that_falls_back_at_a_refit_is_not_refreshed_with_its_old_model(tmp_path):
    from greennanny.forecast.refresh import Choice

    store = _store(tmp_path / "s.duckdb")
    svc = ForecastService(store, ForecastConfig(horizon_h=6, refit_h=24), SystemClock())
    co2 = next(s.id for s in store.series() if s.key.quantity == "co2")
    # a choice left from an earlier refit, when this series still had a model of its own
    svc._choices[co2] = Choice("ets", 1.0, 0.9, None, float("nan"), np.ones(24), np.ones(24) * 2)
    svc.run_once(END + 1)  # a refit: the series is constant now, so it falls back
    meta, _ = store.latest_forecast(co2)
    assert meta["fallback_reason"].startswith("constant series")
    assert co2 not in svc._choices
    later = svc.run_once(END + 1 + 15 * 60 * 10**9)
    assert not later.refit and store.latest_forecast(co2)[0]["model"] == "last_value"


def test_per_epoch_runs_forecast_each_series_once(tmp_path):
    """Demo finding: a series ending 3 days before the others was in both epochs' windows and got
    two forecasts (43 forecast rows for 41 series in the demo)."""
    store = _store(tmp_path / "s.duckdb")
    t = END - np.arange(3 * 288 + 10 * 288, 3 * 288, -1, dtype=np.int64) * STEP  # ends 3 days earlier
    hours = (t // 10**9 % 86_400) / 3600
    key = SeriesKey("gh", "z9", "early", "air_temperature")
    store.write(Batch([key], np.zeros(len(t), np.int32), t, np.round(18 + 3 * np.sin((hours - 9) / 24 * 2 * np.pi), 2),
                      np.zeros(len(t), np.uint8), {}))
    runs = ForecastService(store, ForecastConfig(horizon_h=6), SystemClock()).run_per_epoch()
    assert len(runs) == 2 and [r.forecasts for r in runs] == [1, 5]
    rows = store._cur().execute("SELECT series_id, count(*) FROM forecast_runs GROUP BY 1").fetchall()
    assert len(rows) == 6 and all(n == 1 for _, n in rows)
