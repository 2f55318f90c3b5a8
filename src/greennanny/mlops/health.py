"""Model health over a rolling window of days, from the live scores (`mlops.scoring`).

Why these rules: an operator with thousands of models needs the few that went wrong, each with
the number that says so. A series is `degraded` when, over the window, its forecasts did worse
than the one-day seasonal naive on the same targets (live MASE above `max_mase`), when they did
much worse than the backtest that chose the model promised (`mase_vs_backtest` times its
backtest MASE), or when its 80 % interval covered far fewer actuals than 80 % (`min_cov80`).
With fewer than `min_steps` scored steps there is `no data` to judge, which is said, not hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from greennanny.mlops.registry import Registry
from greennanny.mlops.scoring import BUCKET_NAMES, DAY_NS
from greennanny.store.duckdb import DuckDBStore


@dataclass(frozen=True, slots=True)
class HealthRules:
    max_mase: float = 1.0
    mase_vs_backtest: float = 1.5
    min_cov80: float = 0.6
    min_steps: int = 24


def _ratio(a: float, b: float) -> float | None:
    return None if not b else round(a / b, 4)


def _figures(n: int, ae: float, se: float, nae: float, nn: int, i80: int, i95: int) -> dict[str, Any]:
    naive = nae / nn if nn else 0.0
    return {"n": n, "mae": _ratio(ae, n), "rmse": None if not n else round((se / n) ** 0.5, 4),
            "mase": None if not n or not naive else round((ae / n) / naive, 4),
            "coverage80": _ratio(i80, n), "coverage95": _ratio(i95, n)}


def health(store: DuckDBStore, now_ns: int, *, days: int = 7, series_ids: Sequence[int] | None = None,
           rules: HealthRules = HealthRules()) -> dict[str, Any]:
    """Per series: live MAE, RMSE, MASE and coverage over the last `days` UTC days (overall and per
    horizon bucket), the models that made the scored forecasts, the production version's backtest
    MASE, and a status with its reasons; plus the count of each status."""
    since = (now_ns // DAY_NS - days + 1) * DAY_NS
    where = "" if series_ids is None else f" AND series_id IN ({','.join(str(int(s)) for s in series_ids) or 'NULL'})"
    rows = store.reader().execute(
        "SELECT series_id, bucket, model, sum(n), sum(abs_err), sum(sq_err), sum(naive_abs_err), sum(naive_n), "
        f"sum(in80), sum(in95) FROM forecast_scores WHERE day_ns >= ?{where} GROUP BY ALL ORDER BY 1",
        [since]).fetchall()
    prod = {r["series_id"]: r for r in Registry(store).production(series_ids)}
    per: dict[int, dict[str, Any]] = {}
    for sid, bucket, model, *sums in rows:
        into = per.setdefault(int(sid), {"total": [0, 0.0, 0.0, 0.0, 0, 0, 0], "buckets": {}, "models": {}})
        b = into["buckets"].setdefault(bucket, [0, 0.0, 0.0, 0.0, 0, 0, 0])
        for i, x in enumerate(sums):
            into["total"][i] += x
            b[i] += x
        into["models"][model] = into["models"].get(model, 0) + int(sums[0])
    ids = sorted(set(per) | set(prod)) if series_ids is None else [int(s) for s in series_ids]
    out, counts = [], {"ok": 0, "degraded": 0, "no data": 0}
    for sid in ids:
        got = per.get(sid)
        acc: dict[str, Any] = got if got is not None else {"total": [0, 0.0, 0.0, 0.0, 0, 0, 0], "buckets": {}, "models": {}}
        total = _figures(*acc["total"])
        p = prod.get(sid)
        backtest = p["backtest_mase"] if p else None
        reasons = []
        if total["n"] < rules.min_steps:
            status = "no data"
            reasons.append(f"{total['n']} forecast steps scored in {days} days (need {rules.min_steps})")
        else:
            mase, cov = total["mase"], total["coverage80"]
            if mase is not None and mase > rules.max_mase:
                reasons.append(f"live MASE {mase:.3f} over {days} days: worse than the one-day seasonal naive")
            if mase is not None and backtest is not None and backtest > 0 and mase > rules.mase_vs_backtest * backtest:
                reasons.append(f"live MASE {mase:.3f} is {mase / backtest:.1f}x its backtest MASE {backtest:.3f}")
            if cov is not None and cov < rules.min_cov80:
                reasons.append(f"80 % interval covered {cov:.2f} of the actuals (want >= {rules.min_cov80:.2f})")
            status = "degraded" if reasons else "ok"
        counts[status] += 1
        out.append({"series_id": sid, "status": status, "reasons": reasons, **total,
                    "production_version": p["version"] if p else None,
                    "production_model": p["model"] if p else None, "backtest_mase": backtest,
                    "models": acc["models"],
                    "buckets": {name: _figures(*acc["buckets"][name]) for name in BUCKET_NAMES
                                if name in acc["buckets"]}})
    return {"days": days, "since_ns": since, "counts": counts, "series": out}
