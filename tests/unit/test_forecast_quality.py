"""Data quality for forecasting: each fault of issue 5 with its exact expected values.

Field cases (../shared/cases/field-faults.md) are named by id: BR-19 duplicate instants, BR-20
constant series, BR-21 a single observation. The real-data tests read ../shared/data in place
(never copied here) and skip without it; the spans they pin are the faults the data's README
lists, found by the detector without being told where they are.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.shared_paths import SHARED_DIR

from greennanny.config import config_from_dict
from greennanny.errors import ConfigError
from greennanny.forecast.panel import Panel
from greennanny.forecast.quality import (
    QualityRules,
    StuckSpan,
    local_calendar,
    local_day_ns,
    prepare_panel,
)
from greennanny.forecast.runner import forecast_panel
from greennanny.forecast.service import ForecastService
from greennanny.ingest.csv_import import PRESET_FILES, PRESETS, read_climate_csv
from greennanny.model import Batch, SeriesKey
from greennanny.runtime.clock import FakeClock
from greennanny.store.duckdb import DuckDBStore

NAN = np.nan
MIN = 60 * 10**9
HOUR = 60 * MIN
DAY = 24 * HOUR
SHARED_DATA = SHARED_DIR / "data"


def _ns(iso: str) -> int:
    return int(pd.Timestamp(iso).value)


def test_br19_duplicate_instants_last_write_wins_and_is_counted() -> None:
    # The case's CSV, with a second series interleaved and the rows out of time order, so the
    # winner is decided by arrival order, not by position after sorting.
    sid = np.array([1, 2, 1, 1, 2, 1])
    ts = np.array(
        [_ns(t) for t in ("2024-05-01T00:30Z", "2024-05-01T00:00Z", "2024-05-01T01:00Z",
                          "2024-05-01T00:00Z", "2024-05-01T00:00Z", "2024-05-01T00:30Z")]
    )
    val = np.array([2.0, 50.0, 4.0, 1.0, 60.0, 3.0])
    prep = prepare_panel(
        sid, ts, val, step_ns=30 * MIN, end_ns=_ns("2024-05-01T01:30Z"), length=3,
        rules=QualityRules(max_gap_steps=0),
    )
    np.testing.assert_array_equal(prep.panel.values, [[1.0, 3.0, 4.0], [60.0, NAN, NAN]])
    one, two = prep.reports
    assert (one.duplicates, two.duplicates) == (1, 1)
    assert one.points == 3 and two.points == 1
    assert one.reasons == ["1 duplicate instant: last write kept"]


def test_gap_up_to_max_is_interpolated_exactly_and_a_longer_gap_is_masked() -> None:
    # steps 0..15; missing 3-5 (3 steps = max) and 9-12 (4 steps > max)
    cols = np.array([0, 1, 2, 6, 7, 8, 13, 14, 15])
    val = np.array([0.0, 1.0, 2.0, 6.0, 5.0, 4.0, 8.0, 8.5, 9.0])
    prep = prepare_panel(
        np.zeros(cols.size, int), cols * 10, val, step_ns=10, end_ns=160, length=16,
        rules=QualityRules(max_gap_steps=3),
    )
    row = prep.panel.values[0]
    np.testing.assert_array_equal(row[3:6], [3.0, 4.0, 5.0])
    assert np.isnan(row[9:13]).all() and np.isfinite(row[13:]).all()
    rep = prep.reports[0]
    assert (rep.interpolated_steps, rep.masked_gap_steps, rep.longest_gap_steps) == (3, 4, 4)
    assert rep.observed_steps == 12 and rep.silent_steps == 0
    assert rep.reasons == [
        "4 steps in gaps over 3 steps masked (longest 4 from 1970-01-01T00:00Z)"
    ]


def _quantised_day_cycle(days: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """5-min air temperature with a daily cycle and noise, at the sensor's 0.1 degC resolution."""
    rng = np.random.default_rng(5)
    ts = np.arange(days * DAY // step, dtype=np.int64) * step
    y = 20 + 3 * np.sin(2 * np.pi * ts / DAY) + rng.normal(0, 0.15, ts.size)
    return ts, np.round(y, 1)


def test_stuck_run_is_detected_with_its_span_and_kept_out_of_training() -> None:
    five = 5 * MIN
    ts, y = _quantised_day_cycle(10, five)
    frozen = slice(9 * 288 + 120, 9 * 288 + 144)  # last day, 10:00-11:55, 24 points
    y[frozen] = 21.4
    step = 15 * MIN
    prep = prepare_panel(np.zeros(ts.size, int), ts, y, step_ns=step, end_ns=10 * DAY,
                         length=10 * 96, season=96)
    rep = prep.reports[0]
    span = StuckSpan(9 * DAY + 10 * HOUR, 9 * DAY + 11 * HOUR + 55 * MIN, 24, 21.4)
    assert rep.stuck_spans == [span]
    assert (rep.stuck_points, rep.stuck_steps) == (24, 8)
    assert rep.reasons == [
        "stuck at 21.4 for 24 points, 1970-01-10T10:00Z to 1970-01-10T11:55Z: masked from training"
    ]
    values = prep.panel.values[0]
    stuck_cols = np.arange(9 * 96 + 40, 9 * 96 + 48)
    assert np.isnan(values[stuck_cols]).all() and np.isfinite(np.delete(values, stuck_cols)).all()

    # The model never sees 21.4: seasonal naive fills the masked hours from the day before.
    res = forecast_panel(prep.panel, horizon=96, season=96, models=("seasonal_naive",),
                         now_ns=10 * DAY, quality=prep.by_id())
    assert res.model == ["seasonal_naive"] and res.fallback_reason == [None]
    np.testing.assert_array_equal(res.mean[0, 40:48], values[stuck_cols - 96])
    assert not np.isin(res.mean[0, 40:48], [21.4]).any()
    assert res.quality_notes == [rep.note()]

    # On an hourly grid the frozen span is 2 steps, a gap short enough to interpolate: it
    # stays masked all the same (a stuck span is never filled in).
    hourly = prepare_panel(np.zeros(ts.size, int), ts, y, step_ns=HOUR, end_ns=10 * DAY,
                           length=10 * 24, rules=QualityRules(max_gap_steps=4))
    assert np.isnan(hourly.panel.values[0, 9 * 24 + 10 : 9 * 24 + 12]).all()
    assert (hourly.reports[0].stuck_steps, hourly.reports[0].interpolated_steps) == (2, 0)

    # Shorter than stuck_after: the same run is an ordinary steady spell.
    lax = prepare_panel(np.zeros(ts.size, int), ts, y, step_ns=step, end_ns=10 * DAY,
                        length=10 * 96, rules=QualityRules(stuck_min_ns=3 * HOUR))
    assert lax.reports[0].stuck_spans == [] and np.isfinite(lax.panel.values).all()


def test_br20_constant_series_forecasts_its_constant_through_the_runner() -> None:
    ts = np.arange(100, dtype=np.int64) * HOUR  # a setpoint held steady, 100 hourly points
    prep = prepare_panel(np.zeros(100, int), ts, np.full(100, 7.0), step_ns=HOUR,
                         end_ns=100 * HOUR, length=100, season=24)
    rep = prep.reports[0]
    assert rep.constant and not rep.too_short and rep.stuck_spans == []
    res = forecast_panel(prep.panel, horizon=24, season=24, now_ns=100 * HOUR,
                         quality=prep.by_id())
    np.testing.assert_array_equal(res.mean, np.full((1, 24), 7.0))
    for bound in (res.lo80, res.hi80, res.lo95, res.hi95):
        np.testing.assert_array_equal(bound, res.mean)
    assert res.model == ["last_value"]
    assert res.fallback_reason == ["constant series: all 100 values are 7"]
    assert res.quality_notes == ["constant series: all 100 values are 7"]


def test_br21_one_observation_falls_back_with_a_reason_and_stores_no_nan(tmp_path: Path) -> None:
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path)}}, base_dir=tmp_path)
    store = DuckDBStore(cfg.store_path)
    try:
        t0 = 1_700_000_000 * 10**9
        key = SeriesKey("gh", "house-1", "new-probe", "air_temperature")
        store.write(Batch.from_columns([key], np.zeros(1, np.int32), np.array([t0]), np.array([1.0])))
        summary = ForecastService(store, cfg.forecast, FakeClock(t0 + 1)).run_once()
        assert summary.forecasts == 1 and summary.fallbacks == 1
        assert summary.quality["too_short_series"] == 1
        (series,) = store.series(quantity="air_temperature")
        found = store.latest_forecast(series.id)
        assert found is not None
        meta, points = found
        assert meta["model"] == "last_value"
        # 2 days of 15-min steps is the default minimum history
        assert meta["fallback_reason"] == (
            "too short: 1 observation, need 192; no interval: no two adjacent observations"
        )
        assert len(points) == 96 and (points["mean"] == 1.0).all()
        cur = store._cur()
        nan_cells = cur.execute(
            "SELECT count(*) FROM forecast_points WHERE isnan(mean) OR isnan(lo80) OR isnan(hi80)"
            " OR isnan(lo95) OR isnan(hi95) OR mean IS NULL"
        ).fetchone()
        no_interval = cur.execute("SELECT count(*) FROM forecast_points WHERE lo80 IS NULL").fetchone()
        assert nan_cells == (0,) and no_interval == (96,)  # missing with its reason, never NaN
    finally:
        store.close()


