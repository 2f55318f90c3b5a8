"""forecast_panel: triage lanes, choice by backtest, intervals, isolation of failing models."""

from __future__ import annotations

import numpy as np
import pytest

from greennanny.errors import ConfigError
from greennanny.forecast import models as registry
from greennanny.forecast.intervals import backtest_widths, conformal_quantile, history_widths
from greennanny.forecast.models.seasonal_naive import SeasonalNaive
from greennanny.forecast.panel import Panel
from greennanny.forecast.runner import forecast_panel
from greennanny.forecast.selection import backtest_origins, naive_scale

NAN = np.nan
M = 24  # hourly steps, one day
HOUR = 3600 * 10**9
NOW = 1_700_000_000 * 10**9


def _panel(values: np.ndarray, ids: list[int] | None = None) -> Panel:
    values = np.atleast_2d(np.asarray(values, dtype=float))
    sids = np.arange(values.shape[0]) if ids is None else np.array(ids)
    return Panel(sids, NOW - values.shape[1] * HOUR, HOUR, values)


def _sine(n_steps: int) -> np.ndarray:
    return 20 + 3 * np.sin(2 * np.pi * np.arange(n_steps) / M)


def test_result_shape_and_stamps() -> None:
    rng = np.random.default_rng(0)
    panel = _panel(_sine(10 * M)[None, :] + rng.normal(0, 0.3, (3, 10 * M)), [11, 12, 13])
    res = forecast_panel(panel, horizon=6, season=M, now_ns=NOW + 5)
    assert res.series_ids.tolist() == [11, 12, 13]
    assert res.start_ns == NOW and res.step_ns == HOUR and res.made_at_ns == NOW + 5
    assert res.mean.shape == res.lo95.shape == (3, 6) and res.horizon == 6
    assert np.isfinite(res.mean).all() and res.skipped == {}
    assert (res.lo95 <= res.lo80).all() and (res.lo80 <= res.mean).all()
    assert (res.mean <= res.hi80).all() and (res.hi80 <= res.hi95).all()
    assert res.fallback_reason == [None] * 3 and set(res.model) <= {"ets", "seasonal_naive"}
    assert np.isfinite(res.backtest_mase).all() and all(r is not None for r in res.runner_up)
    frame = res.to_frame()
    assert len(frame) == 18 and frame["ts_ns"].iloc[0] == NOW and frame["step"].iloc[-1] == 6
    assert res.row(12) == 1
    again = forecast_panel(panel, horizon=6, season=M, now_ns=NOW + 5)
    np.testing.assert_array_equal(again.mean, res.mean)  # deterministic
    np.testing.assert_array_equal(again.hi95, res.hi95)


def test_constant_series_forecasts_its_constant_with_zero_width() -> None:
    values = np.full(10 * M, 12.5)
    values[40:45] = NAN
    res = forecast_panel(_panel(values), horizon=M, season=M, now_ns=NOW)
    np.testing.assert_array_equal(res.mean, np.full((1, M), 12.5))
    for bound in (res.lo80, res.hi80, res.lo95, res.hi95):
        np.testing.assert_array_equal(bound, res.mean)
    assert res.model == ["last_value"]
    assert res.fallback_reason == [f"constant series: all {10 * M - 5} values are 12.5"]


def test_one_observation_gets_last_value_with_a_reason() -> None:
    values = np.full(10 * M, NAN)
    values[100] = 7.0
    res = forecast_panel(_panel(values, [42]), horizon=4, season=M, now_ns=NOW)
    assert res.model == ["last_value"]
    np.testing.assert_array_equal(res.mean, [[7.0] * 4])
    reason = res.fallback_reason[0]
    assert reason is not None and reason.startswith("too short: 1 observation, need 48")
    assert "no interval" in reason and np.isnan(res.hi80).all()
    assert np.isnan(res.backtest_mase).all() and res.runner_up == [None]


def test_short_series_with_one_season_gets_seasonal_naive() -> None:
    values = np.full(10 * M, NAN)
    values[-30:] = np.arange(30.0)
    res = forecast_panel(_panel(values), horizon=M, season=M, now_ns=NOW)
    assert res.model == ["seasonal_naive"]
    assert res.fallback_reason == ["too short: 30 observations, need 48"]
    np.testing.assert_array_equal(res.mean[0], np.arange(6.0, 30.0))
    assert np.isfinite(res.hi95).all() and (np.diff(res.hi95[0] - res.mean[0]) >= -1e-12).all()


def test_all_nan_series_is_skipped_with_a_reason() -> None:
    values = np.stack([np.full(10 * M, NAN), _sine(10 * M)])
    res = forecast_panel(_panel(values, [5, 6]), horizon=3, season=M, now_ns=NOW)
    assert res.series_ids.tolist() == [6]
    assert res.skipped == {5: f"no finite values in the {10 * M} steps of the panel"}
    with pytest.raises(KeyError, match="no finite values"):
        res.row(5)


