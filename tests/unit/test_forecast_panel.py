"""Panel construction from points (quality.prepare_panel): mean per bin, bounded gap
interpolation, rows; and the Panel itself: views, validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from greennanny.forecast.panel import Panel, last_finite
from greennanny.forecast.quality import QualityRules, interpolate_gaps, prepare_panel

NAN = np.nan


def _grid(sid: np.ndarray, ts: np.ndarray, val: np.ndarray, **kwargs: Any) -> Panel:
    return prepare_panel(sid, ts, val, **kwargs).panel


def test_mean_per_bin_and_window_edges() -> None:
    # Grid: step 10, end 60 exclusive, 6 bins -> start 0, bins [0,10) [10,20) ... [50,60).
    sid = np.array([7, 7, 7, 7, 7, 7, 3])
    ts = np.array([0, 5, 10, 19, -1, 60, 55])
    val = np.array([1.0, 3.0, 4.0, NAN, 100.0, 100.0, 9.0])
    p = _grid(sid, ts, val, step_ns=10, end_ns=60, length=6, rules=QualityRules(max_gap_steps=0))
    assert p.series_ids.tolist() == [3, 7]
    assert p.start_ns == 0 and p.step_ns == 10 and p.end_ns == 60
    np.testing.assert_array_equal(p.values[0], [NAN, NAN, NAN, NAN, NAN, 9.0])
    # bin 0 = mean(1, 3); bin 1 = 4 (the NaN point is ignored); t=-1 and t=60 are outside.
    np.testing.assert_array_equal(p.values[1], [2.0, 4.0, NAN, NAN, NAN, NAN])
    np.testing.assert_array_equal(p.timestamps(), [0, 10, 20, 30, 40, 50])


def test_gap_interpolation_is_linear_and_bounded() -> None:
    ts = np.array([0, 30, 40, 80, 90]) * 10
    val = np.array([10.0, 40.0, 0.0, 5.0, 7.0])
    p = _grid(
        np.zeros(5, int), ts, val, step_ns=100, end_ns=1100, length=11, rules=QualityRules(max_gap_steps=2)
    )
    # bins 1,2 (gap 2) filled exactly; bins 5,6,7 (gap 3 > 2) stay NaN; the tail is not extrapolated
    np.testing.assert_array_equal(
        p.values[0], [10.0, 20.0, 30.0, 40.0, 0.0, NAN, NAN, NAN, 5.0, 7.0, NAN]
    )


def test_default_bound_is_four_steps() -> None:
    row = np.array([[0.0, NAN, NAN, NAN, NAN, 5.0, NAN, NAN, NAN, NAN, NAN, 11.0]])
    interpolate_gaps(row, 4)
    np.testing.assert_array_equal(row[0, :6], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert np.isnan(row[0, 6:11]).all()  # a 5-step gap is an outage, not noise
    ts = np.array([0, 5, 11])
    p = _grid(
        np.zeros(3, int), ts, np.array([0.0, 5.0, 11.0]), step_ns=1, end_ns=12, length=12
    )
    np.testing.assert_array_equal(p.values[0, :6], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert np.isnan(p.values[0, 6:11]).all()


def test_series_ids_fix_rows_and_order() -> None:
    sid = np.array([5, 9, 2])
    p = _grid(
        sid,
        np.array([0, 0, 0]),
        np.array([1.0, 2.0, 3.0]),
        step_ns=1,
        end_ns=2,
        length=2,
        series_ids=np.array([9, 4, 5]),
    )
    assert p.series_ids.tolist() == [9, 4, 5]
    np.testing.assert_array_equal(p.values[:, 0], [2.0, NAN, 1.0])  # 4 has no point; 2 dropped


def test_series_outside_window_becomes_all_nan_row() -> None:
    p = _grid(
        np.array([1, 2]), np.array([0, -50]), np.array([1.0, 2.0]), step_ns=1, end_ns=3, length=3
    )
    assert p.series_ids.tolist() == [1, 2]
    assert np.isnan(p.values[1]).all()


def test_head_take_and_validation() -> None:
    p = Panel(
        np.array([1, 2]),
        100,
        10,
        np.arange(8.0).reshape(2, 4),
        {"sun": np.arange(4.0), "own": np.ones((2, 4))},
    )
    h = p.head(3)
    assert h.n_steps == 3 and h.exog is not None and h.exog["sun"].values.shape == (3,)
    assert h.exog["sun"].role == "lagged"  # a plain array is an input seen only up to the origin
    t = p.take([1])
    assert t.series_ids.tolist() == [2] and t.values.tolist() == [[4.0, 5.0, 6.0, 7.0]]
    assert t.exog is not None and t.exog["own"].values.shape == (1, 4)
    with pytest.raises(ValueError, match="series ids"):
        Panel(np.array([1]), 0, 1, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="step_ns"):
        Panel(np.array([1]), 0, 0, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="one length"):
        prepare_panel(
            np.array([1]), np.array([0, 1]), np.array([1.0]), step_ns=1, end_ns=2, length=2
        )


def test_last_finite() -> None:
    v = np.array([[1.0, 2.0, NAN], [NAN, NAN, NAN], [3.0, NAN, 4.0]])
    np.testing.assert_array_equal(last_finite(v), [2.0, NAN, 4.0])


def test_known_and_oracle_inputs_keep_their_future_columns_at_a_backtest_origin() -> None:
    from greennanny.forecast.panel import Exog

    plan = Exog(np.arange(6.0), "known")  # two steps past the panel's end: the lighting plan
    seen = Exog(np.arange(4.0) * 10, "lagged")
    future = Exog(np.arange(6.0) * 100, "oracle")
    p = Panel(np.array([1]), 0, 10, np.zeros((1, 4)), {"plan": plan, "out": seen, "wx": future}, tz="Europe/Amsterdam")
    h = p.head(2)
    assert h.exog is not None and h.tz == "Europe/Amsterdam"
    assert h.exog["out"].values.tolist() == [0.0, 10.0]  # cut at the origin
    assert h.exog["plan"].values.tolist() == list(np.arange(6.0))  # known ahead: kept
    assert p.oracle_inputs == ["wx"] and h.oracle_inputs == ["wx"]
    with pytest.raises(ValueError, match="'out' \\(lagged\\) has 5 steps, panel has 4"):
        Panel(np.array([1]), 0, 10, np.zeros((1, 4)), {"out": Exog(np.zeros(5))})
    with pytest.raises(ValueError, match="'plan' \\(known\\) has 3 steps"):
        Panel(np.array([1]), 0, 10, np.zeros((1, 4)), {"plan": Exog(np.zeros(3), "known")})
    with pytest.raises(ValueError, match="role 'future'"):
        Exog(np.zeros(3), "future")