def test_spring_forward_day_in_amsterdam_has_23_hourly_slots() -> None:
    start, end = local_day_ns(dt.date(2018, 3, 25), "Europe/Amsterdam")
    assert (start, end) == (_ns("2018-03-24T23:00Z"), _ns("2018-03-25T22:00Z"))
    n = (end - start) // HOUR
    cal = local_calendar(start, HOUR, n, "Europe/Amsterdam")
    assert n == 23
    assert cal.hour.tolist() == [0, 1, *range(3, 24)]
    assert cal.slot.tolist() == cal.hour.tolist()
    assert set(cal.dow.tolist()) == {6}  # Sunday
    assert set(cal.date.astype(str).tolist()) == {"2018-03-25"}


def test_fall_back_night_in_new_york_keeps_both_1am_hours() -> None:
    start, end = local_day_ns(dt.date(2024, 11, 3), "America/New_York")
    n = (end - start) // HOUR
    cal = local_calendar(start, HOUR, n, "America/New_York")
    assert n == 25
    assert cal.hour.tolist() == [0, 1, 1, *range(2, 24)]
    ones = start + HOUR * np.flatnonzero(cal.hour == 1)
    assert ones.tolist() == [_ns("2024-11-03T05:00Z"), _ns("2024-11-03T06:00Z")]
    quarter = local_calendar(start, 15 * MIN, 8, "America/New_York")
    assert quarter.slot.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]  # 15-min slots of the local day


