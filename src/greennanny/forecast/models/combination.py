"""The mean of a few different models' forecasts.

Why: errors of models built on different ideas (exponential smoothing's adaptive level and
season, the recent days' profile with a fading anomaly over three and over seven days) are only
partly correlated, so their mean is steadier than any of them; in forecasting competitions simple
combinations are the best-known way to beat the seasonal naive on series like these. Measured on
the shared greenhouse data (hourly, 24 h ahead, 14 origins, docs/benchmarks.md "Forecast
accuracy"): mean MASE 0.86 / 1.24 / 0.81 on AGC 2018 / OSU 2024 / AGC 2022, against 0.96 /
1.44 / 0.90 for the seasonal naive and 0.88 / 1.30 / 0.85 for ETS alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from greennanny.forecast.base import Forecaster, forecast_at_origins
from greennanny.forecast.models.ets import ETS
from greennanny.forecast.models.profile import DailyProfile
from greennanny.forecast.panel import Panel


class Combination:
    """Equal-weight mean of its members' forecasts (each fitted on the same panel)."""

    name = "combo"

    def __init__(self, season: int, members: Sequence[Callable[[int], Forecaster]] | None = None) -> None:
        makers = members or (ETS, lambda m: DailyProfile(m, days=3), lambda m: DailyProfile(m, days=7))
        self.season = season
        self.members: list[Forecaster] = [make(season) for make in makers]

    def fit(self, panel: Panel) -> None:
        for m in self.members:
            m.fit(panel)

    def predict(self, h: int) -> np.ndarray:
        return np.mean(np.stack([m.predict(h) for m in self.members]), axis=0)

    def forecast_origins(self, panel: Panel, origins: Sequence[int], h: int) -> np.ndarray:
        """Backtest forecasts (len(origins), n, h): each member's own fastest way (ETS runs all
        origins in one pass), then the mean; equal to fitting at each origin (base contract)."""
        return np.mean(np.stack([forecast_at_origins(m, panel, origins, h) for m in self.members]), axis=0)

    def update(self, panel: Panel) -> None:
        for m in self.members:
            m.update(panel)