def test_selection_picks_the_better_model_per_series() -> None:
    rng = np.random.default_rng(7)
    t = 14 * M
    noisy_sine = _sine(t) + rng.normal(0, 0.5, t)
    # A seasonal random walk: each hour is yesterday's same hour plus a shock, so yesterday is
    # the best possible forecast and smoothing over several days only lags.
    walk = np.empty(t)
    walk[:M] = 10 + rng.normal(0, 1, M)
    shocks = rng.normal(0, 1, t)
    for i in range(M, t):
        walk[i] = walk[i - M] + shocks[i]
    res = forecast_panel(_panel(np.stack([noisy_sine, walk])), horizon=M, season=M, now_ns=NOW)
    assert res.model == ["ets", "seasonal_naive"]
    assert res.runner_up == ["seasonal_naive", "ets"]
    assert (res.backtest_mase < res.runner_up_mase).all()
    assert res.fallback_reason == [None, None]


def test_interval_coverage_on_gaussian_noise() -> None:
    rng = np.random.default_rng(11)
    n, t = 300, 14 * M
    y = _sine(t + M)[None, :] + rng.normal(0, 1.0, (n, t + M))
    res = forecast_panel(_panel(y[:, :t]), horizon=M, season=M, now_ns=NOW)
    future = y[:, t:]
    cover80 = float(((future >= res.lo80) & (future <= res.hi80)).mean())
    cover95 = float(((future >= res.lo95) & (future <= res.hi95)).mean())
    print(f"coverage 80%: {cover80:.3f}, 95%: {cover95:.3f}")
    assert 0.7 <= cover80 <= 0.9
    assert 0.88 <= cover95 <= 0.995
    half = res.hi80 - res.mean
    assert (np.diff(half, axis=1) >= -1e-12).all()  # never narrower further ahead


class _Boom:
    """A model that raises whenever its panel holds the poison value."""

    name = "boom"

    def __init__(self, season: int) -> None:
        self.inner = SeasonalNaive(season)

    def fit(self, panel: Panel) -> None:
        if (panel.values == 666.0).any():
            raise ValueError("poisoned")
        self.inner.fit(panel)

    def predict(self, h: int) -> np.ndarray:
        return self.inner.predict(h) + 0.1

    def update(self, panel: Panel) -> None:
        self.fit(panel)


def test_a_model_that_raises_falls_back_for_that_series_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(registry.MODELS, "boom", _Boom)
    rng = np.random.default_rng(3)
    values = _sine(10 * M)[None, :] + rng.normal(0, 0.3, (5, 10 * M))
    values[2, 5] = 666.0
    panel = _panel(values)
    res = forecast_panel(panel, horizon=M, season=M, models=("boom", "ets"), now_ns=NOW)
    assert np.isfinite(res.mean).all()
    assert res.model[2] == "ets"
    assert res.fallback_reason[2] == ("boom failed (ValueError: poisoned); chose among the rest")
    assert [r for i, r in enumerate(res.fallback_reason) if i != 2] == [None] * 4
    only = forecast_panel(panel, horizon=M, season=M, models=("boom",), now_ns=NOW)
    assert only.model[2] == "seasonal_naive" and only.model[0] == "boom"
    assert only.fallback_reason[2] == "all models failed: boom failed (ValueError: poisoned)"


def test_argument_errors() -> None:
    panel = _panel(_sine(3 * M))
    with pytest.raises(ConfigError, match="unknown forecast model"):
        forecast_panel(panel, horizon=3, season=M, models=("arima",), now_ns=NOW)
    with pytest.raises(ValueError, match="horizon"):
        forecast_panel(panel, horizon=0, season=M, now_ns=NOW)


def test_backtest_origins_and_naive_scale() -> None:
    assert backtest_origins(100, 24, 3) == [28, 52, 76]
    assert backtest_origins(50, 24, 3) == [2, 26]
    values = np.array([[1.0, 2.0, 4.0, 7.0, NAN, 13.0]])
    # season 2, pairs (t, t-2) with t < origin: |4-1|=3, |7-2|=5, (NaN at t=4), |13-7|=6
    np.testing.assert_allclose(naive_scale(values, 2, [4, 6]), [[4.0], [14.0 / 3.0]])


def test_conformal_quantile_and_widths() -> None:
    errs = np.array([[5.0, 1.0, 3.0, NAN, 2.0, 4.0]])  # 5 finite values
    np.testing.assert_array_equal(conformal_quantile(errs, 0.5), [3.0])  # ceil(6*0.5)=3rd
    np.testing.assert_array_equal(conformal_quantile(errs, 0.8), [5.0])  # ceil(4.8)=5th
    np.testing.assert_array_equal(conformal_quantile(np.full((1, 3), NAN), 0.8), [NAN])
    # 10 origins, so each horizon step is its own pool of 10 (the window is 3 steps)
    abs_err = np.tile(np.array([3.0, 1.0, 2.0, 0.5])[None, None, :], (10, 1, 1))
    np.testing.assert_array_equal(backtest_widths(abs_err, 0.8), [[3.0, 3.0, 3.0, 3.0]])
    walk = history_widths(np.array([[0.0, 1.0, 0.0, 1.0]]), 1, 4, 0.8)
    np.testing.assert_allclose(walk, [[1.0, np.sqrt(2), np.sqrt(3), 2.0]])


def test_an_empty_panel_gives_an_empty_result() -> None:
    res = forecast_panel(_panel(np.empty((0, 3 * M))), horizon=5, season=M, now_ns=NOW)
    assert res.mean.shape == (0, 5) and res.model == [] and res.skipped == {}