@pytest.fixture(scope="module")
def osu() -> Batch:
    path = SHARED_DATA / PRESET_FILES["osu2024"]
    if not path.exists():
        pytest.skip(f"{path} not present (needs the shared data folder beside the repo)")
    return read_climate_csv(path, PRESETS["osu2024"])[0]


def _row(batch: Batch, zone: str, quantity: str) -> int:
    return next(i for i, k in enumerate(batch.keys) if k.zone == zone and k.quantity == quantity)


def test_osu2024_fall_back_night_keeps_both_1am_hours_of_real_data(osu: Batch) -> None:
    start, end = local_day_ns(dt.date(2024, 11, 3), "America/New_York")
    prep = prepare_panel(osu.key_index, osu.ts_ns, osu.value, step_ns=HOUR, end_ns=end,
                         length=(end - start) // HOUR)
    cal = local_calendar(prep.panel.start_ns, HOUR, prep.panel.n_steps, "America/New_York")
    row = prep.panel.values[_row(osu, "kopilot", "air_temperature")]
    # Independent of the importer: the 24 rows stamped 01:xx that night, in file order; the
    # first 12 are summer time (05:00Z), the second 12 standard time (06:00Z).
    frame = pd.read_csv(SHARED_DATA / PRESET_FILES["osu2024"], usecols=["zone", "time_iso", "T Air"])
    night = frame[(frame["zone"] == "KoPilot") & frame["time_iso"].str.startswith("2024-11-03T01:")]
    assert len(night) == 24
    ones = np.flatnonzero(cal.hour == 1)
    assert (prep.panel.start_ns + ones * HOUR).tolist() == [_ns("2024-11-03T05:00Z"), _ns("2024-11-03T06:00Z")]
    np.testing.assert_allclose(row[ones], [night["T Air"][:12].mean(), night["T Air"][12:].mean()])
    assert all(r.duplicates == 0 for r in prep.reports)


def test_osu2024_both_zones_frozen_co2_is_found_and_masked(osu: Batch) -> None:
    # README: "both zones frozen (T Air, RH, CO2, VPD constant) for 23 samples from 2024-07-30
    # 19:25" (local, EDT). 28 days of 5-min steps around it, the engine's default gap rule.
    five = 5 * MIN
    prep = prepare_panel(osu.key_index, osu.ts_ns, osu.value, step_ns=five,
                         end_ns=_ns("2024-08-05T00:00Z"), length=28 * 288,
                         rules=QualityRules(max_gap_steps=12))
    found = {(osu.keys[r.series_id].zone, osu.keys[r.series_id].quantity): r.stuck_spans
             for r in prep.reports if r.stuck_spans}
    first, last = _ns("2024-07-30T23:25Z"), _ns("2024-07-31T01:25Z")
    assert found == {
        ("kopilot", "co2"): [StuckSpan(first, last, 23, 357.0)],
        ("reference", "co2"): [StuckSpan(first, last, 23, 336.0)],
    }
    rep = prep.reports[_row(osu, "kopilot", "co2")]
    # 25 steps from 23:25Z to 01:25Z: 23 frozen points and the 2 missing ones inside the span.
    assert (rep.stuck_points, rep.stuck_steps, rep.masked_gap_steps) == (23, 25, 0)
    col = (first - prep.panel.start_ns) // five
    assert np.isnan(prep.panel.values[rep.series_id, col : col + 25]).all()
    # Temperature froze too, but its own steady nights have runs as long (issue 6: the zone).
    assert prep.reports[_row(osu, "kopilot", "air_temperature")].stuck_spans == []


def test_agc2018_frozen_logger_of_croperators_and_sonoma_is_found() -> None:
    path = SHARED_DATA / PRESET_FILES["agc2018"]
    if not path.exists():
        pytest.skip(f"{path} not present (needs the shared data folder beside the repo)")
    batch, _ = read_climate_csv(path, PRESETS["agc2018"])
    # README: Croperators and Sonoma frozen for 19 samples, 2018-10-17 05:30-07:00 (CEST), Sonoma
    # CO2air stuck at 1247; and an all-NaN block 2018-10-18 22:45 to 10-19 00:50 (26 rows).
    prep = prepare_panel(batch.key_index, batch.ts_ns, batch.value, step_ns=5 * MIN,
                         end_ns=_ns("2018-10-25T00:00Z"), length=28 * 288,
                         rules=QualityRules(max_gap_steps=12))
    first, last = _ns("2018-10-17T03:30Z"), _ns("2018-10-17T05:00Z")
    found = {(batch.keys[r.series_id].zone, batch.keys[r.series_id].quantity): r.stuck_spans
             for r in prep.reports if r.stuck_spans}
    assert found == {
        ("croperators", "relative_humidity"): [StuckSpan(first, last, 19, 83.1)],
        ("croperators", "co2"): [StuckSpan(first, last, 19, 571.0)],
        ("sonoma", "relative_humidity"): [StuckSpan(first, last, 19, 86.0)],
        ("sonoma", "co2"): [StuckSpan(first, last, 19, 1247.0)],
    }
    sonoma_co2 = prep.reports[_row(batch, "sonoma", "co2")]
    assert sonoma_co2.reasons[0] == (
        "stuck at 1247 for 19 points, 2018-10-17T03:30Z to 2018-10-17T05:00Z: masked from training"
    )
    tair = prep.reports[_row(batch, "aicu", "air_temperature")]
    assert (tair.masked_gap_steps, tair.longest_gap_steps) == (26, 26)
    assert tair.reasons == ["26 steps in gaps over 12 steps masked (longest 26 from 2018-10-18T20:45Z)"]


def test_runner_checks_min_history() -> None:
    panel = Panel(np.array([1]), 0, HOUR, np.arange(30.0)[None, :])
    res = forecast_panel(panel, horizon=2, season=24, now_ns=0, min_history=40)
    assert res.fallback_reason == ["too short: 30 observations, need 40"]
    assert res.quality_notes == [None]
    with pytest.raises(ValueError, match="min_history"):
        forecast_panel(panel, horizon=2, season=24, now_ns=0, min_history=1)


def test_config_knobs_become_grid_rules() -> None:
    cfg = config_from_dict({"forecast": {"max_gap_min": 45, "stuck_after_min": 90}})
    f = cfg.forecast
    rules = QualityRules.for_grid(15 * MIN, max_gap_min=f.max_gap_min, stuck_factor=f.stuck_factor,
                                  stuck_after_min=f.stuck_after_min, min_history_days=f.min_history_days)
    assert rules == QualityRules(max_gap_steps=3, stuck_factor=4.0, stuck_min_ns=90 * MIN,
                                 min_history_steps=192)
    with pytest.raises(ConfigError, match="min_history_days=30.0 is more than the history_days=28"):
        config_from_dict({"forecast": {"min_history_days": 30}})
    with pytest.raises(ConfigError, match="stuck_factor"):
        config_from_dict({"forecast": {"stuck_factor": 0.5}})
