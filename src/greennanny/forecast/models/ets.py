"""Additive Holt-Winters (ETS(A,Ad,A)) with a daily season, vectorised across series and grid.

Why this shape: an edge node has to fit thousands of series in seconds, so instead of a numeric
optimiser per series, every series runs every point of a small parameter grid in one recursion
(arrays of shape (rows, grid)); each series then keeps the grid point with the lowest in-sample
squared error. One time step costs a few dozen numpy operations for all of them.

Which error: by default the in-sample errors `leads` = (season/2, season) steps ahead, summed,
not the classic one-step error. The node forecasts a day ahead, and the one-step criterion picks
a nervous level (alpha 0.7) that follows the last hour and is then wrong all day. On hourly air
temperature, humidity and CO2 of five public greenhouse data sets (AGC 2018 and 2022, OSU 2024,
Cornell 2020, UAZ 2013; 28 days of history, 24 h ahead, 10 held-out days each) one-step ETS had
a mean MASE 10-85% worse than seasonal naive, the day-ahead criterion 4-19% better.
`leads=(1,)` restores the one-step criterion.
(The same idea as `opt.crit = "amse"` in R's forecast::ets: fit to the errors of the
horizon that will be used.)

Recursion (error-correction form; e = y - (l + phi*b + s)):
    l <- l + phi*b + alpha*e,   b <- phi*b + beta*e,   s[t mod m] <- s[t mod m] + gamma*e
A missing observation sets e = 0, which carries the one-step forecast through the gap: the level
follows its damped trend and the seasonal profile is untouched until data returns.

Start state, per series, from the first two seasons after its first finite value: level = their
mean, season = mean deviation per phase (re-centred), trend = 0. Backtests read the state at
each origin from the same single pass (`forecast_origins`); an origin that falls inside a
series' start window has no forecast (NaN) there, because its start state would have seen data
after the origin.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from greennanny.forecast.panel import Panel


@dataclass(frozen=True, slots=True)
class EtsGrid:
    """The candidate smoothing parameters; (beta, phi) = (0, 1) is the model without trend.

    No trend by default: on the public greenhouse data sets named above a damped trend,
    `trend=((0.0, 1.0), (0.05, 0.9))`, was never chosen under the day-ahead criterion and
    doubled the cost. Pass it for series that drift (a substrate drying out between irrigations).
    """

    alpha: tuple[float, ...] = (0.02, 0.05, 0.15, 0.35, 0.7)
    gamma: tuple[float, ...] = (0.02, 0.1, 0.3, 0.5)
    trend: tuple[tuple[float, float], ...] = ((0.0, 1.0),)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """alpha, beta, gamma, phi per grid point; gamma <= 1 - alpha keeps the season stable."""
        rows = [
            (a, b, g, p)
            for a, g, (b, p) in itertools.product(self.alpha, self.gamma, self.trend)
            if g <= 1.0 - a
        ]
        alpha, beta, gamma, phi = (np.array(col, dtype=np.float64) for col in zip(*rows))
        return alpha, beta, gamma, phi


@dataclass(slots=True)
class _State:
    """The chosen grid point's state just before an origin, one entry per series."""

    origin: int
    level: np.ndarray  # (n,)
    trend: np.ndarray  # (n,)
    phi: np.ndarray  # (n,)
    alpha: np.ndarray  # (n,) the chosen smoothing parameters, kept so `update` can reuse them
    beta: np.ndarray  # (n,)
    gamma: np.ndarray  # (n,)
    season: np.ndarray  # (n, m), indexed by absolute phase t % m
    choice: np.ndarray  # (n,) grid index
    usable: np.ndarray  # (n,) bool

    def forecast(self, h: int) -> np.ndarray:
        steps = np.arange(1, h + 1)
        damp = np.cumsum(self.phi[:, None] ** steps[None, :], axis=1)
        phase = (self.origin + steps - 1) % self.season.shape[1]
        out = self.level[:, None] + damp * self.trend[:, None] + self.season[:, phase]
        out[~self.usable] = np.nan
        return out


