"""Prediction-interval half-widths, from backtest errors or, without a backtest, from history.

Why empirical rather than Gaussian: greenhouse errors are skewed and heavy-tailed (a screen opens,
the heating kicks in), and a model-free recipe treats every forecaster alike. The recipe is split
conformal: the half-width at level p is the ceil((c+1)p)-th smallest of c absolute errors the
model made out of sample, which covers a new error with probability >= p if errors are
exchangeable.

With a handful of backtest origins there are only a few errors per horizon step, too few for a
95% quantile, so step k pools the errors of a window of `w` neighbouring steps (the w steps ending
at k, or the first w steps while k < w), with w chosen so the pool holds at least `min_pool`
errors. Finally the half-widths are made non-decreasing in k (a running maximum): uncertainty
never shrinks further ahead, even when a small sample says otherwise.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

LEVELS = (0.8, 0.95)
MIN_POOL = 30
_CHUNK_ROWS = 1024


def conformal_quantile(abs_err: np.ndarray, level: float) -> np.ndarray:
    """The ceil((c+1)*level)-th smallest finite value along the last axis (c = finite count).

    Capped at the largest value when c is small; NaN where there is no finite value.
    """
    ordered = np.sort(abs_err, axis=-1)  # NaN sorts last
    count = np.isfinite(ordered).sum(axis=-1)
    rank = np.clip(np.ceil((count + 1) * level).astype(np.intp), 1, np.maximum(count, 1))
    out = np.take_along_axis(ordered, (rank - 1)[..., None], axis=-1)[..., 0]
    return np.where(count > 0, out, np.nan)


def backtest_widths(abs_err: np.ndarray, level: float, min_pool: int = MIN_POOL) -> np.ndarray:
    """Half-widths (n, h) from absolute backtest errors shaped (origins, n, h)."""
    n_orig, n, h = abs_err.shape
    w = min(h, max(1, math.ceil(min_pool / max(n_orig, 1))))
    start = np.maximum(np.arange(h) - w + 1, 0)
    out = np.empty((n, h))
    for lo in range(0, n, _CHUNK_ROWS):
        block = np.moveaxis(abs_err[:, lo : lo + _CHUNK_ROWS], 0, -1)  # (rows, h, origins)
        windows = sliding_window_view(block, w, axis=1)  # (rows, h-w+1, origins, w)
        pooled = windows.reshape(*windows.shape[:2], n_orig * w)
        out[lo : lo + _CHUNK_ROWS] = conformal_quantile(pooled, level)[:, start]
    return _running_max(out)


def history_widths(values: np.ndarray, lag: int, h: int, level: float) -> np.ndarray:
    """Half-widths (n, h) for a naive forecast that has no backtest: from the series' own history.

    The error of a naive forecast k steps ahead is a difference over k steps; lacking a backtest
    we take the quantile of in-sample differences at `lag` (1 for last value, the season for
    seasonal naive) and grow it like a random walk over the number of lags spanned (sqrt(k)
    for last value, sqrt(ceil(k/season)) for seasonal naive), as in Hyndman & Athanasopoulos,
    FPP3 section 5.5. NaN for a series without a single pair of observations `lag` apart.
    """
    n, t = values.shape
    if t <= lag:
        q = np.full(n, np.nan)
    else:
        q = conformal_quantile(np.abs(values[:, lag:] - values[:, :-lag]), level)
    spans = np.ceil(np.arange(1, h + 1) / lag)
    return q[:, None] * np.sqrt(spans)[None, :]


def _running_max(widths: np.ndarray) -> np.ndarray:
    """Non-decreasing along the horizon.

    A step whose pool held no error (actuals missing there) takes the row's narrowest width first,
    so it neither poisons later steps nor stays NaN; a row with no width at all stays NaN.
    """
    with np.errstate(invalid="ignore"):
        narrowest = np.fmin.reduce(widths, axis=1, keepdims=True)
    filled = np.where(np.isnan(widths), narrowest, widths)
    return np.fmax.accumulate(filled, axis=1)
