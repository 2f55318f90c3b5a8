"""The forecaster contract and what one forecasting run hands back.

A forecaster works on a whole `Panel` at once (fit, then predict h steps for every series), so a
model can vectorise across thousands of series. Intervals are not the model's business in this
first engine: the runner derives them from the model's own backtest errors, which treats every
model alike (a point forecaster gets honest intervals for free).

A model may also offer `forecast_origins(panel, origins, h)`: forecasts from several cut-off
points of one panel in one call. It must equal fitting on `panel.head(o)` and predicting `h`
for each origin `o`; `forecast_at_origins` uses it when present (ETS does a backtest in one pass
over the data instead of one pass per origin) and the plain fit/predict loop otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from greennanny.forecast.panel import Panel


@runtime_checkable
class Forecaster(Protocol):
    """Fits on a panel, then forecasts every series of that panel.

    `predict(h)` returns (n_series, h) float64 and must be finite for every series that had at
    least one finite value; NaN is allowed only for series without data. `update` takes the same
    panel extended by newer steps; it may simply refit.
    """

    name: str

    def fit(self, panel: Panel) -> None: ...

    def predict(self, h: int) -> np.ndarray: ...

    def update(self, panel: Panel) -> None: ...


@runtime_checkable
class Tunable(Protocol):
    """A model whose fit chooses parameters per series, and can hand them out and take them back.

    Why: choosing parameters is the expensive part of a fit (ETS searches a grid, `blend` runs a
    backtest for its weights), and between full refits a forecast only needs the chosen model
    run on the newer data. `params()` gives one JSON-safe mapping of floats per row of the last
    fit (after `forecast_origins`, those chosen at the last origin); after `use_params(p)`,
    `update(panel)` runs with `p` instead of choosing again. These mappings are what a refresh
    keeps between runs and what a model registry can store: no object is ever pickled.
    """

    def params(self) -> list[dict[str, float]]: ...

    def use_params(self, params: Sequence[Mapping[str, float]]) -> None: ...


ForecasterFactory = Callable[[int], Forecaster]
"""Builds a fresh forecaster for a season length in steps (the registry's value type)."""


def forecast_at_origins(
    model: Forecaster, panel: Panel, origins: Sequence[int], h: int
) -> np.ndarray:
    """Forecasts (len(origins), n_series, h), each made from the columns before an origin.

    Origin `o` sees `panel.head(o)`; an origin equal to `panel.n_steps` is the live forecast.
    """
    fast = getattr(model, "forecast_origins", None)
    if callable(fast):
        return np.asarray(fast(panel, list(origins), h), dtype=np.float64)
    out = np.empty((len(origins), panel.n_series, h))
    for j, origin in enumerate(origins):
        model.fit(panel.head(origin))
        out[j] = model.predict(h)
    return out


@dataclass(slots=True)
class ForecastResult:
    """Forecasts for the series of one panel, with how each was chosen and how far to trust it.

    Row i belongs to `series_ids[i]`; every array is (n, h) or (n,). Step k (0-based) is the bin
    starting at `start_ns + k*step_ns`. `mean` is always finite. `model[i]` is the model used;
    `fallback_reason[i]` is None when the series got the normal choice by backtest and otherwise
    says why not (too short, constant, a model raised, no backtest possible).
    `backtest_mae`/`backtest_mase` describe the chosen model, `runner_up`/`runner_up_mase` the
    second best (None/NaN when there was none). Series without any finite value are not in the
    rows; `skipped` maps their id to the reason. `quality_notes[i]` is what data preparation did
    to the series (stuck spans masked, gaps, duplicates; `quality.QualityReport.note`), or None.
    `params[i]` is the chosen model's parameters when it is `Tunable` (None for the rest and for
    fallbacks): what a refresh reuses and what a registry records. `oracle_inputs` names the
    inputs that saw future observed values; a result with any is an evaluation, not a forecast.
    """

    series_ids: np.ndarray
    start_ns: int
    step_ns: int
    mean: np.ndarray
    lo80: np.ndarray
    hi80: np.ndarray
    lo95: np.ndarray
    hi95: np.ndarray
    model: list[str]
    backtest_mae: np.ndarray
    backtest_mase: np.ndarray
    runner_up: list[str | None]
    runner_up_mase: np.ndarray
    fallback_reason: list[str | None]
    made_at_ns: int
    skipped: dict[int, str] = field(default_factory=dict)
    quality_notes: list[str | None] = field(default_factory=list)
    params: list[dict[str, float] | None] = field(default_factory=list)
    oracle_inputs: list[str] = field(default_factory=list)

    @property
    def horizon(self) -> int:
        return int(self.mean.shape[1])

    def timestamps(self) -> np.ndarray:
        """Start of each forecast step as int64 UTC epoch nanoseconds."""
        return self.start_ns + self.step_ns * np.arange(self.horizon, dtype=np.int64)

    def row(self, series_id: int) -> int:
        """Row index of `series_id` (KeyError naming the skip reason if it was skipped)."""
        hits = np.flatnonzero(self.series_ids == series_id)
        if hits.size == 0:
            why = self.skipped.get(series_id, "not in the panel")
            raise KeyError(f"series {series_id} has no forecast: {why}")
        return int(hits[0])

    def to_frame(self) -> pd.DataFrame:
        """Long form, one row per series and step: what a store or an API writes out."""
        n, h = self.mean.shape
        return pd.DataFrame(
            {
                "series_id": np.repeat(self.series_ids, h),
                "ts_ns": np.tile(self.timestamps(), n),
                "step": np.tile(np.arange(1, h + 1), n),
                "mean": self.mean.ravel(),
                "lo80": self.lo80.ravel(),
                "hi80": self.hi80.ravel(),
                "lo95": self.lo95.ravel(),
                "hi95": self.hi95.ravel(),
                "model": np.repeat(np.asarray(self.model, dtype=object), h),
            }
        )