class ETS:
    """Holt-Winters with daily season; parameters per series from `EtsGrid` by one-step SSE."""

    name = "ets"

    def __init__(
        self,
        season: int,
        *,
        grid: EtsGrid | None = None,
        leads: tuple[int, ...] | None = None,
        chunk_rows: int = 512,
    ) -> None:
        if season < 1:
            raise ValueError(f"season must be at least 1 step, got {season}")
        leads = leads or (max(1, season // 2), season)
        if min(leads) < 1 or max(leads) > season:
            raise ValueError(f"criterion leads must lie in 1..season ({season}), got {leads}")
        self.leads = tuple(sorted(set(leads)))
        self.season = season
        self.grid = grid or EtsGrid()
        self.chunk_rows = chunk_rows
        self._state: _State | None = None
        self._fixed: dict[str, np.ndarray] | None = None
        self.params_: dict[str, np.ndarray] = {}

    def fit(self, panel: Panel) -> None:
        """Choose each series' grid point on `panel` and forecast from its end."""
        self._fixed = None
        self._set_state(self._run(panel.values, [panel.n_steps])[0])

    def predict(self, h: int) -> np.ndarray:
        if self._state is None:
            raise RuntimeError("ets: fit() before predict()")
        return self._state.forecast(h)

    def update(self, panel: Panel) -> None:
        """Re-run the recursion on `panel` with the parameters of the last fit (or `use_params`).

        No grid search: one parameter set per series instead of the grid's 19, so a refresh
        costs about a twentieth of a fit. The state (level, season) is a function of the data
        and the parameters, so the parameters are all that must be kept between runs. Without
        parameters to reuse this is `fit`.
        """
        if self._fixed is None and self._state is not None:
            self.use_params(self.params())
        if self._fixed is None:
            self.fit(panel)
            return
        if self._fixed["alpha"].shape[0] != panel.n_series:
            raise ValueError(f"ets: parameters for {self._fixed['alpha'].shape[0]} series, panel has {panel.n_series}")
        self._set_state(self._run(panel.values, [panel.n_steps])[0])

    def params(self) -> list[dict[str, float]]:
        """Per series of the last fit: alpha, beta, gamma, phi (at the last origin of a backtest)."""
        if not self.params_:
            raise RuntimeError("ets: fit() before params()")
        names = ("alpha", "beta", "gamma", "phi")
        cols = [self.params_[k].tolist() for k in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*cols, strict=True)]

    def use_params(self, params: Sequence[Mapping[str, float]]) -> None:
        """Make the next `update` run with these parameters, one mapping per series."""
        try:
            self._fixed = {k: np.array([float(p[k]) for p in params]) for k in ("alpha", "beta", "gamma", "phi")}
        except KeyError as exc:
            raise ValueError(f"ets parameters lack {exc.args[0]!r}") from None

    def forecast_origins(self, panel: Panel, origins: Sequence[int], h: int) -> np.ndarray:
        """(len(origins), n, h) from one pass; see the module docstring for the start window.

        `params()` afterwards gives the parameters chosen at the last origin (the live one when
        it is the panel's end).
        """
        self._fixed = None
        states = self._run(panel.values, list(origins))
        self._set_state(states[int(np.argmax(origins))])
        return np.stack([s.forecast(h) for s in states])

    def _set_state(self, state: _State) -> None:
        self._state = state
        self.params_ = {"alpha": state.alpha, "beta": state.beta, "gamma": state.gamma, "phi": state.phi}

    def _run(self, values: np.ndarray, origins: list[int]) -> list[_State]:
        n, t_total = values.shape
        m = self.season
        if any(o < 0 or o > t_total for o in origins):
            raise ValueError(f"origins {origins} outside 0..{t_total}")
        states = [
            _State(o, level=np.empty(n), trend=np.empty(n), phi=np.empty(n), alpha=np.empty(n),
                   beta=np.empty(n), gamma=np.empty(n), season=np.empty((n, m)),
                   choice=np.empty(n, np.intp), usable=np.empty(n, bool))
            for o in origins
        ]
        grid = self.grid.arrays()
        for lo in range(0, n, self.chunk_rows):
            hi = min(n, lo + self.chunk_rows)
            if self._fixed is None:
                params = tuple(np.broadcast_to(a[None, :], (hi - lo, a.size)) for a in grid)
            else:
                params = tuple(self._fixed[k][lo:hi, None] for k in ("alpha", "beta", "gamma", "phi"))
            self._run_rows(values[lo:hi], origins, states, slice(lo, hi), t_total, params)
        return states

    def _run_rows(
        self, values: np.ndarray, origins: list[int], states: list[_State], out: slice, t_total: int,
        params: tuple[np.ndarray, ...],
    ) -> None:
        """The recursion for one chunk of rows; `params` are (rows, g) arrays, g = 1 when fixed."""
        m = self.season
        alpha, beta, gamma, phi = params
        has_trend = bool(np.any(beta != 0.0) or np.any(phi != 1.0))
        n, g = alpha.shape
        searching = g > 1
        level0, season0, first = _start_state(values, m)
        level = np.repeat(level0[:, None], g, axis=1)
        trend = np.zeros((n, g))
        season = np.repeat(season0.T[:, :, None], g, axis=2)  # (m, n, g): s[p] is contiguous
        sse = np.zeros((n, g))
        obs = values.T.copy(order="C")  # never a view: the caller's NaNs must stay NaN
        seen = np.isfinite(obs)
        obs[~seen] = 0.0
        weight = seen.astype(np.float64)[:, :, None]
        gappy = ~seen.all(axis=1)  # columns where some row is missing: only those need masking
        err, tmp, ys, phib = (np.zeros((n, g)) for _ in range(4))
        # Per criterion lead k > 1: the last k values of level + (phi + ... + phi^k) * trend,
        # i.e. the k-step forecast without its season, which is still current k steps later.
        # Only a search needs the criterion; with fixed parameters the recursion alone runs.
        rings = [
            (
                k,
                np.repeat(level[None], k, axis=0),
                (phi[None] ** np.arange(1, k + 1)[:, None, None]).sum(0),
            )
            for k in self.leads
            if k > 1 and searching
        ]
        one_step = 1 in self.leads and searching
        snaps: dict[int, list[int]] = {}
        for j, o in enumerate(origins):
            snaps.setdefault(o, []).append(j)

        def snapshot(o: int) -> None:
            rows = np.arange(n)
            k = np.argmin(sse, axis=1)
            # A backtest origin inside the start window would leak later data into the state.
            usable = first < o if o == t_total else first + 2 * m <= o
            for j in snaps[o]:
                st = states[j]
                st.level[out], st.trend[out] = level[rows, k], trend[rows, k]
                st.alpha[out], st.beta[out] = alpha[rows, k], beta[rows, k]
                st.gamma[out], st.phi[out] = gamma[rows, k], phi[rows, k]
                st.season[out] = season[:, rows, k].T
                st.choice[out], st.usable[out] = k, usable

        for t in range(max(origins)):
            if t in snaps:
                snapshot(t)
            s_t = season[t % m]
            np.subtract(obs[t][:, None], s_t, out=ys)  # y - s: what level (+trend) should be
            for k, ring, _ in rings:
                np.subtract(ys, ring[t % k], out=tmp)
                if gappy[t]:
                    tmp *= weight[t]
                tmp *= tmp
                sse += tmp
            if has_trend:
                np.multiply(trend, phi, out=phib)
                level += phib
            np.subtract(ys, level, out=err)
            if gappy[t]:
                err *= weight[t]  # e = 0 carries the one-step forecast through a missing value
            if one_step:
                np.multiply(err, err, out=tmp)
                sse += tmp
            np.multiply(err, alpha, out=tmp)
            level += tmp
            if has_trend:
                np.multiply(err, beta, out=tmp)
                np.add(phib, tmp, out=trend)
            np.multiply(err, gamma, out=tmp)
            s_t += tmp
            for k, ring, damp in rings:
                slot = ring[t % k]
                if has_trend:
                    np.multiply(trend, damp, out=slot)
                    slot += level
                else:
                    slot[...] = level
        if max(origins) in snaps:
            snapshot(max(origins))


def _start_state(values: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level (n,), seasonal profile by absolute phase (n, m) and first finite column (n,)."""
    n, t = values.shape
    finite = np.isfinite(values)
    first = np.where(finite.any(axis=1), np.argmax(finite, axis=1), t)
    cols = first[:, None] + np.arange(2 * m)[None, :]
    window = np.take_along_axis(values, np.minimum(cols, max(t - 1, 0)), axis=1)
    window[cols >= t] = np.nan
    seen = np.isfinite(window)
    count = seen.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        level = np.where(seen, window, 0.0).sum(axis=1) / count
        dev = np.where(seen, window - level[:, None], 0.0).reshape(n, 2, m).sum(axis=1)
        per_phase = seen.reshape(n, 2, m).sum(axis=1)
        relative = np.where(per_phase > 0, dev / np.maximum(per_phase, 1), 0.0)
    # relative[:, j] is phase (first + j) % m; re-index to absolute phase p.
    idx = (np.arange(m)[None, :] - first[:, None]) % m
    season = np.take_along_axis(relative, idx, axis=1)
    centre = season.mean(axis=1)
    return level + centre, season - centre[:, None], first
