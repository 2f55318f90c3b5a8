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


class Blend(Combination):
    """A combination weighted per series by its members' recent backtest errors.

    Why: the members are good on different series (the 7-day profile on a zone whose climate
    computer repeats its day, ETS where the level drifts), and one fixed weighting cannot follow
    that. Each member forecasts the last `origins` seasons of the fit window one season ahead;
    a member's weight is proportional to 1 / MAE**2 over those (no member gets less than
    `floor` of the weight, so one lucky week cannot zero a member), then every member is fitted
    on the whole window. Costs one backtest pass per member on top of the fit.
    """

    name = "blend"

    def __init__(self, season: int, members: Sequence[Callable[[int], Forecaster]] | None = None,
                 origins: int = 7, floor: float = 0.05, power: float = 4.0) -> None:
        super().__init__(season, members)
        self.origins, self.floor, self.power = origins, floor, power
        self._w: np.ndarray | None = None

    def fit(self, panel: Panel) -> None:
        self._w = self._weights(panel)
        super().fit(panel)

    def _weights(self, panel: Panel) -> np.ndarray:
        m, t = self.season, panel.n_steps
        k = len(self.members)
        origins = [o for o in range(t - self.origins * m, t, m) if o >= 2 * m]
        if not origins:
            return np.full((k, panel.n_series), 1.0 / k)
        actual = np.stack([panel.values[:, o:o + m] for o in origins])  # (B, n, m)
        mae = np.empty((k, panel.n_series))
        for i, member in enumerate(self.members):
            f = forecast_at_origins(member, panel, origins, m)
            err = np.abs(f - actual).transpose(1, 0, 2).reshape(panel.n_series, -1)  # (n, B * m)
            seen = np.isfinite(err)
            with np.errstate(all="ignore"):  # a series with no scored cell: NaN, equal weights below
                mae[i] = np.where(seen, err, 0.0).sum(axis=1) / seen.sum(axis=1)
        with np.errstate(all="ignore"):
            inv = 1.0 / np.maximum(mae, 1e-9) ** self.power  # a perfect member takes the weight
        inv = np.where(np.isfinite(inv), inv, np.nan)
        w = inv / np.nansum(inv, axis=0, keepdims=True)
        w = np.where(np.isfinite(w), w, 1.0 / k)
        w = np.maximum(w, self.floor)
        return w / w.sum(axis=0, keepdims=True)

    def predict(self, h: int) -> np.ndarray:
        if self._w is None:
            raise RuntimeError("blend: fit() before predict()")
        return np.einsum("kn,knh->nh", self._w, np.stack([mem.predict(h) for mem in self.members]))

    def forecast_origins(self, panel: Panel, origins: Sequence[int], h: int) -> np.ndarray:
        """Weights from each origin's own past (no peeking), members' fast paths for the rest."""
        per = np.stack([forecast_at_origins(mem, panel, origins, h) for mem in self.members])  # (k, B, n, h)
        out = np.empty(per.shape[1:])
        for j, o in enumerate(origins):
            w = self._weights(panel.head(o))
            out[j] = np.einsum("kn,knh->nh", w, per[:, j])
        return out
