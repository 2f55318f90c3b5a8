"""The promotion gate: a refit's new version replaces `production` only when it is measurably
better on the series' own recent past, with intervals that hold (design 005, issue 6).

Why a gate at all: a refit every day re-chooses each series' model on a 3-origin backtest, which
is noisy; without a gate a worse model goes live as often as a better one, and a model that was
fine yesterday is replaced on noise. The question the gate answers is the one an operator would
ask: "had we kept production's parameters over the last days, would we have done worse than the
candidate?"

How, per series with a production version:
- both versions are run over the **same** rolling origins of today's window (the last
  `backtest_origins` horizons), each with its own kept parameters (`Tunable.use_params`, then
  `update` on the data before the origin, as a refresh does), so neither is refitted on the
  future it is scored on beyond what its parameters already saw;
- MASE on the cells both forecast and the actual is known, scaled by the in-sample one-day
  seasonal naive before each origin (the selection backtest's scale);
- the candidate's 80 % interval (its half-widths, as it would be served) is checked on its own
  errors there: coverage must lie in [`promotion_coverage_min`, `promotion_coverage_max`]
  (not judged on fewer than 30 cells, where one miss moves coverage by several points);
- promoted when `candidate MASE <= production MASE x (1 - promotion_margin)` and calibrated;
  a production version that cannot be run (its model raised, no finite error) is replaced.

Every decision keeps its numbers (`model_gate_decisions`, and the reason text of the alias
history), so "why is v7 still production" has an answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from greennanny.forecast.base import Tunable
from greennanny.forecast.models import make_model
from greennanny.forecast.panel import Panel
from greennanny.forecast.refresh import Choice
from greennanny.forecast.selection import backtest_origins, naive_scale


@dataclass(frozen=True, slots=True)
class GateRules:
    margin: float = 0.02  # candidate MASE must be this fraction below production's
    coverage_min: float = 0.6  # the candidate's 80 % interval on the gate's origins
    coverage_max: float = 0.99
    origins: int = 3
    min_cells: int = 30  # fewer scored cells than this cannot judge an 80 % interval: not checked


@dataclass(frozen=True, slots=True)
class Decision:
    series_id: int
    promoted: bool
    candidate_mase: float
    production_mase: float
    coverage80: float
    cells: int
    reason: str


def run_fixed(panel: Panel, choices: Sequence[Choice], origins: Sequence[int], horizon: int,
              season: int) -> np.ndarray:
    """(len(origins), n, h) forecasts of each row's kept choice from each origin, NaN where the
    model raised (one model's failure stays that model's rows)."""
    n = panel.n_series
    out = np.full((len(origins), n, horizon), np.nan)
    for name in sorted({c.model for c in choices}):
        rows = np.array([i for i, c in enumerate(choices) if c.model == name], dtype=np.intp)
        part = panel.take(rows)
        kept = [choices[i].params for i in rows.tolist()]
        for j, o in enumerate(origins):
            try:
                model = make_model(name, season)
                head = part.head(o)
                with np.errstate(all="ignore"):
                    if isinstance(model, Tunable) and all(p is not None for p in kept):
                        model.use_params([p for p in kept if p is not None])
                        model.update(head)
                    else:
                        model.fit(head)
                    out[j, rows] = model.predict(horizon)
            except Exception:  # noqa: BLE001, S112 - a version that cannot run loses the gate, nothing else
                continue
    return out


def decide(panel: Panel, production: Mapping[int, Choice], candidates: Mapping[int, Choice], *,
           horizon: int, season: int, rules: GateRules) -> dict[int, Decision]:
    """The gate's decision for every series of `panel` that has both a production and a candidate."""
    rows = [i for i, s in enumerate(panel.series_ids.tolist()) if int(s) in production and int(s) in candidates]
    if not rows:
        return {}
    part = panel.take(np.array(rows, dtype=np.intp))
    sids = [int(s) for s in part.series_ids.tolist()]
    origins = backtest_origins(part.n_steps, horizon, rules.origins)
    if not origins:
        return {s: Decision(s, True, np.nan, np.nan, np.nan, 0, "no origin to compare on: promoted")
                for s in sids}
    prod = run_fixed(part, [production[s] for s in sids], origins, horizon, season)
    cand = run_fixed(part, [candidates[s] for s in sids], origins, horizon, season)
    actual = np.stack([part.values[:, o:o + horizon] for o in origins])  # (b, n, h)
    both = np.isfinite(actual) & np.isfinite(prod) & np.isfinite(cand)
    scale = naive_scale(part.values, season, origins)[:, :, None]  # (b, n, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        e_prod = np.where(both, np.abs(prod - actual) / scale, np.nan)
        e_cand = np.where(both, np.abs(cand - actual) / scale, np.nan)
        cells = both.sum(axis=(0, 2))
        mase_p = np.nansum(e_prod, axis=(0, 2)) / cells
        mase_c = np.nansum(e_cand, axis=(0, 2)) / cells
        half = np.stack([candidates[s].half80 for s in sids])[None]  # (1, n, h)
        inside = (np.abs(cand - actual) <= half) & both
        cov = inside.sum(axis=(0, 2)) / cells
    out: dict[int, Decision] = {}
    prod_runs = np.isfinite(prod).any(axis=(0, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        alone = np.isfinite(actual) & np.isfinite(cand)
        mase_alone = np.nansum(np.where(alone, np.abs(cand - actual) / scale, np.nan), axis=(0, 2)) / alone.sum(axis=(0, 2))
    for i, s in enumerate(sids):
        c, p, v, k = float(mase_c[i]), float(mase_p[i]), float(cov[i]), int(cells[i])
        if not prod_runs[i] and np.isfinite(mase_alone[i]):
            out[s] = Decision(s, True, float(mase_alone[i]), p, np.nan, int(alone[:, i].sum()),
                              "production gave no finite forecast on the gate's origins: promoted")
            continue
        if not np.isfinite(c):
            out[s] = Decision(s, False, c, p, v, k, "candidate gave no finite forecast on the gate's origins: kept")
            continue
        better = c <= p * (1.0 - rules.margin)
        calibrated = k < rules.min_cells or rules.coverage_min <= v <= rules.coverage_max
        gain = (1.0 - c / p) * 100 if p > 0 else 0.0
        text = (f"candidate MASE {c:.3f} vs production {p:.3f} on the same {len(origins)} origins "
                f"(candidate {gain:+.1f} % better, margin {rules.margin * 100:.0f} %), 80 % coverage {v:.2f}")
        if better and calibrated:
            out[s] = Decision(s, True, c, p, v, k, f"gate: {text}: promoted")
        elif better:
            out[s] = Decision(s, False, c, p, v, k, f"gate: {text} outside [{rules.coverage_min:.2f}, "
                                                    f"{rules.coverage_max:.2f}]: kept")
        else:
            out[s] = Decision(s, False, c, p, v, k, f"gate: {text}: not better by the margin, kept")
    return out
