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

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from greennanny.forecast.base import Forecaster, Tunable, forecast_at_origins
from greennanny.forecast.models.ets import ETS
from greennanny.forecast.models.profile import DailyProfile
from greennanny.forecast.models.regression import LagRegression
from greennanny.forecast.panel import Panel


class Combination:
    """Equal-weight mean of its members' forecasts (each fitted on the same panel)."""

    name = "combo"

    def __init__(self, season: int, members: Sequence[Callable[[int], Forecaster]] | None = None) -> None:
        makers = members or (ETS, lambda m: DailyProfile(m, days=3), lambda m: DailyProfile(m, days=7), LagRegression)
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
        """Each member's own update (ETS keeps its parameters; a profile is refitted, it is cheap)."""
        for m in self.members:
            m.update(panel)

    def params(self) -> list[dict[str, float]]:
        """Per series: each tunable member's parameters, keyed `m<i>.<name>`."""
        out: list[dict[str, float]] | None = None
        for i, member in enumerate(self.members):
            if isinstance(member, Tunable):
                rows = member.params()
                out = out or [{} for _ in rows]
                for d, p in zip(out, rows, strict=True):
                    d.update({f"m{i}.{k}": v for k, v in p.items()})
        if out is None:
            raise RuntimeError(f"{self.name}: no member has parameters")
        return out

    def use_params(self, params: Sequence[Mapping[str, float]]) -> None:
        for i, member in enumerate(self.members):
            if isinstance(member, Tunable):
                head = f"m{i}."
                member.use_params([{k[len(head):]: v for k, v in p.items() if k.startswith(head)} for p in params])


class Blend(Combination):
    """A combination weighted per series by its members' recent backtest errors.

    Why: the members are good on different series (the 7-day profile on a zone whose climate
    computer repeats its day, ETS where the level drifts), and one fixed weighting cannot follow
    that. Each member forecasts the last `origins` seasons of the fit window one season ahead;
    a member's weight is proportional to 1 / MAE**power over those (power 4: the clearly better
    member takes most of the weight, measured on the accuracy bench; no member gets less than
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

    def update(self, panel: Panel) -> None:
        """Members' updates with the weights of the last fit: the weights' backtest is most of a
        fit's cost, and a day's new data changes them little. No weights yet: a fit."""
        if self._w is None or self._w.shape[1] != panel.n_series:
            self.fit(panel)
            return
        super().update(panel)

    def params(self) -> list[dict[str, float]]:
        """Members' parameters (see `Combination.params`) and the weights, keyed `w<i>`."""
        if self._w is None:
            raise RuntimeError("blend: fit() before params()")
        out = super().params()
        for d, w in zip(out, self._w.T.tolist(), strict=True):
            d.update({f"w{i}": v for i, v in enumerate(w)})
        return out

    def use_params(self, params: Sequence[Mapping[str, float]]) -> None:
        k = len(self.members)
        try:
            self._w = np.array([[float(p[f"w{i}"]) for p in params] for i in range(k)])
        except KeyError as exc:
            raise ValueError(f"blend parameters lack {exc.args[0]!r}") from None
        super().use_params(params)

    def _weights(self, panel: Panel) -> np.ndarray:
        return self._weights_at(panel, [panel.n_steps])[0]

    def _weights_at(self, panel: Panel, ends: Sequence[int]) -> list[np.ndarray]:
        """The weights `panel.head(e)` gives, for each e in `ends`, from one backtest of each
        member over the union of their origins: a member's forecast at an origin is the same
        whichever panel it is cut from (the `forecast_origins` contract), and the outer backtest's
        days overlap (three ends a day apart share six of their seven origins)."""
        m, k = self.season, len(self.members)
        inner = [[o for o in range(e - self.origins * m, e, m) if o >= 2 * m] for e in ends]
        union = sorted({o for os in inner for o in os})
        if not union:
            return [np.full((k, panel.n_series), 1.0 / k) for _ in ends]
        actual = np.stack([panel.values[:, o:o + m] for o in union])  # (U, n, m)
        err = np.stack([np.abs(forecast_at_origins(mem, panel, union, m) - actual) for mem in self.members])
        at = {o: i for i, o in enumerate(union)}
        out = []
        for os in inner:
            if not os:
                out.append(np.full((k, panel.n_series), 1.0 / k))
                continue
            e = err[:, [at[o] for o in os]].transpose(0, 2, 1, 3).reshape(k, panel.n_series, -1)  # (k, n, B * m)
            seen = np.isfinite(e)
            with np.errstate(all="ignore"):  # a series with no scored cell: NaN, equal weights below
                mae = np.where(seen, e, 0.0).sum(axis=2) / seen.sum(axis=2)
                inv = 1.0 / np.maximum(mae, 1e-9) ** self.power  # a perfect member takes the weight
            inv = np.where(np.isfinite(inv), inv, np.nan)
            with np.errstate(all="ignore"):
                w = inv / np.nansum(inv, axis=0, keepdims=True)
            w = np.where(np.isfinite(w), w, 1.0 / k)
            w = np.maximum(w, self.floor)
            out.append(w / w.sum(axis=0, keepdims=True))
        return out

    def predict(self, h: int) -> np.ndarray:
        if self._w is None:
            raise RuntimeError("blend: fit() before predict()")
        return np.einsum("kn,knh->nh", self._w, np.stack([mem.predict(h) for mem in self.members]))

    def forecast_origins(self, panel: Panel, origins: Sequence[int], h: int) -> np.ndarray:
        """Weights from each origin's own past (no peeking), members' fast paths for the rest."""
        # Weights first: their inner backtests run the members too, and the members must end
        # on the outer origins so that `params()` describes the last one.
        weights = self._weights_at(panel, list(origins))
        per = np.stack([forecast_at_origins(mem, panel, origins, h) for mem in self.members])  # (k, B, n, h)
        self._w = weights[int(np.argmax(origins))]
        return np.stack([np.einsum("kn,knh->nh", w, per[:, j]) for j, w in enumerate(weights)])
