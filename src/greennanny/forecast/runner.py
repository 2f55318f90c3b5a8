"""One call that forecasts every series of a panel: triage, backtest choice, intervals, fallbacks.

Why a triage before any model runs: the models assume enough history, and a node always has some
series that do not (a probe installed this morning, one that is stuck, one that never reported).
Each series therefore lands in exactly one lane, and every lane but the first says why:

- no finite value at all: left out of the rows, reason in `ForecastResult.skipped`;
- fewer than `min_history` finite values (default 2 seasons): seasonal naive if it has one
  season, else last value;
- constant (every finite value equal): its constant, with zero-width intervals;
- otherwise: every requested model is backtested and the best per series is used
  (`selection.py`); if none could be scored or all failed, seasonal naive.

Intervals: for a backtested series, split-conformal widths from its chosen model's backtest
errors, pooled over neighbouring horizon steps and made non-decreasing in the horizon
(`intervals.backtest_widths`); for a fallback, widths from its own naive differences grown like
a random walk (`intervals.history_widths`). Both are symmetric around the mean.

The constant and too-short flags come from `quality.triage`, the same rule the data-quality
report uses; the report's reasons (stuck spans masked, gaps, duplicates) ride along per row in
`ForecastResult.quality_notes`, and never replace `fallback_reason`: a series that got its
chosen model on cleaned data is not a fallback.

Pure and deterministic: no clock (`now_ns` is only stamped on the result), no randomness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from greennanny.forecast.base import ForecastResult
from greennanny.forecast.intervals import LEVELS, backtest_widths, history_widths
from greennanny.forecast.models import make_model
from greennanny.forecast.models.last_value import LastValue
from greennanny.forecast.models.seasonal_naive import SeasonalNaive
from greennanny.forecast.panel import Panel
from greennanny.forecast.quality import QualityReport, triage
from greennanny.forecast.selection import backtest_origins as origins_for
from greennanny.forecast.selection import forecast_guarded, select_by_backtest


def forecast_panel(
    panel: Panel,
    *,
    horizon: int,
    season: int,
    models: Sequence[str] = ("seasonal_naive", "ets"),
    backtest_origins: int = 3,
    now_ns: int,
    min_history: int | None = None,
    quality: Mapping[int, QualityReport] | None = None,
    prefer_margin: float = 0.0,
    oracle: bool = False,
) -> ForecastResult:
    """Forecast `horizon` steps after the panel's end for every series that has any data.

    `season` is the daily cycle in steps (96 at 15 min). The model per series is the one with
    the lowest mean MASE over `backtest_origins` rolling origins (the last that many horizons of
    its history). `min_history` is the finite steps a series needs for that choice (default two
    seasons); `quality` maps series ids to their data-quality reports, whose notes are carried.

    Intervals (80%, 95%) are split-conformal: at horizon step k the half-width is the
    ceil((c+1)p)-th smallest of the chosen model's c absolute backtest errors at and just before
    step k (pooled over enough neighbouring steps to hold >= 30 errors, since 3 origins give only
    3 errors per step), then made non-decreasing in k with a running maximum. This needs no
    distributional assumption and treats every model alike; it is slightly conservative (80%
    intervals covered 83% on Gaussian noise in the tests). Fallback series, which have no
    backtest, get naive-difference widths grown like a random walk (`intervals.history_widths`).

    A panel with `oracle` inputs (future observed values, `panel.Exog`) is refused unless
    `oracle=True`, and the result then names them in `oracle_inputs`: an evaluation of what a
    perfect weather forecast would be worth, never the automatic choice of a node.
    """
    if horizon < 1 or season < 1 or backtest_origins < 1:
        raise ValueError(
            f"horizon, season and backtest_origins must be >= 1, got {horizon}, {season}, "
            f"{backtest_origins}"
        )
    if not models:
        raise ValueError("at least one model is needed")
    if panel.oracle_inputs and not oracle:
        raise ValueError(
            f"exog {', '.join(repr(k) for k in panel.oracle_inputs)} carry future observed values (role 'oracle'): "
            "they are for an evaluation run only (oracle=True), whose result is labelled and never used as a forecast"
        )
    for name in models:
        make_model(name, season)  # an unknown name fails here, before any work

    min_history = 2 * season if min_history is None else min_history
    if min_history < 2:
        raise ValueError(f"min_history must be >= 2 steps, got {min_history}")
    notes = quality or {}

    def note(sid: int) -> str | None:
        report = notes.get(sid)
        return report.note() if report is not None else None

    finite_count = np.isfinite(panel.values).sum(axis=1)
    skipped: dict[int, str] = {}
    for sid in panel.series_ids[finite_count == 0].tolist():
        why = f"no finite values in the {panel.n_steps} steps of the panel"
        skipped[int(sid)] = why + (f"; {note(sid)}" if note(sid) else "")
    kept = np.flatnonzero(finite_count > 0)
    sub = _subset(panel, kept)
    out = _Rows(len(kept), horizon)

    tri = triage(sub.values, min_history)
    short, constant = tri.too_short, tri.constant
    fallbacks: dict[int, tuple[str, str]] = {}
    for r in np.flatnonzero(short):
        name = SeasonalNaive.name if tri.count[r] >= season else LastValue.name
        fallbacks[int(r)] = (name, tri.reasons[int(r)])
    for r in np.flatnonzero(constant):
        fallbacks[int(r)] = (LastValue.name, tri.reasons[int(r)])

    eligible = np.flatnonzero(~short & ~constant)
    if eligible.size:
        _choose(out, sub, eligible, fallbacks, list(models), horizon, season, backtest_origins, prefer_margin)
    _fall_back(out, sub, fallbacks, horizon, season)
    out.widths[:, constant] = 0.0

    return ForecastResult(
        series_ids=panel.series_ids[kept].copy(),
        start_ns=panel.end_ns,
        step_ns=panel.step_ns,
        mean=out.mean,
        lo80=out.mean - out.widths[0],
        hi80=out.mean + out.widths[0],
        lo95=out.mean - out.widths[1],
        hi95=out.mean + out.widths[1],
        model=out.model,
        backtest_mae=out.mae,
        backtest_mase=out.mase,
        runner_up=out.runner_up,
        runner_up_mase=out.runner_up_mase,
        fallback_reason=out.reason,
        made_at_ns=now_ns,
        skipped=skipped,
        quality_notes=[note(int(sid)) for sid in sub.series_ids],
        params=out.params,
        oracle_inputs=panel.oracle_inputs,
    )


def fallback_panel(panel: Panel, reasons: Mapping[int, str], *, horizon: int, season: int,
                   now_ns: int) -> ForecastResult:
    """The fallback chain for rows whose own model failed outside a full run (a refresh): seasonal
    naive where a season of history is there, else (or if that fails too) the last value. Every
    row's `model` names the link that produced it and `fallback_reason` says why (`reasons[row]`)."""
    out = _Rows(panel.n_series, horizon)
    count = np.isfinite(panel.values).sum(axis=1)
    fb = {int(r): (SeasonalNaive.name if count[r] >= season else LastValue.name, why) for r, why in reasons.items()}
    _fall_back(out, panel, fb, horizon, season)
    return ForecastResult(
        series_ids=panel.series_ids.copy(), start_ns=panel.end_ns, step_ns=panel.step_ns, mean=out.mean,
        lo80=out.mean - out.widths[0], hi80=out.mean + out.widths[0], lo95=out.mean - out.widths[1],
        hi95=out.mean + out.widths[1], model=out.model, backtest_mae=out.mae, backtest_mase=out.mase,
        runner_up=out.runner_up, runner_up_mase=out.runner_up_mase, fallback_reason=out.reason, made_at_ns=now_ns,
        quality_notes=[None] * panel.n_series, params=out.params)


