"""Daily profile with a decaying anomaly: the recent days' mean at each hour, plus today's
departure from it, fading with the horizon.

Why: a greenhouse climate computer drives the same daily schedule day after day (heating and
screen setpoints, vents on temperature, CO2 dosing while the vents are shut), so the mean of the
last few days at each time of day is a steadier estimate of tomorrow than yesterday alone (the
seasonal naive repeats yesterday's noise and yesterday's weather). What is left over, a sunny or
a dull day, persists for a few hours: the last departure from the profile, shrunk by `phi`
per step, carries it into the forecast and lets it fade. `phi` is each series' lag-1
autocorrelation of its departures over the fit window (clipped to [0, 0.99]); a series without
enough data falls back to phi = 0, the plain profile. All of it is a few vectorised numpy
operations on the whole panel, so fitting thousands of series costs milliseconds.
"""

from __future__ import annotations

import numpy as np

from greennanny.forecast.panel import Panel, last_finite


class DailyProfile:
    """Mean of the last `days` seasons per phase, plus the last anomaly decayed by phi**k."""

    name = "profile"

    def __init__(self, season: int, days: int = 7) -> None:
        if season < 1:
            raise ValueError(f"season must be at least 1 step, got {season}")
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        self.season, self.days = season, days
        self._profile: np.ndarray | None = None
        self._anomaly: np.ndarray | None = None
        self._phi: np.ndarray | None = None

    def fit(self, panel: Panel) -> None:
        m = self.season
        values = panel.values
        n, t = values.shape
        k = min(self.days, max(1, t // m))
        need = k * m
        window = values[:, -need:] if t >= need else np.concatenate([np.full((n, need - t), np.nan), values], axis=1)
        # window[:, j] is step T - need + j, whose phase is (T - need + j) % m relative to T's.
        by_day = window.reshape(n, k, m)
        seen = np.isfinite(by_day)
        count = seen.sum(axis=1)
        with np.errstate(all="ignore"):  # a phase with no value anywhere: NaN, filled below
            profile = np.where(seen, by_day, 0.0).sum(axis=1) / count  # (n, m), column p = phase (T + p) % m
        fill = last_finite(values)[:, None]
        profile = np.where(np.isfinite(profile), profile, fill)
        # Departures from the profile over the window, aligned by phase.
        dep = window - np.tile(profile, (1, k))
        a, b = dep[:, :-1], dep[:, 1:]
        ok = np.isfinite(a) & np.isfinite(b)
        with np.errstate(all="ignore"):
            num = np.where(ok, a * b, 0.0).sum(axis=1)
            den = np.where(ok, a * a, 0.0).sum(axis=1)
            phi = np.where((ok.sum(axis=1) >= m) & (den > 0), num / den, 0.0)
        self._phi = np.clip(np.nan_to_num(phi), 0.0, 0.99)
        last = np.full(n, np.nan)
        for j in range(1, min(m, need) + 1):  # the newest finite departure within the last season
            col = dep[:, -j]
            take = np.isnan(last) & np.isfinite(col)
            last[take] = col[take] * self._phi[take] ** (j - 1)  # decayed to the last step
        self._anomaly = np.nan_to_num(last)
        self._profile = profile

    def predict(self, h: int) -> np.ndarray:
        if self._profile is None or self._anomaly is None or self._phi is None:
            raise RuntimeError("profile: fit() before predict()")
        steps = np.arange(h)
        cols = steps % self.season  # need is whole seasons: profile column p is the phase of step T + p
        decay = self._phi[:, None] ** (steps[None, :] + 1)
        return self._profile[:, cols] + self._anomaly[:, None] * decay

    def update(self, panel: Panel) -> None:
        self.fit(panel)
