"""Model choice per series by rolling-origin backtest.

Why per series: a heated compartment's air temperature and a substrate's slow moisture curve
favour different models, and the only judge that does not need a human is how each model would
have done on the series' own recent past. Each model forecasts from origins T-B*h, ..., T-h (and
from T, the live forecast) in one call; errors are measured on the cells every surviving model
forecast and where the actual value is known, so no model wins by skipping hard steps.

MASE at an origin is that origin's MAE divided by the in-sample MAE of the one-season naive
forecast on the data before the origin (Hyndman & Koehler 2006); the winner has the lowest mean
MASE over origins. Where MASE is undefined for a series (a perfectly repeating history has a
zero scale) the mean MAE decides instead.

A model that raises is isolated by bisection over the series (a handful of extra calls, not one
call per series), so one pathological series costs that model only that series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from greennanny.forecast.base import Tunable, forecast_at_origins
from greennanny.forecast.models import make_model
from greennanny.forecast.panel import Panel

_SCALE_CHUNK_ROWS = 1024


@dataclass(slots=True)
class Selection:
    """The per-series outcome of a backtest over `names` (rows follow the panel)."""

    names: tuple[str, ...]
    choice: np.ndarray  # (n,) index into names, -1 where no model could be scored
    runner_up: np.ndarray  # (n,) index into names, -1 where there is none
    mae: np.ndarray  # (n_models, n) mean over origins, NaN where not scored
    mase: np.ndarray  # (n_models, n)
    mean: np.ndarray  # (n, h) live forecast of the chosen model
    abs_err: np.ndarray  # (origins, n, h) chosen model's absolute backtest errors, NaN unused
    failed: np.ndarray  # (n_models, n) bool: the model raised or gave non-finite forecasts
    notes: list[list[str]]  # per series: what went wrong with which model
    params: list[dict[str, float] | None]  # per series: the chosen model's parameters, if tunable


def backtest_origins(n_steps: int, horizon: int, count: int) -> list[int]:
    """The last `count` horizons' start columns, oldest first; origins before column 1 dropped."""
    return [o for o in (n_steps - j * horizon for j in range(count, 0, -1)) if o >= 1]


def forecast_guarded(
    name: str, season: int, panel: Panel, origins: Sequence[int], h: int,
    params: list[dict[str, float] | None] | None = None,
) -> tuple[np.ndarray, dict[int, str]]:
    """Forecasts (len(origins), n, h) of model `name`, and {row: error} for rows it raised on.

    When `params` (one slot per row) is given and the model is `Tunable`, each row's slot gets
    the parameters the model chose at the last origin.
    """
    out = np.full((len(origins), panel.n_series, h), np.nan)
    failures: dict[int, str] = {}

    def attempt(rows: np.ndarray) -> None:
        part = panel if rows.size == panel.n_series else panel.take(rows)
        try:
            model = make_model(name, season)
            with np.errstate(all="ignore"):
                out[:, rows] = forecast_at_origins(model, part, origins, h)
            if params is not None and isinstance(model, Tunable):
                for r, p in zip(rows.tolist(), model.params(), strict=True):
                    params[r] = p
        except Exception as exc:  # noqa: BLE001 - a model's failure must stay that model's
            if rows.size == 1:
                failures[int(rows[0])] = f"{type(exc).__name__}: {exc}"
                return
            half = rows.size // 2
            attempt(rows[:half])
            attempt(rows[half:])

    if panel.n_series:
        attempt(np.arange(panel.n_series))
    return out, failures


