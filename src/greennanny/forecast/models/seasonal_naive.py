"""Seasonal naive: tomorrow at 10:00 looks like today at 10:00.

Why it is the baseline: greenhouse climate is dominated by the daily cycle (sun, heating and
screen schedules), so repeating the last day is hard to beat and is the yardstick of MASE.
A hole in the last season is filled from the day before, and failing that from the last finite
value, so a single dropped uplink does not become a NaN forecast for the same time every day.
"""

from __future__ import annotations

import numpy as np

from greennanny.forecast.panel import Panel, last_finite


class SeasonalNaive:
    """Repeats the last `season` steps of each series."""

    name = "seasonal_naive"

    def __init__(self, season: int) -> None:
        if season < 1:
            raise ValueError(f"season must be at least 1 step, got {season}")
        self.season = season
        self._pattern: np.ndarray | None = None

    def fit(self, panel: Panel) -> None:
        m = self.season
        values = panel.values
        n, t = values.shape
        if t < 2 * m:  # pad on the left so "the last two seasons" always exist
            values = np.concatenate([np.full((n, 2 * m - t), np.nan), values], axis=1)
        pattern = values[:, -m:].copy()
        hole = np.isnan(pattern)
        pattern[hole] = values[:, -2 * m : -m][hole]
        pattern = np.where(np.isnan(pattern), last_finite(values)[:, None], pattern)
        # pattern[:, j] is the value at step T - m + j, so forecast step k uses column k % m.
        self._pattern = pattern

    def predict(self, h: int) -> np.ndarray:
        if self._pattern is None:
            raise RuntimeError("seasonal_naive: fit() before predict()")
        return self._pattern[:, np.arange(h) % self.season]

    def update(self, panel: Panel) -> None:
        self.fit(panel)
