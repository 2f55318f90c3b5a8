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

ROLES = ("lagged", "known", "oracle")
"""How an exogenous input may be used (see `Exog`)."""


@dataclass(frozen=True, slots=True)
class Exog:
    """An exogenous input on the panel's grid, and what a forecast from an origin may see of it.

    Why roles: an input is honest only as it was known when the forecast was made. `lagged`:
    observed values (outside temperature, radiation, vent position), seen only before the origin;
    `known`: values fixed in advance for the forecast's own steps (a lighting or screen plan, a
    weather forecast laid onto the grid), which the caller vouches were known at every origin it
    is used from; `oracle`: future observed values standing in for a perfect forecast, for
    evaluation only: `forecast_panel` refuses them unless asked, and labels what they produced.

    `values` is (n_series, L) or (L,) (shared by every series, such as a site's weather),
    column j being panel step j; `known` and `oracle` inputs may run past the panel's end
    (L > T) to cover the horizon, `lagged` ones are cut at each origin.
    """

    values: np.ndarray
    role: str = "lagged"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"exog role {self.role!r} is not one of {', '.join(ROLES)}")
        arr = np.asarray(self.values, dtype=np.float64)
        if arr.ndim not in (1, 2):
            raise ValueError(f"exog values must be 1-D or 2-D, got shape {arr.shape}")
        object.__setattr__(self, "values", arr)

    @property
    def length(self) -> int:
        return int(self.values.shape[-1])


@dataclass(slots=True)
class Panel:
    """Series `series_ids[i]` has the values `values[i]` on the grid starting at `start_ns`.

    `exog` holds optional exogenous inputs by name (`Exog`: values and role); a plain array is
    taken as a `lagged` input. `tz` is the site's IANA time zone for calendar features (local
    hour across clock changes); None means UTC.
    """

    series_ids: np.ndarray
    start_ns: int
    step_ns: int
    values: np.ndarray
    exog: dict[str, Exog] | None = None
    tz: str | None = None

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
        if self.exog:
            self.exog = {k: v if isinstance(v, Exog) else Exog(np.asarray(v)) for k, v in self.exog.items()}
        for name, ex in (self.exog or {}).items():
            if ex.length < self.n_steps or (ex.role == "lagged" and ex.length != self.n_steps):
                raise ValueError(
                    f"exog {name!r} ({ex.role}) has {ex.length} steps, panel has {self.n_steps}"
                    + ("" if ex.role == "lagged" else " (a known or oracle input needs at least as many)")
                )
            if ex.values.ndim == 2 and ex.values.shape[0] != self.n_series:
                raise ValueError(f"exog {name!r} has {ex.values.shape[0]} rows, panel has {self.n_series} series")

    @property
    def oracle_inputs(self) -> list[str]:
        """Names of the inputs that carry future observed values (see `Exog`)."""
        return sorted(k for k, v in (self.exog or {}).items() if v.role == "oracle")

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
        """The first `n_steps` columns (a view): what a backtest origin may see. Lagged inputs are
        cut there too; known and oracle inputs keep their later columns (that is their role)."""
        exog = (
            {k: v if v.role != "lagged" else Exog(v.values[..., :n_steps], v.role) for k, v in self.exog.items()}
            if self.exog else None
        )
        return Panel(self.series_ids, self.start_ns, self.step_ns, self.values[:, :n_steps], exog, self.tz)

    def take(self, rows: np.ndarray | Sequence[int]) -> Panel:
        """The series at positions `rows` (a copy), with their exogenous rows."""
        idx = np.asarray(rows, dtype=np.intp)
        exog = (
            {k: Exog(v.values[idx], v.role) if v.values.ndim == 2 else v for k, v in self.exog.items()}
            if self.exog else None
        )
        return Panel(self.series_ids[idx], self.start_ns, self.step_ns, self.values[idx], exog, self.tz)


def last_finite(values: np.ndarray) -> np.ndarray:
    """The last finite value of each row (NaN for a row with none): every fallback's anchor."""
    finite = np.isfinite(values)
    t = values.shape[1]
    if t == 0:
        return np.full(values.shape[0], np.nan)
    pos = t - 1 - np.argmax(finite[:, ::-1], axis=1)
    out = values[np.arange(values.shape[0]), pos]
    return np.where(finite.any(axis=1), out, np.nan)
