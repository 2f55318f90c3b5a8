"""Live accuracy (issue 6): stored forecasts scored once against the actuals, as sums per series x
day x horizon bucket x model, and the health verdict drawn from them. Values worked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greennanny.mlops.health import HealthRules, health
from greennanny.mlops.scoring import Scorer, bucket_of
from greennanny.model import Batch, SeriesKey
from greennanny.store.duckdb import DuckDBStore

H = 3600 * 10**9
DAY = 24 * H
D = 1_767_225_600 * 10**9  # 2026-01-01T00:00Z
STEP5 = 300 * 10**9


def _store(path: Path) -> tuple[DuckDBStore, int]:
    """Yesterday 20.0 all day; today 20 + the hour (20.0 from 00:00, 21.0 from 01:00 ...), at 5 min."""
    store = DuckDBStore(path)
    ts = D - DAY + np.arange(2 * 288, dtype=np.int64) * STEP5
    val = np.where(ts < D, 20.0, 20.0 + (ts - D) // H)
    store.write(Batch([SeriesKey("gh", "z1", "t1", "air_temperature")], np.zeros(len(ts), np.int32), ts, val,
                      np.zeros(len(ts), np.uint8), {}))
    return store, store.series()[0].id


def _forecast(store: DuckDBStore, run_id: int, sid: int, made: int, mean: list[float], half80: float = 0.5,
              model: str = "blend") -> None:
    n = len(mean)
    m = np.asarray(mean)
    runs = pd.DataFrame({"run_id": [run_id], "series_id": np.array([sid], np.int32), "made_ns": [made],
                         "start_ns": [made], "step_ns": [H], "horizon": np.array([n], np.int32), "model": [model],
                         "backtest_mae": [0.4], "backtest_mase": [0.5], "runner_up": ["ets"],
                         "runner_up_mase": [0.6], "fallback_reason": [None]})
    pts = pd.DataFrame({"run_id": np.full(n, run_id), "series_id": np.full(n, sid, np.int32),
                        "ts": made + np.arange(n, dtype=np.int64) * H, "mean": m, "lo80": m - half80,
                        "hi80": m + half80, "lo95": m - 5, "hi95": m + 5})
    store.write_forecasts(runs, pts)


def _scores(store: DuckDBStore) -> dict[str, tuple]:
    rows = store.reader().execute("SELECT bucket, n, abs_err, sq_err, naive_abs_err, naive_n, in80, in95 "
                                  "FROM forecast_scores ORDER BY bucket").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_lead_times_fall_into_their_buckets() -> None:
    lead = np.array([1, 60, 61, 180, 181, 24 * 60, 24 * 60 + 1], np.int64) * 60 * 10**9
    assert bucket_of(lead).tolist() == [0, 0, 1, 1, 2, 4, 5]


def test_a_forecast_is_scored_once_with_errors_naive_errors_and_coverage_per_bucket(tmp_path: Path) -> None:
    store, sid = _store(tmp_path / "s.duckdb")
    _forecast(store, 1, sid, D, [20.0, 21.0, 25.0, 23.0])  # actual hourly means 20, 21, 22, 23
    scorer = Scorer(store)
    got = scorer.score(D + 4 * H + 30 * 60 * 10**9)  # grace 30 min: every bin up to 04:00 has ended
    assert (got.forecast_steps, got.series, got.without_actual, got.through_ns) == (4, 1, 0, D + 4 * H)
    # naive = yesterday's 20.0: |20-20|, |21-20|, |22-20|, |23-20|; leads 1, 2, 3, 4 h
    assert _scores(store) == {"0-1h": (1, 0.0, 0.0, 0.0, 1, 1, 1), "1-3h": (2, 3.0, 9.0, 3.0, 2, 1, 2),
                              "3-6h": (1, 0.0, 0.0, 3.0, 1, 1, 1)}
    assert scorer.score(D + 4 * H + 30 * 60 * 10**9).forecast_steps == 0  # nothing twice
    _forecast(store, 2, sid, D + 4 * H, [24.5, 30.0])  # 04:00 -> 24, 05:00 -> 25 (no reading after 23:55)
    later = scorer.score(D + 6 * H + 30 * 60 * 10**9)
    assert later.forecast_steps == 2
    s = _scores(store)
    assert s["0-1h"] == (2, 0.5, 0.25, 4.0, 2, 2, 2) and s["1-3h"] == (3, 8.0, 34.0, 8.0, 3, 1, 3)
    store.close()


def test_a_step_without_a_reading_is_counted_and_not_scored(tmp_path: Path) -> None:
    store, sid = _store(tmp_path / "s.duckdb")
    _forecast(store, 1, sid, D + 23 * H, [43.0, 44.0])  # 23:00 has readings, the next day's 00:00 none
    got = Scorer(store).score(D + 26 * H)
    assert (got.forecast_steps, got.without_actual) == (1, 1)
    store.close()


def test_health_turns_the_sums_into_mase_coverage_and_a_status_with_reasons(tmp_path: Path) -> None:
    store, sid = _store(tmp_path / "s.duckdb")
    _forecast(store, 1, sid, D, [20.0, 21.0, 25.0, 23.0])
    Scorer(store).score(D + 5 * H)
    body = health(store, D + 5 * H, days=7, rules=HealthRules(min_steps=1))
    row = body["series"][0]
    # MAE 3/4; the naive's MAE 6/4; MASE 0.5; 3 of 4 inside the 80 % interval
    assert (row["n"], row["mae"], row["mase"], row["coverage80"], row["coverage95"]) == (4, 0.75, 0.5, 0.75, 1.0)
    assert row["rmse"] == pytest.approx(1.5) and row["status"] == "ok" and row["models"] == {"blend": 4}
    assert row["buckets"]["1-3h"]["mase"] == pytest.approx(1.0) and list(row["buckets"]) == ["0-1h", "1-3h", "3-6h"]
    strict = health(store, D + 5 * H, rules=HealthRules(min_steps=1, min_cov80=0.8, max_mase=0.4))["series"][0]
    assert strict["status"] == "degraded" and strict["reasons"] == [
        "live MASE 0.500 over 7 days: worse than the one-day seasonal naive",
        "80 % interval covered 0.75 of the actuals (want >= 0.80)"]
    assert health(store, D + 5 * H)["counts"] == {"ok": 0, "degraded": 0, "no data": 1}  # 4 steps < 24
    assert health(store, D + 10 * DAY, days=7)["series"] == []  # outside the window
    assert health(store, D + 10 * DAY, series_ids=[sid])["series"][0]["status"] == "no data"
    store.close()


def test_scored_runs_older_than_48_h_are_thinned_to_the_latest_and_the_first_of_each_day(tmp_path: Path) -> None:
    store, sid = _store(tmp_path / "s.duckdb")
    for run, hour in ((1, 0), (2, 1), (3, 2), (4, 3), (5, 20)):
        _forecast(store, run, sid, D + hour * H, [21.0, 22.0, 23.0, 24.0])
    assert store.maintain(D + 3 * DAY)["forecast_runs_thinned"] == 0  # nothing scored yet: nothing goes
    Scorer(store).score(D + 2 * DAY)
    before = _scores(store)
    assert store.maintain(D + 3 * DAY)["forecast_runs_thinned"] == 3
    runs = store.reader().execute("SELECT DISTINCT run_id FROM forecast_points ORDER BY 1").fetchall()
    assert [r[0] for r in runs] == [1, 5] and store.forecast_count() == 2
    assert _scores(store) == before and store.latest_forecast(sid)[0]["run_id"] == 5
    store.close()


def test_model_cards_come_from_the_registry_and_the_live_scores(tmp_path: Path) -> None:
    from greennanny.forecast.refresh import Choice
    from greennanny.mlops.cards import cards
    from greennanny.mlops.registry import Lineage, Registry

    store, sid = _store(tmp_path / "s.duckdb")
    choice = Choice("blend", 0.4, 0.5, "ets", 0.6, np.ones(4), np.ones(4) * 2, {"w_ets": 1.0})
    Registry(store).register_run(1, D, {sid: choice}, {sid: Lineage(D - 2 * DAY, D, 500, "ab" * 32)}, step_ns=H,
                                 horizon=4, trained_by="schedule", reason="refit")
    _forecast(store, 1, sid, D, [20.0, 21.0, 25.0, 23.0])
    runs = pd.DataFrame({"run_id": [2], "series_id": np.array([99], np.int32), "made_ns": [D], "start_ns": [D],
                         "step_ns": [H], "horizon": np.array([1], np.int32), "model": ["seasonal_naive"],
                         "backtest_mae": [np.nan], "backtest_mase": [np.nan], "runner_up": [None],
                         "runner_up_mase": [np.nan], "fallback_reason": ["too short: 30 observations, need 48"]})
    store.write_forecasts(runs, pd.DataFrame({"run_id": [2], "series_id": np.array([99], np.int32), "ts": [D],
                                              "mean": [1.0], "lo80": [0.0], "hi80": [2.0], "lo95": [0.0], "hi95": [2.0]}))
    Scorer(store).score(D + 5 * H)
    got = {c["model"]: c for c in cards(store, D + 5 * H)}
    assert sorted(got) == ["blend", "seasonal_naive"]
    blend = got["blend"]
    assert blend["intended_use"].startswith("The mean of a few different models' forecasts")
    assert (blend["production_series"], blend["trained_by"], blend["series_on_a_fallback_now"]) == (1, {"schedule": 1}, 0)
    assert blend["training_data"] == {"first_ns": D - 2 * DAY, "last_ns": D, "window_days_median": 2.0,
                                      "points_median": 500}
    assert blend["metrics"] == [{"site": "gh", "quantity": "air_temperature", "series": 1, "backtest_mase_mean": 0.5,
                                 "live_steps": 4, "live_mase": 0.5, "live_coverage80": 0.75}]
    assert any("three days" in x for x in blend["known_limits"])
    naive = got["seasonal_naive"]
    assert (naive["production_series"], naive["training_data"], naive["series_on_a_fallback_now"]) == (0, None, 1)
    store.close()