class _Rows:
    """The result columns being filled, one row per kept series."""

    def __init__(self, n: int, h: int) -> None:
        self.mean = np.full((n, h), np.nan)
        self.widths = np.full((len(LEVELS), n, h), np.nan)
        self.model: list[str] = [""] * n
        self.reason: list[str | None] = [None] * n
        self.mae = np.full(n, np.nan)
        self.mase = np.full(n, np.nan)
        self.runner_up: list[str | None] = [None] * n
        self.runner_up_mase = np.full(n, np.nan)
        self.params: list[dict[str, float] | None] = [None] * n


def _choose(
    out: _Rows,
    panel: Panel,
    rows: np.ndarray,
    fallbacks: dict[int, tuple[str, str]],
    names: list[str],
    horizon: int,
    season: int,
    n_origins: int,
    prefer_margin: float = 0.0,
) -> None:
    """Backtest `rows` of `panel`; the scored ones are filled, the rest join `fallbacks`."""
    sel = select_by_backtest(
        _subset(panel, rows), names, horizon=horizon, season=season, n_origins=n_origins,
        prefer_margin=prefer_margin,
    )
    scored = np.flatnonzero(sel.choice >= 0)
    target = rows[scored]
    out.mean[target] = sel.mean[scored]
    for li, level in enumerate(LEVELS):
        out.widths[li, target] = backtest_widths(sel.abs_err[:, scored], level)
    out.mae[target] = sel.mae[sel.choice[scored], scored]
    out.mase[target] = sel.mase[sel.choice[scored], scored]
    for j, r in zip(scored, target):
        out.model[r] = names[sel.choice[j]]
        out.params[r] = sel.params[j]
        if sel.runner_up[j] >= 0:
            out.runner_up[r] = names[sel.runner_up[j]]
            out.runner_up_mase[r] = sel.mase[sel.runner_up[j], j]
        if sel.notes[j]:
            out.reason[r] = "; ".join(sel.notes[j]) + "; chose among the rest"
    n_bt = len(origins_for(panel.n_steps, horizon, n_origins))
    for j in np.flatnonzero(sel.choice < 0):
        if sel.failed[:, j].all():
            why = "all models failed: " + "; ".join(sel.notes[j])
        else:
            why = f"no backtest: no comparable actual values in the last {n_bt} horizons"
            why += "".join(f"; {note}" for note in sel.notes[j])
        fallbacks[int(rows[j])] = (SeasonalNaive.name, why)


