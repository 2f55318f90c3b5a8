"""The panel: many series on one regular time grid, the unit every forecaster works on.

Why a dense (n_series, T) matrix rather than long-form rows: the models run one recursion step
for all series at once, so the cost of a step is a few numpy operations whatever the number of
series. Missing is NaN in `values` (the missing mask is `~np.isfinite(values)`); a forecaster
never sees a Python object per reading.

Grid convention: column j covers the half-open bin [start_ns + j*step_ns, start_ns + (j+1)*step_ns)
in UTC epoch nanoseconds, and `end_ns` (exclusive) is the end of the last bin.

A panel is built from raw points by `forecast.quality.prepare_panel` (resampling, duplicates,
gaps, stuck sensors), the one place that decides what a model may train on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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


def last_finite(values: np.ndarray) -> np.ndarray:
    """The last finite value of each row (NaN for a row with none): every fallback's anchor."""
    finite = np.isfinite(values)
    t = values.shape[1]
    if t == 0:
        return np.full(values.shape[0], np.nan)
    pos = t - 1 - np.argmax(finite[:, ::-1], axis=1)
    out = values[np.arange(values.shape[0]), pos]
    return np.where(finite.any(axis=1), out, np.nan)
