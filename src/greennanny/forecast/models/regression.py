"""A linear model on lag, calendar and exogenous features, fitted per series by ridge regression.

Why this model: the profile and ETS models each fix how yesterday, the recent days and today's
departure combine; a regression lets each series learn that mix from its own window, and it is
the one place where other inputs (outside radiation, a lighting plan) can enter a forecast.
It is direct (one equation for all steps of a day ahead, with step-dependent fades), so a
forecast never feeds on its own errors within the first season.

Every feature of the value at step t, forecast from origin o (the first step not seen; k = t - o + 1
in 1..m, m the season), is known at o, and the target is the departure from the recent days'
profile `P[t] = mean(y[t - j*m], j = 1..days)`, so the ridge penalty shrinks towards the profile
forecast rather than towards zero:

- `y[t - m] - P[t]`: the same time yesterday, against the profile;
- `a * exp(-k / tau)` for each fade `tau` (in seasons), `a = y[o-1] - P[o-1]` the departure at
  the origin: how today's sunny or dull spell carries on and fades;
- sin and cos of one and two cycles of the local hour of t (calendar; local when the panel has a
  time zone, so the terms follow the clock across summer time);
- an intercept (a level shift between the recent days and today);
- per `lagged` input x: its departure at the origin with the same fades, and `x[t - m] - Px[t]`;
- per `known` or `oracle` input x: `x[t] - Px[t]`, its value at the forecast step (see `Exog`).

Beyond one season the forecast runs on day by day, taking its own forecast as "yesterday".
Missing features or targets drop the sample; a series with too few samples for its features
gets the profile forecast (all coefficients zero). Fitting costs one batched least-squares
solve per chunk of series (matmul of (rows, samples, features)), vectorised across series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from greennanny.forecast.panel import Panel
from greennanny.forecast.quality.local_time import local_calendar


class LagRegression:
    """Ridge on departures from the recent days' profile (see the module docstring)."""

    name = "lagreg"

    def __init__(self, season: int, *, days: int = 7, short_days: int | None = 3,
                 fades: tuple[float, ...] = (0.125, 0.5), ridge: float = 0.2, samples_per_day: int = 64,
                 chunk_rows: int = 256) -> None:
        if season < 2:
            raise ValueError(f"season must be at least 2 steps, got {season}")
        self.season, self.days, self.short_days, self.fades = season, days, short_days, fades
        self.ridge, self.samples_per_day, self.chunk_rows = ridge, samples_per_day, chunk_rows
        self._panel: Panel | None = None
        self._coef: np.ndarray | None = None
        self.inputs_: list[str] = []

    # -- contract ----------------------------------------------------------------------------
    def fit(self, panel: Panel) -> None:
        self._panel, self.inputs_ = panel, sorted(panel.exog or {})
        feats = _Features(panel, panel.values, self.season, self.days, self.short_days, self.fades)
        origins, ks = self._samples(panel.n_steps)
        coef = np.zeros((panel.n_series, feats.width))
        for lo in range(0, panel.n_series, self.chunk_rows):
            rows = slice(lo, min(panel.n_series, lo + self.chunk_rows))
            x, y = feats.design(rows, origins, ks)
            coef[rows] = _ridge(*_normal(x, y), ridge=self.ridge)
        self._coef = coef

    def forecast_origins(self, panel: Panel, origins: Sequence[int], h: int) -> np.ndarray:
        """(len(origins), n, h), equal to fitting on `panel.head(o)` for each origin, from one
        design: a sample is usable from origin o when its target is before o, so the normal
        equations of each origin are those of the one before plus the samples in between."""
        order = np.argsort(origins, kind="stable")
        cuts = np.asarray(origins, dtype=np.int64)[order]
        one_day = h <= self.season
        # Within a day ahead every feature of a step reads columns before its origin, so the
        # features of the whole panel (extended by h empty steps) serve every origin's forecast
        # too, with the same bits as `panel.head(o)` gives; beyond a day, predict() runs its
        # day-by-day recursion per origin.
        values = np.concatenate([panel.values, np.full((panel.n_series, h), np.nan)], 1) if one_day else panel.values
        feats = _Features(panel, values, self.season, self.days, self.short_days, self.fades)
        s_orig, s_k = self._samples(panel.n_steps)
        target = s_orig + s_k - 1
        by_t = np.argsort(target, kind="stable")
        s_orig, s_k, target = s_orig[by_t], s_k[by_t], target[by_t]
        bounds = np.searchsorted(target, cuts, side="left")  # samples [0, bound) have t < cut
        coefs = np.zeros((cuts.size, panel.n_series, feats.width))
        for lo in range(0, panel.n_series, self.chunk_rows):
            rows = slice(lo, min(panel.n_series, lo + self.chunk_rows))
            x, y = feats.design(rows, s_orig, s_k)
            xtx = np.zeros((x.shape[0], feats.width, feats.width))
            xty = np.zeros((x.shape[0], feats.width))
            count = np.zeros(x.shape[0], dtype=np.int64)
            start = 0
            for j, stop in enumerate(bounds.tolist()):
                a, b, c = _normal(x[:, start:stop], y[:, start:stop])
                xtx, xty, count, start = xtx + a, xty + b, count + c, stop
                coefs[j, rows] = _ridge(xtx, xty, count, ridge=self.ridge)
        out = np.empty((len(cuts), panel.n_series, h))
        ks = np.arange(1, h + 1)
        for j, o in enumerate(cuts.tolist()):
            if one_day:
                at = np.full(h, o)
                x, _ = feats.design(slice(None), at, ks, train=False)
                step = feats.profile_at(at + ks - 1) + np.einsum("nsp,np->ns", x, coefs[j])
                out[order[j]] = _fill(step, panel.values[:, :o])
            else:
                self._panel, self._coef = panel.head(o), coefs[j]
                out[order[j]] = self.predict(h)
        if cuts.size:  # predict() and params() go on from the last origin
            self._panel, self._coef = panel.head(int(cuts[-1])), coefs[-1]
        return out

    def predict(self, h: int) -> np.ndarray:
        if self._panel is None or self._coef is None:
            raise RuntimeError("lagreg: fit() before predict()")
        panel, m = self._panel, self.season
        t0 = panel.n_steps
        ext = np.concatenate([panel.values, np.full((panel.n_series, h), np.nan)], axis=1)
        out = np.empty((panel.n_series, h))
        for day in range(0, h, m):  # day by day: beyond a season, yesterday is the forecast
            feats = _Features(panel, ext, m, self.days, self.short_days, self.fades)
            ks = np.arange(day + 1, min(h, day + m) + 1)
            origins = np.full(ks.size, t0)
            x, _ = feats.design(slice(None), origins, ks, train=False)
            step = feats.profile_at(origins + ks - 1) + np.einsum("nsp,np->ns", x, self._coef)
            out[:, day:day + ks.size] = step
            ext[:, t0 + day:t0 + day + ks.size] = step
        return _fill(out, panel.values)

    def update(self, panel: Panel) -> None:
        """Forecast from `panel`'s end with the coefficients of the last fit (or `use_params`):
        the features are rebuilt from the new data, the design and the solve are skipped."""
        if self._coef is None:
            self.fit(panel)
            return
        width = _Features.width_for(panel, self.short_days, self.fades)
        if self._coef.shape != (panel.n_series, width):
            raise ValueError(f"lagreg: {self._coef.shape[1]} coefficients for {self._coef.shape[0]} series; the panel "
                             f"has {panel.n_series} series and {width} features (inputs {sorted(panel.exog or {})})")
        self._panel, self.inputs_ = panel, sorted(panel.exog or {})

    def params(self) -> list[dict[str, float]]:
        """Per series: the coefficients, `b0`.. in the feature order of the module docstring."""
        if self._coef is None:
            raise RuntimeError("lagreg: fit() before params()")
        return [{f"b{i}": v for i, v in enumerate(row)} for row in self._coef.tolist()]

    def use_params(self, params: Sequence[Mapping[str, float]]) -> None:
        width = len(params[0]) if params else 0
        try:
            self._coef = np.array([[float(p[f"b{i}"]) for i in range(width)] for p in params]).reshape(len(params), width)
        except KeyError as exc:
            raise ValueError(f"lagreg parameters lack {exc.args[0]!r}") from None

    # -- internals ---------------------------------------------------------------------------
    def _samples(self, t_total: int) -> tuple[np.ndarray, np.ndarray]:
        """Training (origin, k) pairs whose target is seen: every k of a season (every m/24-th
        at fine steps), origins from a season in on a stride that gives `samples_per_day`.
        The grid is anchored at column 0 and independent of the panel's length, so the samples
        of `panel.head(o)` are exactly those of the panel with a target before o (which makes
        `forecast_origins` equal to refitting at each origin)."""
        m = self.season
        ks = np.arange(1, m + 1, max(1, m // 24))
        stride = max(1, round(m * ks.size / self.samples_per_day))
        origins = np.arange(m + 1, t_total, stride)
        o, k = np.repeat(origins, ks.size), np.tile(ks, origins.size)
        seen = o + k - 1 <= t_total - 1
        return o[seen], k[seen]


class _Features:
    """Lag, profile, calendar and input arrays of one panel (values possibly extended)."""

    def __init__(self, panel: Panel, values: np.ndarray, m: int, days: int, short_days: int | None,
                 fades: tuple[float, ...]) -> None:
        self.m, self.fades = m, fades
        self.y = values
        self.prof = _profile(values, m, days)
        self.short = None if short_days is None else _profile(values, m, short_days) - self.prof
        span = values.shape[1]
        if panel.tz:
            slot = local_calendar(panel.start_ns, panel.step_ns, span, panel.tz).slot
            frac = slot.astype(np.float64) * panel.step_ns / (86400 * 1e9)  # local time of day, 0..1
        else:
            frac = ((panel.start_ns + panel.step_ns * np.arange(span)) % (86400 * 10**9)) / (86400 * 1e9)
        ang = 2 * np.pi * frac
        self.cal = np.stack([np.sin(ang), np.cos(ang), np.sin(2 * ang), np.cos(2 * ang)])  # (4, span)
        self.inputs: list[tuple[str, np.ndarray, np.ndarray]] = []
        for name, ex in sorted((panel.exog or {}).items()):
            x = np.broadcast_to(ex.values, (values.shape[0], ex.length)) if ex.values.ndim == 1 else ex.values
            if ex.role == "lagged":  # never a column at or after the origin
                x = np.concatenate([x[:, :panel.n_steps], np.full((x.shape[0], span - panel.n_steps), np.nan)], 1)
            elif x.shape[1] < span:
                x = np.concatenate([x, np.full((x.shape[0], span - x.shape[1]), np.nan)], axis=1)
            x = x[:, :span]
            absent = ~np.isfinite(x).any(axis=1)
            if absent.any():  # a series without this input: a zero feature, not a lost sample
                x = x.copy()
                x[absent] = 0.0
            self.inputs.append((ex.role, x, _profile(x, m, days)))
        self.width = self.width_for(panel, short_days, fades)

    @staticmethod
    def width_for(panel: Panel, short_days: int | None, fades: tuple[float, ...]) -> int:
        """Features per sample: own lags and fades, calendar, intercept, then per input."""
        per_input = [len(fades) + 1 if ex.role == "lagged" else 1 for ex in (panel.exog or {}).values()]
        return 1 + (short_days is not None) + len(fades) + 4 + 1 + sum(per_input)

    def profile_at(self, cols: np.ndarray) -> np.ndarray:
        return self.prof[:, cols]

    def design(self, rows: slice, origins: np.ndarray, ks: np.ndarray, *, train: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, S, width) features and (rows, S) departures to fit. Training drops a sample
        with any missing part (x zeroed, target NaN); a forecast takes a missing feature as no
        departure (0), so one silent input does not throw away the rest."""
        t = origins + ks - 1
        last = origins - 1
        y, prof = self.y[rows], self.prof[rows]
        fade = np.stack([np.exp(-ks / (f * self.m)) for f in self.fades])  # (F, S)
        anom = y[:, last] - prof[:, last]
        cols = [y[:, t - self.m] - prof[:, t], *(anom * fade[j] for j in range(len(self.fades)))]
        if self.short is not None:
            cols.append(self.short[rows][:, t])
        cols += [np.broadcast_to(c[t], anom.shape) for c in self.cal]
        cols.append(np.ones_like(anom))
        for role, x, px in self.inputs:
            x, px = x[rows], px[rows]
            if role == "lagged":
                xa = x[:, last] - px[:, last]
                cols += [xa * fade[j] for j in range(len(self.fades))]
                cols.append(x[:, t - self.m] - px[:, t])
            else:
                cols.append(x[:, t] - px[:, t])
        x_all = np.stack(cols, axis=-1)
        target = y[:, t] - prof[:, t]
        if not train:
            return np.where(np.isfinite(x_all), x_all, 0.0), target
        ok = np.isfinite(x_all).all(axis=-1) & np.isfinite(target)
        x_all = np.where(ok[..., None], x_all, 0.0)
        return x_all, np.where(ok, target, np.nan)


def _profile(values: np.ndarray, m: int, days: int) -> np.ndarray:
    """P[t] = mean of the finite values[t - j*m], j = 1..days (NaN where none).

    From running sums over each time of day (the values reshaped to (n, days, m) and summed
    down the days), so a profile costs two passes whatever `days` is, not one per day; the sums
    run in the same order for a panel and its `head`, so both give the same bits."""
    n, span = values.shape
    rows = -(-span // m)
    seen = np.isfinite(values)
    v = np.zeros((n, rows * m))
    v[:, :span] = np.where(seen, values, 0.0)
    c = np.zeros((n, rows * m))
    c[:, :span] = seen
    total, count = np.zeros((n, rows, m)), np.zeros((n, rows, m))
    np.cumsum(v.reshape(n, rows, m)[:, :-1], axis=1, out=total[:, 1:])  # total[:, i] = sum of days < i
    np.cumsum(c.reshape(n, rows, m)[:, :-1], axis=1, out=count[:, 1:])
    if rows > days:  # only the last `days` days count
        total[:, days:] -= total[:, :-days].copy()
        count[:, days:] -= count[:, :-days].copy()
    total, count = total.reshape(n, rows * m)[:, :span], count.reshape(n, rows * m)[:, :span]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _normal(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: X'X (rows, p, p), X'y (rows, p) and the samples counted (rows,); a sample with a
    NaN target counts nothing (its x row is already zero, see `_Features.design`)."""
    seen = np.isfinite(y)
    y0 = np.where(seen, y, 0.0)
    return np.matmul(x.transpose(0, 2, 1), x), np.einsum("nsp,ns->np", x, y0), seen.sum(axis=1)


def _ridge(xtx: np.ndarray, xty: np.ndarray, count: np.ndarray, ridge: float) -> np.ndarray:
    """Per row: argmin |x b - y|^2 + ridge * sum_f XtX[f, f] b_f^2 (scale-free, like ridge on
    standardised features). Zeros, the profile forecast, for a row with fewer than three
    samples per feature."""
    p = xtx.shape[-1]
    lam = ridge * np.maximum(np.einsum("npp->np", xtx), 1e-12)
    coef = np.zeros(xty.shape)
    enough = count >= 3 * p
    if enough.any():
        reg = xtx[enough] + lam[enough][:, :, None] * np.eye(p)[None]
        coef[enough] = np.linalg.solve(reg, xty[enough][..., None])[..., 0]
    return np.where(np.isfinite(coef), coef, 0.0)


def _fill(out: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where a step has no profile (too little history), the last finite value of the series."""
    from greennanny.forecast.panel import last_finite

    bad = ~np.isfinite(out)
    if bad.any():
        last = np.broadcast_to(last_finite(values)[:, None], out.shape)
        out = np.where(bad, last, out)
    return out


__all__: Sequence[str] = ["LagRegression"]
