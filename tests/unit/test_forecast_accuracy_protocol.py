"""The protocol pieces of bench/forecast_accuracy.py, with exact expected values.

Origins at local midnight across clock changes, the repeated fall-back hour, the shared gap step,
the MASE scale, coverage counting and the per-series-then-over-series averages; then the whole
window builder and the script on a small synthetic CSV across the Amsterdam spring-forward day.
The statsforecast parts are skipped when it is not installed (it is the `[bench]` extra).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greennanny.config import ForecastConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import forecast_accuracy as fa

H = 3600 * 10**9
HAS_STATSFORECAST = importlib.util.find_spec("statsforecast") is not None


def utc(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value)


def test_midnights_across_amsterdam_spring_forward_are_23_h_apart_once() -> None:
    got = fa.local_midnights(utc("2022-03-25 23:00"), utc("2022-03-28 22:00"), "Europe/Amsterdam")
    assert got.tolist() == [
        utc("2022-03-25 23:00"),
        utc("2022-03-26 23:00"),
        utc("2022-03-27 22:00"),
        utc("2022-03-28 22:00"),
    ]
    assert (np.diff(got) // H).tolist() == [24, 23, 24]


def test_origins_across_new_york_fall_back_are_25_h_apart_and_leave_a_full_horizon() -> None:
    end = utc("2024-11-06 05:00")  # exclusive: the series' last reading is 2024-11-05 23:xx EST
    got = fa.daily_origins(utc("2024-10-30 04:00"), end, "America/New_York", 3, 24 * H)
    assert got.tolist() == [utc("2024-11-03 04:00"), utc("2024-11-04 05:00"), utc("2024-11-05 05:00")]
    assert (np.diff(got) // H).tolist() == [25, 24]


def test_repeated_fall_back_hour_is_summer_time_first_then_winter_time() -> None:
    wall = pd.Series(
        [
            "2024-11-03 00:55",
            "2024-11-03 01:00",
            "2024-11-03 01:30",
            "2024-11-03 01:00",
            "2024-11-03 01:30",
            "2024-11-03 02:00",
        ]
        * 2
    )
    series = pd.Series(["a"] * 6 + ["b"] * 6)
    got = fa.localize_wall_clock(wall, "America/New_York", series)
    one = [
        utc("2024-11-03 04:55"),
        utc("2024-11-03 05:00"),
        utc("2024-11-03 05:30"),
        utc("2024-11-03 06:00"),
        utc("2024-11-03 06:30"),
        utc("2024-11-03 07:00"),
    ]
    assert got.tolist() == one * 2


def test_nonexistent_spring_forward_time_is_dropped_as_nat() -> None:
    wall = pd.Series(["2022-03-27 01:30", "2022-03-27 02:30", "2022-03-27 03:30"])
    got = fa.localize_wall_clock(wall, "Europe/Amsterdam", pd.Series(["a"] * 3))
    assert got.tolist() == [utc("2022-03-27 00:30"), np.iinfo(np.int64).min, utc("2022-03-27 01:30")]


def test_gap_step_interpolates_short_gaps_and_carries_a_day_over_long_ones() -> None:
    train = np.array([0, 1, 2, 3, 10, np.nan, np.nan, 13, 20, np.nan, np.nan, np.nan, 30, 31, 32, 33])
    got = fa.prepare_window(train, season=4, max_gap_steps=2)
    assert got.tolist() == [0, 1, 2, 3, 10, 11, 12, 13, 20, 11, 12, 13, 30, 31, 32, 33]
    assert np.isnan(train[5])  # the caller's window is not changed
    lead = fa.prepare_window(np.array([np.nan, np.nan, np.nan, 3, 4, 5, 6, 7]), season=4, max_gap_steps=2)
    assert lead.tolist() == [4, 5, 6, 3, 4, 5, 6, 7]


def test_mase_scale_is_the_in_sample_one_season_naive_mae() -> None:
    assert fa.naive_scale(np.array([1, 2, 4, 3, 5, 7.0]), 2) == 2.25
    assert fa.naive_scale(np.array([1, np.nan, 4, 3, 5, 7.0]), 2) == 8 / 3
    mase = fa.window_mase(np.ones(4), np.array([2, np.nan, 0, 4.0]), 2.0)
    assert mase == pytest.approx(5 / 6, abs=1e-15)
    assert np.isnan(fa.window_mase(np.ones(4), np.ones(4), 0.0))
    assert np.isnan(fa.window_mase(np.ones(2), np.full(2, np.nan), 1.0))


def test_coverage_counts_observed_steps_with_bounds_inside() -> None:
    lo, hi = np.zeros(5), np.ones(5)
    assert fa.coverage_counts(lo, hi, np.array([0, 1, 1.5, np.nan, -0.1])) == (2, 4)


def test_averages_are_per_series_then_over_series() -> None:
    series = np.array([0, 0, 1])
    assert fa.per_series_mean(np.array([1.0, 3.0, 10.0]), series) == 6.0  # pooled would be 14/3
    assert fa.per_series_mean(np.array([1.0, np.nan, np.nan]), series) == 1.0
    cov = fa.per_series_coverage(np.array([8, 2, 20]), np.array([10, 10, 24]), series)
    assert cov == pytest.approx((0.5 + 20 / 24) / 2, abs=1e-15)


@pytest.fixture
def spring_csv(tmp_path: Path) -> Path:
    """Hourly wall-clock readings 2022-03-10 00:00 .. 03-29 23:00 Amsterdam; value = day*100 + hour."""
    wall = pd.date_range("2022-03-10 00:00", "2022-03-29 23:00", freq="h")
    df = pd.DataFrame({"time_iso": wall.strftime("%Y-%m-%dT%H:%M:%S"), "T": wall.day * 100 + wall.hour})
    path = tmp_path / "spring.csv"
    df.to_csv(path, index=False)
    return path


def spec(path: Path) -> fa.DataSpec:
    return fa.DataSpec("spring", path, "time_iso", ("T",), "Europe/Amsterdam")


def test_windows_across_spring_forward_day(spring_csv: Path) -> None:
    w = fa.build_windows(spec(spring_csv), H, n_origins=8, train_days=16, min_train_days=14, horizon_ns=24 * H)
    assert w.season == 24 and w.horizon == 24
    local = pd.to_datetime(w.origin_ns, utc=True).tz_convert("Europe/Amsterdam")
    assert [f"{t:%m-%d %H:%M}" for t in local] == [f"03-{d} 00:00" for d in range(24, 30)]
    assert w.skipped == ["T @ 2022-03-22: 12.0 days of history < 14", "T @ 2022-03-23: 13.0 days of history < 14"]
    assert w.train_len.tolist() == [336, 360, 384, 384, 384, 384]
    assert w.filled_steps == 0  # the nonexistent 02:00 is not a gap in UTC
    day27 = int(np.flatnonzero(local.day == 27)[0])
    assert w.actual[day27].tolist() == [2700, 2701, *range(2703, 2724), 2800]  # 23 h day, then 00:00
    width = w.train.shape[1]
    first = w.train[0, width - 336 :]
    assert first[0] == 1000 and first[-1] == 2323 and np.isnan(w.train[0, : width - 336]).all()


def test_script_prints_one_json_object_last(
    spring_csv: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fa, "STATSFORECAST_MODELS", ("SeasonalNaive",))  # fast: no AutoETS here
    rc = fa.main(
        [
            "--data",
            str(spring_csv),
            "--time-col",
            "time_iso",
            "--series-cols",
            "T",
            "--tz",
            "Europe/Amsterdam",
            "--origins",
            "3",
            "--train-days",
            "16",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    got = out["datasets"]["spring.csv"]
    assert got["info"]["windows"] == 3
    # the node's candidates, or the runner's fallbacks (seasonal naive, last value)
    allowed = {*ForecastConfig().models, "seasonal_naive", "last_value"}
    assert set(got["auto_choice"]) <= allowed and sum(got["auto_choice"].values()) == 3
    # the table: the automatic choice against the peers; each greennanny model alone apart
    expected = {fa.AUTO_ROW, *(["statsforecast SeasonalNaive"] if HAS_STATSFORECAST else [])}
    assert set(got["models"]) == expected
    assert set(got["greennanny_models_alone"]) == {f"greennanny {m}" for m in fa.GREENNANNY_MODELS}
    assert got["with_inputs"] == {}  # a --data file has no weather
    for row in [*got["models"].values(), *got["greennanny_models_alone"].values()]:
        assert set(row) >= {"mase", "coverage80", "seconds"}


@pytest.mark.skipif(not HAS_STATSFORECAST, reason="statsforecast not installed (the [bench] extra)")
def test_statsforecast_seasonal_naive_equals_greennanny_on_the_same_windows(spring_csv: Path) -> None:
    w = fa.build_windows(spec(spring_csv), H, n_origins=4, train_days=16, min_train_days=14, horizon_ns=24 * H)
    models = fa.statsforecast_models(w.season)
    assert models is not None
    theirs = fa.run_statsforecast(w, "SeasonalNaive", models["SeasonalNaive"], jobs=1)
    ours = fa.run_greennanny(w, ("seasonal_naive",), "greennanny seasonal_naive")
    np.testing.assert_array_equal(theirs.mean, ours.mean)
    last = w.train[:, -24:]
    np.testing.assert_array_equal(theirs.mean, last)


def test_weather_inputs_see_the_origin_lagged_and_the_forecast_day_as_oracle(spring_csv: Path, tmp_path: Path) -> None:
    """Each window's weather columns line up with its own training columns (the same clock)."""
    w = fa.build_windows(spec(spring_csv), H, n_origins=3, train_days=16, min_train_days=14, horizon_ns=24 * H)
    raw = pd.read_csv(spring_csv)
    weather = tmp_path / "weather.csv"
    pd.DataFrame({"time_iso": raw["time_iso"], "Tout": raw["T"] * 2.0}).to_csv(weather, index=False)
    ws = fa.DataSpec("spring", spring_csv, "time_iso", ("T",), "Europe/Amsterdam", None, weather, ("Tout",))
    lagged = fa.weather_inputs(ws, w, "lagged")["Tout (outside)"]
    oracle = fa.weather_inputs(ws, w, "oracle")["Tout (outside)"]
    assert lagged.role == "lagged" and lagged.values.shape == w.train.shape
    assert oracle.role == "oracle" and oracle.values.shape == (w.train.shape[0], w.train.shape[1] + w.horizon)
    seen = np.isfinite(w.train)
    np.testing.assert_allclose(lagged.values[seen], 2.0 * w.train[seen])  # outside = 2 x the series, hour by hour
    ok = np.isfinite(w.actual)
    np.testing.assert_allclose(oracle.values[:, -w.horizon:][ok], 2.0 * w.actual[ok])
