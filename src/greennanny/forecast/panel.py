"""The panel: many series on one regular time grid, the unit every forecaster works on.

Why a dense (n_series, T) matrix rather than long-form rows: the models run one recursion step
for all series at once, so the cost of a step is a few numpy operations whatever the number of
series. Missing is NaN in `values` (the missing mask is `~np.isfinite(values)`); a forecaster
never sees a Python object per reading.

Grid convention: column j covers the half-open bin [start_ns + j*step_ns, start_ns + (j+1)*step_ns)
in UTC epoch nanoseconds, and `end_ns` (exclusive) is the end of the last bin.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Rows handled at once by the gap filler: bounds the int32 index scratch to a few tens of MB.
_GAP_CHUNK_ROWS = 2048


@dataclass(slots=True)
class Panel:
    """Series `series_ids[i]` has the values `values[i]` on the grid starting at `start_ns`.

    `exog` holds optional exogenous inputs by name, each shaped (n_series, T) or (T,) (shared by
    every series, such as outside radiation); the first engine carries them but no model uses them.
    """

    series_ids: np.ndarray
    start_ns: int
    step_ns: int
    values: np.ndarray
    exog: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.series_ids = np.asarray(self.series_ids, dtype=np.int64)
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim != 2:
            raise ValueError(f"panel values must be 2-D (n_series, T), got {self.values.shape}")
        if self.series_ids.shape != (self.values.shape[0],):
            raise ValueError(
                f"{self.series_ids.shape[0]} series ids for {self.values.shape[0]} value rows"
            )
        if self.step_ns <= 0:
            raise ValueError(f"step_ns must be positive, got {self.step_ns}")
        for name, arr in (self.exog or {}).items():
            if arr.shape[-1] != self.values.shape[1]:
                raise ValueError(
                    f"exog {name!r} has {arr.shape[-1]} steps, panel has {self.n_steps}"
                )

    @property
    def n_series(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.values.shape[1])

    @property
    def end_ns(self) -> int:
        """Exclusive end of the last bin: where a forecast's first step starts."""
        return self.start_ns + self.n_steps * self.step_ns

    def timestamps(self) -> np.ndarray:
        """Bin starts as int64 UTC epoch nanoseconds."""
        return self.start_ns + self.step_ns * np.arange(self.n_steps, dtype=np.int64)

    def head(self, n_steps: int) -> Panel:
        """The first `n_steps` columns (a view): the history a backtest origin may see."""
        exog = {k: v[..., :n_steps] for k, v in self.exog.items()} if self.exog else None
        return Panel(self.series_ids, self.start_ns, self.step_ns, self.values[:, :n_steps], exog)

    def take(self, rows: np.ndarray | Sequence[int]) -> Panel:
        """The series at positions `rows` (a copy), with their exogenous rows."""
        idx = np.asarray(rows, dtype=np.intp)
        exog = (
            {k: (v[idx] if v.ndim == 2 else v) for k, v in self.exog.items()} if self.exog else None
        )
        return Panel(self.series_ids[idx], self.start_ns, self.step_ns, self.values[idx], exog)


def panel_from_long(
    series_id: np.ndarray,
    ts_ns: np.ndarray,
    value: np.ndarray,
    *,
    step_ns: int,
    end_ns: int,
    length: int,
    max_gap_steps: int = 4,
    series_ids: np.ndarray | None = None,
) -> Panel:
    """Resample long-form points onto the `length` bins ending at `end_ns` (exclusive).

    Each bin gets the mean of the finite points in it (one `np.bincount` over all points, no loop
    per point). Gaps of up to `max_gap_steps` empty bins between two filled bins are linearly
    interpolated, because a sensor that skips a couple of uplinks has not changed what it measures;
    longer gaps and the ends (no extrapolation) stay NaN so that nothing invents an outage away.

    `series_ids` fixes the rows and their order (a listed series without points becomes an
    all-NaN row; points of unlisted series are dropped); by default the rows are the sorted
    distinct ids in `series_id`, including series whose points all fall outside the window.
    """
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    if step_ns <= 0:
        raise ValueError(f"step_ns must be positive, got {step_ns}")
    sid = np.asarray(series_id, dtype=np.int64)
    ts = np.asarray(ts_ns, dtype=np.int64)
    val = np.asarray(value, dtype=np.float64)
    if not sid.shape == ts.shape == val.shape or sid.ndim != 1:
        raise ValueError(
            f"series_id, ts_ns, value must be 1-D of one length: {sid.shape}, "
            f"{ts.shape}, {val.shape}"
        )
    start_ns = end_ns - length * step_ns
    ids = np.unique(sid) if series_ids is None else np.asarray(series_ids, dtype=np.int64)
    if np.unique(ids).size != ids.size:
        raise ValueError("series_ids must be distinct")

    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, sid), max(ids.size - 1, 0))
    keep = np.isfinite(val)
    keep &= ts >= start_ns
    keep &= ts < end_ns
    if ids.size:
        keep &= sorted_ids[pos] == sid
    else:
        keep[:] = False
    row = order[pos[keep]]
    col = (ts[keep] - start_ns) // step_ns
    flat = row * length + col
    size = ids.size * length
    sums = np.bincount(flat, weights=val[keep], minlength=size)
    counts = np.bincount(flat, minlength=size)
    flat_values = np.full(size, np.nan)
    filled = counts > 0
    flat_values[filled] = sums[filled] / counts[filled]
    grid = flat_values.reshape(ids.size, length)
    interpolate_gaps(grid, max_gap_steps)
    return Panel(ids, start_ns, step_ns, grid)


def interpolate_gaps(values: np.ndarray, max_gap_steps: int) -> np.ndarray:
    """Linearly fill, in place, NaN runs of at most `max_gap_steps` bounded on both sides.

    Vectorised per block of rows: the previous and next finite column of every cell come from a
    running max/min of column indices, so a gap's length is `next - prev - 1` without a loop.
    """
    n, t = values.shape
    if max_gap_steps <= 0 or t < 3:
        return values
    idx = np.arange(t, dtype=np.int32)
    for lo in range(0, n, _GAP_CHUNK_ROWS):
        block = values[lo : lo + _GAP_CHUNK_ROWS]
        finite = np.isfinite(block)
        if finite.all():
            continue
        prev = np.where(finite, idx, -1)
        np.maximum.accumulate(prev, axis=1, out=prev)
        nxt = np.where(finite, idx, t)[:, ::-1]
        nxt = np.minimum.accumulate(nxt, axis=1)[:, ::-1]
        fill = ~finite & (prev >= 0) & (nxt < t) & (nxt - prev - 1 <= max_gap_steps)
        r, c = np.nonzero(fill)
        p, q = prev[r, c], nxt[r, c]
        vp, vq = block[r, p], block[r, q]
        block[r, c] = vp + (vq - vp) * (c - p) / (q - p)
    return values


def last_finite(values: np.ndarray) -> np.ndarray:
    """The last finite value of each row (NaN for a row with none): every fallback's anchor."""
    finite = np.isfinite(values)
    t = values.shape[1]
    if t == 0:
        return np.full(values.shape[0], np.nan)
    pos = t - 1 - np.argmax(finite[:, ::-1], axis=1)
    out = values[np.arange(values.shape[0]), pos]
    return np.where(finite.any(axis=1), out, np.nan)
