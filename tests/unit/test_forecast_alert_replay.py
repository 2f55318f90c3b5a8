"""The pieces of bench/forecast_alerts.py (issue 7 point 2), with exact expected values.

Matching of forecast alerts to actual crossings (lead time, precision, recall, the counting
window), episodes through `machine.Track` with hysteresis, the threshold rule, `crossing()` on a
constructed forecast against the bench's vectorised probability, and, where the shared data is
present, a short replay of one AGC 2018 compartment through the node's forecasting path.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.shared_paths import SHARED_DIR

from greennanny.alerts.rules import Z80, crossing

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import forecast_alerts as fal

MIN = 60 * 10**9
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = int(pd.Timestamp("2018-09-01 00:00", tz="UTC").value)


def phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


# ---------------------------------------------------------------- matching


def test_an_alert_90_min_before_a_crossing_has_lead_90_and_is_a_hit() -> None:
    alert = fal.Episode(T0, T0 + 3 * HOUR)
    m = fal.match([alert], [T0 + 90 * MIN], 6 * HOUR)
    assert (m.alerts, m.true_alerts, m.crossings, m.recalled) == (1, 1, 1, 1)
    assert m.lead_min == [90.0]
    assert m.precision == 1.0 and m.recall == 1.0 and m.median_lead_min == 90.0 and m.open_only == 0


def test_a_false_alarm_lowers_precision_not_recall() -> None:
    hit = fal.Episode(T0, T0 + 2 * HOUR)
    false = fal.Episode(T0 + 2 * DAY, T0 + 2 * DAY + HOUR)  # no crossing follows
    m = fal.match([hit, false], [T0 + HOUR], 6 * HOUR)
    assert (m.alerts, m.true_alerts) == (2, 1)
    assert m.precision == 0.5 and m.recall == 1.0 and m.lead_min == [60.0]


def test_a_crossing_without_an_alert_lowers_recall() -> None:
    m = fal.match([fal.Episode(T0, T0 + HOUR)], [T0 + 30 * MIN, T0 + DAY], 6 * HOUR)
    assert (m.crossings, m.recalled) == (2, 1) and m.recall == 0.5 and m.precision == 1.0


def test_an_alert_at_or_after_the_crossing_is_no_forecast() -> None:
    at = fal.match([fal.Episode(T0, T0 + HOUR)], [T0], 6 * HOUR)
    after = fal.match([fal.Episode(T0 + MIN, T0 + HOUR)], [T0], 6 * HOUR)
    for m in (at, after):
        assert m.recalled == 0 and m.true_alerts == 0 and m.lead_min == []


def test_an_alert_more_than_h_before_counts_only_while_it_is_open() -> None:
    crossing_at = T0 + 8 * HOUR
    still_open = fal.match([fal.Episode(T0, None)], [crossing_at], 6 * HOUR)
    assert still_open.recalled == 1 and still_open.true_alerts == 1 and still_open.lead_min == [480.0]
    assert still_open.open_only == 1
    open_to_it = fal.match([fal.Episode(T0, crossing_at)], [crossing_at], 6 * HOUR)
    assert open_to_it.recalled == 1
    resolved = fal.match([fal.Episode(T0, T0 + 7 * HOUR)], [crossing_at], 6 * HOUR)
    assert resolved.recalled == 0 and resolved.true_alerts == 0


def test_the_lead_is_from_the_last_alert_before_the_crossing() -> None:
    early = fal.Episode(T0, T0 + HOUR)  # withdrawn
    late = fal.Episode(T0 + 4 * HOUR, None)
    m = fal.match([early, late], [T0 + 5 * HOUR], 6 * HOUR)
    assert m.lead_min == [60.0]  # not 300: the warning that stood at the crossing
    assert (m.alerts, m.true_alerts) == (2, 2)  # the crossing is within H of both


def test_the_counting_window_leaves_out_what_could_not_be_matched_in_full() -> None:
    first, last = T0, T0 + 10 * DAY
    alerts = [fal.Episode(first + HOUR, first + 2 * HOUR), fal.Episode(last - 2 * HOUR, None)]
    crossings = [first + 2 * HOUR, last - HOUR]
    m = fal.match(alerts, crossings, 6 * HOUR, first, last)
    # the alert at last - 2 h fired after last - H: not counted; the crossing at first + 2 h is
    # before first + H: not counted; both still take part in the matching
    assert (m.alerts, m.true_alerts, m.crossings, m.recalled) == (1, 1, 1, 1)
    assert m.lead_min == [60.0]


def test_matches_add_up_over_series() -> None:
    a = fal.Match(2, 1, 3, 2, [30.0, 90.0], 1)
    b = fal.Match(1, 1, 1, 1, [120.0])
    s = a + b
    assert (s.alerts, s.true_alerts, s.crossings, s.recalled, s.open_only) == (3, 2, 4, 3, 1)
    assert s.lead_quartiles() == [60.0, 90.0, 105.0]
    assert s.median_lead_min == 90.0 and s.precision == pytest.approx(2 / 3) and s.recall == 0.75
    assert math.isnan(fal.Match(0, 0, 0, 0).precision) and fal.Match(0, 0, 0, 0).as_dict()["recall"] is None


# ---------------------------------------------------------------- episodes and thresholds


def test_actual_episodes_follow_the_clear_level() -> None:
    ts = T0 + np.arange(8) * 5 * MIN
    values = np.array([25.0, 28.5, 27.5, 28.2, 26.9, np.nan, 28.1, 27.2])
    got = fal.level_episodes(ts, values, fal.actual_rule(28.0))  # clears below 27.0
    assert got == [fal.Episode(int(ts[1]), int(ts[4])), fal.Episode(int(ts[6]), None)]


def test_early_warning_level_is_below_the_threshold() -> None:
    rule = fal.actual_rule(28.0, 1.0)
    assert (rule.value, rule.clear_level) == (27.0, 26.0)


def test_forecast_episodes_use_probability_and_half_of_it_to_clear() -> None:
    ts = T0 + np.arange(7) * 15 * MIN
    p = np.array([0.1, 0.6, 0.3, np.nan, 0.2, 0.49, 0.5])
    rule = fal.forecast_rule(28.0)  # probability 0.5, clear below 0.25
    assert rule.probability == 0.5 and rule.clear_p == 0.25 and rule.horizon_h == 6.0
    got = fal.forecast_episodes(ts, p, rule)
    assert got == [fal.Episode(int(ts[1]), int(ts[4])), fal.Episode(int(ts[6]), None)]


def test_threshold_is_the_quantile_of_daily_maxima_lowered_to_ten_crossing_days() -> None:
    days = 30
    ts = T0 + np.arange(days * 288) * 5 * MIN
    hour = (ts - T0) % DAY / HOUR
    peak = 26.05 + np.arange(days) % 10 * 0.3  # maxima 26.05 .. 28.75, three days each (never on a 0.1 step)
    values = 20.0 + (np.repeat(peak, 288) - 20.0) * np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
    thr, n_days, complete = fal.pick_threshold(ts, values, "UTC", T0, int(ts[-1]), 0.8)
    assert complete == days - 1  # the last day ends after the last reading
    # the 0.8 quantile of the 29 complete days is 28.15 (28.1 or 28.2): 6 days above it; lowered
    # by 0.1 until 10 days cross: 27.9 gives 9 (28.15 x3 and the six), 27.8 gives 12
    assert thr == 27.8 and n_days == 12
    assert n_days == int((peak > thr).sum())


def test_episode_shape_tells_brief_spikes_from_bin_mean_crossings() -> None:
    ts = T0 + np.arange(24) * 5 * MIN  # two hours of 5-minute readings, 15-minute bins of 3
    values = np.full(24, 26.0)
    values[3:5] = 28.5  # two readings above 28 in a bin with 26: bin mean 27.67, below
    values[12:16] = 28.5  # four readings above, bins [12-14] all above (mean 28.5)
    eps = fal.level_episodes(ts, values, fal.actual_rule(28.0))
    assert len(eps) == 2
    got = fal.episode_shape(ts, values, eps, 28.0, 15 * MIN)
    assert got == {"episode_minutes_above_median": 15.0, "episodes_short_share": 0.5,
                   "episodes_bin_mean_above_share": 0.5}


def test_reliability_counts_runs_and_what_followed_within_h() -> None:
    ts = T0 + np.arange(48) * 15 * MIN
    values = np.full(48, 20.0)
    values[10] = 30.0  # one reading above, at T0 + 150 min
    runs = T0 + np.array([0, 60, 180, 240]) * MIN
    p = np.array([0.05, 0.55, 0.55, np.nan])
    got = fal.reliability(runs, p, ts, values, 28.0, 2 * HOUR, int(ts[-1]))
    # run at 0: 150 min later, not within 2 h (bin 0.0-0.1, no hit); at 60: within (bin 0.5-0.6,
    # hit); at 180: after it (no hit); the NaN run is not counted
    assert got[0].tolist() == [1, 0, 0, 0, 0, 2, 0, 0, 0, 0]
    assert got[1].tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 0]


# ---------------------------------------------------------------- crossing() on a forecast


def constructed(mean: list[float], sigma: float) -> pd.DataFrame:
    m = np.array(mean)
    return pd.DataFrame({"ts": T0 + (np.arange(m.size) + 1) * HOUR, "mean": m, "lo80": m - Z80 * sigma,
                         "hi80": m + Z80 * sigma})


def test_crossing_of_a_constructed_forecast() -> None:
    pts = constructed([26.0, 27.0, 28.0, 29.0], 1.0)  # steps at +1 .. +4 h
    rule = fal.forecast_rule(28.5, horizon_h=3.0)
    c = crossing(pts, T0, 3 * HOUR, rule, T0)
    assert c is not None
    assert c.probability == pytest.approx(phi(-0.5), abs=1e-12)  # 28 against 28.5, sigma 1
    assert c.expected_ns is None and c.likely_ns is None and c.extreme == 28.0
    c4 = crossing(pts, T0, 4 * HOUR, fal.forecast_rule(28.5, horizon_h=4.0), T0)
    assert c4 is not None and c4.probability == pytest.approx(phi(0.5), abs=1e-12)
    assert c4.expected_ns == c4.likely_ns == T0 + 4 * HOUR
    assert crossing(pts, T0 + 4 * HOUR, HOUR, rule, T0) is None  # no step in the horizon


def test_the_vectorised_probability_equals_crossing() -> None:
    rng = np.random.default_rng(7)
    runs, steps = 5, 12
    mean = 27.0 + rng.normal(0, 1, (runs, 1, steps))
    half = rng.uniform(0.0, 1.5, (runs, 1, steps))
    half[0, 0, :] = 0.0  # a zero-width interval: 0 or 1
    run_ns = T0 + np.arange(runs) * 15 * MIN + 5 * 10**9
    start = T0 + (np.arange(runs) + 1) * 15 * MIN
    rep = fal.Replay(["s"], run_ns, start, 15 * MIN,
                     {"e": {"mean": mean, "lo80": mean - half, "hi80": mean + half}}, {}, 0.0)
    rule = fal.forecast_rule(27.5, horizon_h=2.0)
    got = fal.probabilities(rep, "e", 0, 27.5, 2.0)
    want = fal.crossing_probabilities(rep, "e", 0, rule)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert set(np.round(got[:1], 6)) <= {0.0, 1.0}


# ---------------------------------------------------------------- a short real replay


AGC = SHARED_DIR / "data" / "agc2018_cucumber_greenhouse_climate.csv.gz"


@pytest.mark.skipif(not AGC.exists(), reason=f"shared data not present ({AGC})")
def test_short_replay_of_one_agc_compartment() -> None:
    spec = next(s for s in fal.DATASETS if s.name == "AGC 2018")
    spec = fal.fa.DataSpec(spec.name, AGC, spec.time_col, spec.series_cols, spec.tz, spec.group_col)
    names, sid, ts, val = fal.load_air(spec, only=["AiCU/Tair"])
    assert names == ["AiCU/Tair"] and set(np.unique(sid).tolist()) == {0}
    first, last = fal.replay_span(ts, spec.tz, days=4)
    assert pd.Timestamp(first, tz="UTC").tz_convert(spec.tz).strftime("%Y-%m-%d %H:%M") == "2018-08-29 00:00"
    rep = fal.replay(names, sid, ts, val, spec.tz, first, last, steps=25, every_ns=HOUR, gate=True)
    assert rep.run_ns.size == 96 and rep.run_ns[0] == first + 5 * 10**9
    assert rep.info[fal.AUTO]["refits"] == 4  # once a day, as refit_h = 24
    for eng in (fal.AUTO, fal.NAIVE):
        f = rep.forecasts[eng]
        assert np.isfinite(f["mean"][:, 0, :24]).all()
        assert (f["hi80"] >= f["mean"])[:, 0, :24].all()
    sel = ts <= last
    row, at_default, sweep, check = fal.score_series(rep, 0, ts[sel], val[sel], spec.tz, first, last, 0.8)
    assert check < 1e-9
    assert 25.0 < row["threshold"] < 30.0 and row["days"] == 4
    for m in [*at_default.values(), *sweep.values()]:
        assert 0 <= m.true_alerts <= m.alerts and 0 <= m.recalled <= m.crossings
        assert len(m.lead_min) == m.recalled and all(0 < x for x in m.lead_min)
        if m.alerts:
            assert 0.0 <= m.precision <= 1.0
        if m.crossings:
            assert 0.0 <= m.recall <= 1.0
    assert at_default[fal.EARLY].crossings == at_default[fal.AUTO].crossings > 0
