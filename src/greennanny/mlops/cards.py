"""Model cards per model family, generated from the registry and the live scores (issue 6).

Why generated: the person who chose the models may leave; what a successor needs (what the model
is for, what it was trained on, how well it does where, and where it fails) must come from what
the node recorded, not from memory. The intended use is the model module's own docstring; the
known limits are stated here per family, next to the ones the data shows (series it falls back
on, series it does worse than the seasonal naive on).
"""

from __future__ import annotations

import inspect
import statistics
from collections import Counter
from typing import Any

from greennanny.forecast.models import MODELS
from greennanny.mlops.registry import PRODUCTION
from greennanny.mlops.scoring import DAY_NS
from greennanny.store.duckdb import DuckDBStore

KNOWN_LIMITS: dict[str, list[str]] = {
    "blend": [
        ("Weights come from a backtest over the last three days: a regime change (new crop, new setpoints) "
         "takes about that long to be reflected."),
        "Inherits the members' needs: at least two days of history on the forecast grid.",
    ],
    "ets": [
        "Additive season: a daily amplitude that grows or shrinks fast (spring, autumn) is followed with lag.",
        "Parameters come from a fixed grid, not a numeric optimiser.",
    ],
    "profile": [
        ("Assumes tomorrow follows the recent days' daily schedule; a changed schedule (setpoints, lighting "
         "plan) is wrong until it has been seen for days."),
    ],
    "lagreg": [
        ("Linear in its features; exogenous inputs only as known at the origin (lags) or scheduled, never "
         "future observations."),
        "Needs more history than the others for its ridge fit.",
    ],
    "combo": ["An equal-weight mean: a member that fails on a series drags the mean until the next refit."],
    "seasonal_naive": ["Repeats the last day: no trend, no reaction to today's weather."],
    "last_value": ["The last resort: a flat line, used when a series has too little data for anything else."],
}


def _intended_use(name: str) -> str:
    factory = MODELS.get(name)
    module = inspect.getmodule(factory) if factory is not None else None
    doc = inspect.getdoc(module) if module is not None else None
    return " ".join(doc.split("\n\n")[0].split()) if doc else "(no description)"


def cards(store: DuckDBStore, now_ns: int, *, model: str | None = None, days: int = 7) -> list[dict[str, Any]]:
    """One card per model family in production on any series (or just `model`)."""
    cur = store.reader()
    where, args = ("AND v.model = ?", [model]) if model else ("", [])
    prod = cur.execute(
        "SELECT v.model, s.site, s.quantity, v.backtest_mase, v.data_start_ns, v.data_end_ns, v.data_points, "
        "v.trained_by, v.created_ns, v.version FROM model_aliases a JOIN model_versions v ON v.series_id = a.series_id "
        "AND v.version = a.version JOIN series s ON s.id = a.series_id "
        f"WHERE a.alias = ? {where}", [PRODUCTION, *args]).fetchall()
    since = (now_ns // DAY_NS - days + 1) * DAY_NS
    live = cur.execute(
        "SELECT f.model, s.site, s.quantity, sum(n), sum(abs_err), sum(naive_abs_err), sum(naive_n), sum(in80) "
        "FROM forecast_scores f JOIN series s ON s.id = f.series_id WHERE f.day_ns >= ? "
        f"{'AND f.model = ?' if model else ''} GROUP BY ALL", [since, *args]).fetchall()
    fallbacks = Counter(r[0] for r in cur.execute(
        "SELECT model FROM (SELECT model, fallback_reason, row_number() OVER (PARTITION BY series_id ORDER BY made_ns "
        "DESC, run_id DESC) AS k FROM forecast_runs) WHERE k = 1 AND fallback_reason IS NOT NULL").fetchall())
    live_by: dict[str, dict[tuple[str, str], tuple[Any, ...]]] = {}
    for name, site, qty, *sums in live:
        live_by.setdefault(name, {})[(site, qty)] = tuple(sums)
    out = []
    names = {r[0] for r in prod} | ({m for m in fallbacks if m == model} if model else set(fallbacks))
    for name in sorted(names):
        rows = [r for r in prod if r[0] == name]
        groups: dict[tuple[str, str], list[tuple[Any, ...]]] = {k: [] for k in live_by.get(name, {})}
        for r in rows:
            groups.setdefault((r[1], r[2]), []).append(r)
        metrics: list[dict[str, Any]] = []
        for (site, qty), rs in sorted(groups.items()):
            bt = [r[3] for r in rs if r[3] is not None and r[3] == r[3]]  # NaN: no MASE (a zero scale)
            n, ae, nae, nn, i80 = live_by.get(name, {}).get((site, qty), (0, 0.0, 0.0, 0, 0))
            metrics.append({"site": site, "quantity": qty, "series": len(rs),
                            "backtest_mase_mean": statistics.fmean(bt) if bt else None,
                            "live_steps": int(n), "live_mase": round((ae / n) / (nae / nn), 4) if n and nn and nae else None,
                            "live_coverage80": round(i80 / n, 4) if n else None})
        windows = [(r[5] - r[4]) / DAY_NS for r in rows]
        worse = [m for m in metrics if m["live_mase"] is not None and m["live_mase"] > 1.0]
        limits = list(KNOWN_LIMITS.get(name, []))
        limits += [f"Live MASE {m['live_mase']:.2f} over {days} days on {m['site']} {m['quantity']}: worse than "
                   "the one-day seasonal naive there." for m in worse]
        out.append({
            "model": name, "intended_use": _intended_use(name), "known_limits": limits,
            "production_series": len(rows), "trained_by": dict(Counter(r[7] for r in rows)),
            "last_trained_ns": max((r[8] for r in rows), default=None),
            "training_data": None if not rows else {
                "first_ns": min(r[4] for r in rows), "last_ns": max(r[5] for r in rows),
                "window_days_median": round(statistics.median(windows), 2),
                "points_median": int(statistics.median(r[6] for r in rows))},
            "metrics": metrics, "live_days": days,
            "series_on_a_fallback_now": fallbacks.get(name, 0),
        })
    return out
