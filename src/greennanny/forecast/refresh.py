"""Refreshes between full refits: the model each series was given at the last refit, run on the
new data with the parameters that refit chose (`Forecaster.update` after `Tunable.use_params`:
ETS keeps its smoothing parameters, `blend` its weights), with the interval widths that refit's
backtest measured.

Why: the expensive part of a run is choosing, not fitting. The selection backtest fits every
candidate at several origins (and `blend` weighs its members by a backtest of its own at each),
while a refresh only needs the chosen model on today's window. So the node refreshes often
(`[forecast] refresh_min`) and re-chooses, with new backtest errors and interval widths, only
every `refit_h` hours. A refresh is never a silent fallback: a series that has no choice yet
(new), or whose data now needs a fallback (too short, constant), goes through the full path of
`runner.forecast_panel`, and the result says which series were refreshed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from greennanny.forecast.base import ForecastResult, Tunable
from greennanny.forecast.models import make_model
from greennanny.forecast.panel import Panel
from greennanny.forecast.quality import triage
from greennanny.forecast.runner import fallback_panel


@dataclass(slots=True)
class Choice:
    """What a full refit decided for one series (the backtest figures stay those of the refit)."""

    model: str
    mae: float
    mase: float
    runner_up: str | None
    runner_up_mase: float
    half80: np.ndarray  # (h,) half-width of the 80 % interval per horizon step
    half95: np.ndarray
    params: dict[str, float] | None = None  # the model's parameters at the refit, if tunable


def remember(res: ForecastResult) -> dict[int, Choice]:
    """The choices of a full run: every series that got its model by backtest (not a fallback)."""
    if res.oracle_inputs:
        raise ValueError(f"an oracle run (inputs {res.oracle_inputs}) is an evaluation: its choices are never kept")
    out = {}
    for i, sid in enumerate(res.series_ids.tolist()):
        if res.fallback_reason[i] is None:
            out[int(sid)] = Choice(res.model[i], float(res.backtest_mae[i]), float(res.backtest_mase[i]),
                                   res.runner_up[i], float(res.runner_up_mase[i]),
                                   res.hi80[i] - res.mean[i], res.hi95[i] - res.mean[i],
                                   res.params[i] if res.params else None)
    return out


def refreshable(panel: Panel, choices: Mapping[int, Choice], horizon: int, min_history: int) -> np.ndarray:
    """Rows whose series has a choice with this horizon and data a model can still be fitted to."""
    tri = triage(panel.values, min_history)
    has = np.isfinite(panel.values).any(axis=1)
    known = np.array([(c := choices.get(int(s))) is not None and c.half80.size == horizon
                      for s in panel.series_ids.tolist()], dtype=bool)
    return np.flatnonzero(known & has & ~tri.too_short & ~tri.constant)


def refresh(panel: Panel, choices: Mapping[int, Choice], *, horizon: int, season: int, now_ns: int) -> ForecastResult:
    """Forecast every row of `panel` (all refreshable) with its remembered model, grouped by model."""
    n = panel.n_series
    mean = np.full((n, horizon), np.nan)
    picks = [choices[int(s)] for s in panel.series_ids.tolist()]
    failed: dict[int, str] = {}
    for name in sorted({c.model for c in picks}):
        rows = np.array([i for i, c in enumerate(picks) if c.model == name], dtype=np.intp)
        part = panel.take(rows)
        kept = [picks[i].params for i in rows.tolist()]
        try:
            model = make_model(name, season)
            with np.errstate(all="ignore"):
                if isinstance(model, Tunable) and all(p is not None for p in kept):
                    model.use_params([p for p in kept if p is not None])
                    model.update(part)
                else:  # parameters not kept (a model without any, or a choice from before they were)
                    model.fit(part)
                mean[rows] = model.predict(horizon)
        except Exception as exc:  # noqa: BLE001 - one model's failure falls back for its series only
            failed.update({int(r): f"{name} raised at refresh ({type(exc).__name__}: {exc})" for r in rows})
    for r in np.flatnonzero(~np.isfinite(mean).all(axis=1)).tolist():
        failed.setdefault(int(r), f"{picks[r].model} gave a non-finite forecast at refresh")
    if failed:  # never stored silently: those series go down the chain, labelled
        ok = np.array([i for i in range(n) if i not in failed], dtype=np.intp)
        bad = np.array(sorted(failed), dtype=np.intp)
        chain = fallback_panel(panel.take(bad), {j: failed[int(r)] for j, r in enumerate(bad.tolist())},
                               horizon=horizon, season=season, now_ns=now_ns)
        rest = refresh(panel.take(ok), choices, horizon=horizon, season=season, now_ns=now_ns) if ok.size else None
        return merge([x for x in (rest, chain) if x is not None])
    h80 = np.stack([c.half80 for c in picks])
    h95 = np.stack([c.half95 for c in picks])
    step = panel.step_ns
    return ForecastResult(
        series_ids=panel.series_ids.copy(), start_ns=panel.end_ns, step_ns=step, mean=mean,
        lo80=mean - h80, hi80=mean + h80, lo95=mean - h95, hi95=mean + h95,
        model=[c.model for c in picks], backtest_mae=np.array([c.mae for c in picks]),
        backtest_mase=np.array([c.mase for c in picks]), runner_up=[c.runner_up for c in picks],
        runner_up_mase=np.array([c.runner_up_mase for c in picks]), fallback_reason=[None] * n,
        made_at_ns=now_ns, quality_notes=[None] * n, params=[c.params for c in picks])


def take(res: ForecastResult, rows: np.ndarray) -> ForecastResult:
    """The rows `rows` of a result (its skipped series stay with it)."""
    idx = [int(i) for i in np.asarray(rows, dtype=np.intp).tolist()]

    def pick(xs: list) -> list:  # type: ignore[type-arg]
        return [xs[i] for i in idx] if xs else []

    return ForecastResult(
        series_ids=res.series_ids[idx], start_ns=res.start_ns, step_ns=res.step_ns, mean=res.mean[idx],
        lo80=res.lo80[idx], hi80=res.hi80[idx], lo95=res.lo95[idx], hi95=res.hi95[idx], model=pick(res.model),
        backtest_mae=res.backtest_mae[idx], backtest_mase=res.backtest_mase[idx], runner_up=pick(res.runner_up),
        runner_up_mase=res.runner_up_mase[idx], fallback_reason=pick(res.fallback_reason),
        made_at_ns=res.made_at_ns, skipped=dict(res.skipped), quality_notes=pick(res.quality_notes),
        params=pick(res.params), oracle_inputs=list(res.oracle_inputs))


def merge(parts: list[ForecastResult]) -> ForecastResult:
    """One result of several over the same grid and horizon (rows in the order given)."""
    parts = [p for p in parts if p.series_ids.size or p.skipped]
    first = parts[0]
    cat = np.concatenate
    return ForecastResult(
        series_ids=cat([p.series_ids for p in parts]), start_ns=first.start_ns, step_ns=first.step_ns,
        mean=cat([p.mean for p in parts]), lo80=cat([p.lo80 for p in parts]), hi80=cat([p.hi80 for p in parts]),
        lo95=cat([p.lo95 for p in parts]), hi95=cat([p.hi95 for p in parts]),
        model=[m for p in parts for m in p.model], backtest_mae=cat([p.backtest_mae for p in parts]),
        backtest_mase=cat([p.backtest_mase for p in parts]), runner_up=[r for p in parts for r in p.runner_up],
        runner_up_mase=cat([p.runner_up_mase for p in parts]),
        fallback_reason=[f for p in parts for f in p.fallback_reason], made_at_ns=first.made_at_ns,
        skipped={k: v for p in parts for k, v in p.skipped.items()},
        quality_notes=[q for p in parts for q in (p.quality_notes or [None] * p.series_ids.size)],
        params=[q for p in parts for q in (p.params or [None] * p.series_ids.size)])