def _fall_back(
    out: _Rows, panel: Panel, fallbacks: dict[int, tuple[str, str]], horizon: int, season: int
) -> None:
    """Forecast the fallback rows with their naive model; a failing seasonal naive -> last value."""
    by_model: dict[str, list[int]] = {SeasonalNaive.name: [], LastValue.name: []}
    for r, (name, why) in sorted(fallbacks.items()):
        by_model[name].append(r)
        out.reason[r] = why
    for name, lag in ((SeasonalNaive.name, season), (LastValue.name, 1)):
        rows = np.asarray(by_model[name], dtype=np.intp)
        if rows.size == 0:
            continue
        part = _subset(panel, rows)
        forecast, raised = forecast_guarded(name, season, part, [part.n_steps], horizon)
        ok = np.isfinite(forecast[0]).all(axis=1)
        for j in np.flatnonzero(~ok):  # only seasonal naive can get here: last value is total
            why = raised.get(int(j), "non-finite forecast")
            out.reason[rows[j]] = f"{out.reason[rows[j]]}; {name} failed ({why})"
            by_model[LastValue.name].append(int(rows[j]))
        good = rows[ok]
        out.mean[good] = forecast[0][ok]
        for li, level in enumerate(LEVELS):
            widths = history_widths(part.values[ok], lag, horizon, level)
            if lag != 1:  # no pair a season apart: treat it like a random walk instead
                walk = history_widths(part.values[ok], 1, horizon, level)
                widths = np.where(np.isnan(widths), walk, widths)
            out.widths[li, good] = widths
        for r in good:
            out.model[r] = name
            if np.isnan(out.widths[:, r]).any():
                out.reason[r] = f"{out.reason[r]}; no interval: no two adjacent observations"


def _subset(panel: Panel, rows: np.ndarray) -> Panel:
    """`panel.take(rows)`, without the copy when `rows` is every row in order."""
    if rows.size == panel.n_series and np.array_equal(rows, np.arange(panel.n_series)):
        return panel
    return panel.take(rows)