def naive_scale(values: np.ndarray, season: int, origins: Sequence[int]) -> np.ndarray:
    """(origins, n): mean |y[t] - y[t-season]| over finite pairs with t before each origin."""
    n, t = values.shape
    out = np.full((len(origins), n), np.nan)
    for lo in range(0, n, _SCALE_CHUNK_ROWS):
        block = values[lo : lo + _SCALE_CHUNK_ROWS]
        diff = np.abs(block[:, season:] - block[:, :-season]) if t > season else block[:, :0]
        seen = np.isfinite(diff)
        total = np.concatenate([np.zeros((len(block), 1)), np.where(seen, diff, 0).cumsum(1)], 1)
        count = np.concatenate([np.zeros((len(block), 1)), seen.cumsum(1)], 1)
        for j, o in enumerate(origins):
            c = min(max(o - season, 0), diff.shape[1])  # pairs whose later point is before o
            with np.errstate(invalid="ignore", divide="ignore"):
                out[j, lo : lo + _SCALE_CHUNK_ROWS] = total[:, c] / count[:, c]
    return out


def select_by_backtest(
    panel: Panel, names: Sequence[str], *, horizon: int, season: int, n_origins: int,
    prefer_margin: float = 0.0,
) -> Selection:
    """Backtest every model in `names` on every series of `panel` and choose per series."""
    n, h, t = panel.n_series, horizon, panel.n_steps
    origins = backtest_origins(t, horizon, n_origins)
    b = len(origins)
    forecasts = np.full((len(names), b + 1, n, h), np.nan)
    failed = np.zeros((len(names), n), dtype=bool)
    notes: list[list[str]] = [[] for _ in range(n)]
    chosen_params: list[list[dict[str, float] | None]] = [[None] * n for _ in names]
    for i, name in enumerate(names):
        forecasts[i], raised = forecast_guarded(name, season, panel, [*origins, t], h, chosen_params[i])
        failed[i] = ~np.isfinite(forecasts[i, -1]).all(axis=1)
        for row in np.flatnonzero(failed[i]):
            why = raised.get(int(row), "non-finite forecast")
            notes[row].append(f"{name} failed ({why})")

    actual = np.stack([panel.values[:, o : o + h] for o in origins]) if b else np.empty((0, n, h))
    backtest = forecasts[:, :b]
    usable = ~failed[:, None, :, None]
    common = np.isfinite(actual) & np.all(np.isfinite(backtest) | ~usable, axis=0)
    err = np.where(common & usable, np.abs(backtest - actual), np.nan)  # (models, b, n, h)
    cells = common.sum(axis=-1)  # (b, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mae_o = np.where(cells > 0, np.nansum(err, axis=-1) / cells, np.nan)
        mae_o[np.broadcast_to(failed[:, None, :], mae_o.shape)] = np.nan
        scale = naive_scale(panel.values, season, origins)
        mase_o = np.where(scale > 0, mae_o / scale, np.nan)
    mae, mase = _mean_over_origins(mae_o), _mean_over_origins(mase_o)

    use_mase = np.all(np.isfinite(mase) | failed, axis=0)
    key = np.where(use_mase, mase, mae)
    key = np.where(np.isfinite(key) & ~failed, key, np.inf)
    if prefer_margin > 0 and len(names) > 1:  # the first model keeps its place unless beaten by the margin
        key = key.copy()
        key[0] = key[0] * (1.0 - prefer_margin)
    order = np.argsort(key, axis=0, kind="stable")
    best = order[0]
    rows = np.arange(n)
    choice = np.where(np.isfinite(key[best, rows]), best, -1)
    runner_up = np.full(n, -1)
    if len(names) > 1:
        second = order[1]
        runner_up = np.where((choice >= 0) & np.isfinite(key[second, rows]), second, -1)
    pick = np.maximum(choice, 0)
    mean = forecasts[pick, -1, rows]
    abs_err = np.moveaxis(err[pick, :, rows], 0, 1) if b else np.empty((0, n, h))
    mean[choice < 0] = np.nan
    params = [chosen_params[c][j] if c >= 0 else None for j, c in enumerate(choice.tolist())]
    return Selection(tuple(names), choice, runner_up, mae, mase, mean, abs_err, failed, notes, params)


def _mean_over_origins(per_origin: np.ndarray) -> np.ndarray:
    """Mean over axis 1 of (models, origins, n), ignoring NaN origins, NaN where all are NaN."""
    seen = np.isfinite(per_origin)
    count = seen.sum(axis=1)
    total = np.where(seen, per_origin, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)
