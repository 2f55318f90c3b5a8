"""The daily-profile model and the combination: exact values on constructed series, and the
backtest fast path equal to fitting at every origin (the contract of forecast_origins)."""

from __future__ import annotations

import numpy as np

from greennanny.forecast.base import forecast_at_origins
from greennanny.forecast.models import make_model
from greennanny.forecast.models.combination import Combination
from greennanny.forecast.models.profile import DailyProfile
from greennanny.forecast.panel import Panel

M = 24


def _panel(values: np.ndarray) -> Panel:
    return Panel(np.arange(values.shape[0]), 0, 3600 * 10**9, values)


def test_profile_of_a_repeating_day_forecasts_that_day():
    day = 20 + 5 * np.sin(np.arange(M) / M * 2 * np.pi)
    v = np.tile(day, 10)[None, :]
    m = DailyProfile(M, days=7)
    m.fit(_panel(v))
    np.testing.assert_allclose(m.predict(2 * M)[0], np.tile(day, 2), atol=1e-12)


def test_profile_is_the_mean_of_the_last_days_and_a_hole_is_skipped():
    days = np.array([[10.0] * M, [12.0] * M, [14.0] * M])  # three flat days
    v = days.reshape(1, -1).copy()
    v[0, M + 5] = np.nan  # a hole in the middle day at phase 5
    m = DailyProfile(M, days=3)
    m.fit(_panel(v))
    prof = m._profile[0]
    assert prof[0] == 12.0 and prof[5] == 12.0  # (10 + 14) / 2 where the middle day is missing


def test_profile_anomaly_fades_with_the_horizon():
    rng = np.random.default_rng(3)
    base = np.tile(20 + 4 * np.sin(np.arange(M) / M * 2 * np.pi), 14)
    dep = np.zeros(base.size)
    for t in range(1, base.size):  # an AR(1) departure, phi 0.8
        dep[t] = 0.8 * dep[t - 1] + rng.normal(0, 0.3)
    dep[-1] = 3.0  # a warm last hour
    m = DailyProfile(M, days=7)
    m.fit(_panel((base + dep)[None, :]))
    assert 0.6 < m._phi[0] < 0.95
    extra = m.predict(48)[0] - m._profile[0][np.arange(48) % M]
    assert extra[0] > 1.5 and np.all(np.diff(extra) < 0) and abs(extra[-1]) < 0.05


def test_combination_is_the_mean_of_its_members_and_its_backtest_path_equals_refitting():
    rng = np.random.default_rng(11)
    t = np.arange(20 * M)
    v = np.stack([15 + 3 * np.sin(t / M * 2 * np.pi + k) + rng.normal(0, 0.5, t.size) for k in range(4)])
    v[1, 200:207] = np.nan
    panel = _panel(v)
    combo = make_model("combo", M)
    combo.fit(panel)
    members = [make_model("ets", M), DailyProfile(M, days=3), DailyProfile(M, days=7), make_model("lagreg", M)]
    for mem in members:
        mem.fit(panel)
    np.testing.assert_allclose(combo.predict(M), np.mean([mem.predict(M) for mem in members], axis=0), atol=1e-9)
    origins = [10 * M, 14 * M, 17 * M, 20 * M]
    fast = forecast_at_origins(combo, panel, origins, M)
    for j, o in enumerate(origins):
        slow = Combination(M)
        slow.fit(panel.head(o))
        np.testing.assert_allclose(fast[j], slow.predict(M), atol=1e-8)


def test_blend_weights_the_member_that_did_better_and_its_backtest_path_equals_refitting():
    from greennanny.forecast.models.combination import Blend
    from greennanny.forecast.models.last_value import LastValue
    from greennanny.forecast.models.seasonal_naive import SeasonalNaive

    rng = np.random.default_rng(5)
    t = np.arange(21 * M)
    # row 0 repeats its day exactly (seasonal naive is perfect), row 1 is a random walk with a
    # daily ripple too small to matter (the last value is the better guess)
    v = np.stack([18 + 4 * np.sin(t / M * 2 * np.pi), 18 + np.cumsum(rng.normal(0, 1.0, t.size))])
    panel = _panel(v)
    b = Blend(M, members=[SeasonalNaive, LastValue])
    b.fit(panel)
    w = b._w
    assert w.shape == (2, 2) and np.allclose(w.sum(axis=0), 1.0)
    np.testing.assert_allclose(w[:, 0], [1 - 0.05 / 1.05, 0.05 / 1.05], rtol=1e-6)  # the floor, renormalised
    assert w[1, 1] > w[0, 1]
    np.testing.assert_allclose(b.predict(M)[0], v[0, -M:], atol=0.25)
    default = Blend(M)
    origins = [14 * M, 17 * M, 21 * M]
    fast = forecast_at_origins(default, panel, origins, M)
    for j, o in enumerate(origins):
        slow = Blend(M)
        slow.fit(panel.head(o))
        np.testing.assert_allclose(fast[j], slow.predict(M), atol=1e-8)
