"""Drift and accuracy decay: the world changing under a model, found from its live errors.

Why from the live scores (`mlops.scoring`): they already hold, per series and UTC day, the
forecast's absolute error and the one-day seasonal naive's on the same targets, so the daily
MASE (their ratio) is a number comparable across seasons and series, computed with no extra
read of raw data. Two findings, each an event that asks for a retrain:

- `drift` (`residual`): Page-Hinkley (Page 1954; Hinkley 1971) on the log of the daily MASE
  since the production version went live (or since the last finding): it accumulates how far
  each day lies above the running mean plus `delta` and alarms when that sum has risen `lam`
  above its minimum, i.e. when the errors have **shifted up** and stayed. The log, clipped to a
  factor `clip` either way, is because a day's MASE is a ratio: on the AGC 2018 replay single
  days reach 15-38 (a day after a logger outage, a day whose naive error was tiny), and on the raw
  scale one such day alarms alone;
- `decay` (`accuracy`): the model health rule (`mlops.health`) with retraining's thresholds
  (`decay`): live MASE over the window worse than the seasonal naive by 10 %, twice the backtest's,
  or an 80 % interval covering under half the actuals. The dashboard's `degraded` is earlier on
  purpose: it is for a person to look, this is for the node to act.

A series with an open sensor fault is skipped: its errors are the sensor's, not the model's.
After a finding, the series is left alone for `cooldown_days` (30): its retrain needs days of new
scores before the figures mean anything again, and with the promotion gate and the scheduled
refit a second finding within the month would only churn versions. On the AGC 2018 replay the
live 7-day MASE of the untouched compartments crosses 1.1 every two to four weeks (the models
run at 0.9-1.0 of the seasonal naive on their own targets, 0.6-0.7 in the first hour), so the
cooldown, not the thresholds, is what holds findings to one a month there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from greennanny.mlops.events import CLOSED, Finding
from greennanny.mlops.health import HealthRules, health
from greennanny.mlops.scoring import DAY_NS
from greennanny.store.duckdb import DuckDBStore


@dataclass(frozen=True, slots=True)
class DriftRules:
    delta: float = 0.1  # rises of log daily MASE below this are tolerated (~10 %)
    lam: float = 2.0  # alarm threshold of the Page-Hinkley statistic (log daily MASE units)
    clip: float = 3.0  # a day counts as at most this many times better or worse (one odd day never alarms alone)
    min_days: int = 4  # scored days needed before the test may alarm
    min_steps_a_day: int = 12  # a day with fewer scored steps is left out
    cooldown_days: int = 30
    health_days: int = 7
    window_days: int = 60  # Page-Hinkley looks at most this far back (a production version live for a year)
    decay: HealthRules = field(default_factory=lambda: HealthRules(max_mase=1.1, mase_vs_backtest=2.0, min_cov80=0.5))


def page_hinkley(x: np.ndarray, delta: float, lam: float, min_n: int) -> tuple[int, float, float] | None:
    """(index of the alarm, statistic there, running mean there) for an upward shift of `x`, or None."""
    m, low, total = 0.0, 0.0, 0.0
    for i, v in enumerate(x.tolist()):
        total += v
        mean = total / (i + 1)
        m += v - mean - delta
        low = min(low, m)
        if i + 1 >= min_n and m - low > lam:
            return i, m - low, mean
    return None


def daily_mase(store: DuckDBStore, since: Mapping[int, int], min_steps: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per series: (UTC day starts, daily MASE) for the days on or after `since[series]`."""
    first = min(since.values(), default=0)
    rows = store.reader().execute(
        "SELECT series_id, day_ns, sum(n), sum(abs_err), sum(naive_abs_err), sum(naive_n) FROM forecast_scores "
        "WHERE day_ns >= ? GROUP BY 1, 2 ORDER BY 1, 2", [first]).fetchall()
    out: dict[int, tuple[list[int], list[float]]] = {}
    for sid, day, n, ae, nae, nn in rows:
        sid = int(sid)
        if sid not in since or day < since[sid] or n < min_steps or not nn or not nae:
            continue
        d, v = out.setdefault(sid, ([], []))
        d.append(int(day))
        v.append((ae / n) / (nae / nn))
    return {s: (np.array(d, np.int64), np.array(v)) for s, (d, v) in out.items()}


def drift_findings(store: DuckDBStore, now_ns: int, *, live_since: Mapping[int, int], last_finding: Mapping[int, int],
                   skip: set[int], rules: DriftRules = DriftRules()) -> list[Finding]:
    """Drift and decay findings (closed events that ask for a retrain) for the series of `live_since`
    (series -> when its production version went live)."""
    start = {}
    for s, t in live_since.items():
        if s in skip or now_ns - last_finding.get(s, -(2**62)) < rules.cooldown_days * DAY_NS:
            continue
        start[s] = max(t, last_finding.get(s, t), now_ns - rules.window_days * DAY_NS)
    if not start:
        return []
    out: list[Finding] = []
    days = daily_mase(store, {s: (t // DAY_NS + 1) * DAY_NS for s, t in start.items()}, rules.min_steps_a_day)
    today = now_ns // DAY_NS * DAY_NS
    for s, (d, v) in days.items():
        v = v[d < today]  # whole UTC days only: today's few scored steps are no day's figure
        d = d[d < today]
        hit = page_hinkley(np.clip(np.log(v), -np.log(rules.clip), np.log(rules.clip)), rules.delta, rules.lam,
                           rules.min_days)
        if hit is None:
            continue
        i, stat, mean = hit
        out.append(Finding(s, "drift", "residual", int(d[i]), {
            "test": "Page-Hinkley on log daily live MASE", "delta": rules.delta, "lambda": rules.lam,
            "statistic": round(stat, 3), "days": int(i + 1), "mean_mase": round(float(np.exp(mean)), 3),
            "daily_mase": [round(float(x), 3) for x in v[: i + 1]][-14:],
            "action": "retrain requested"}, status=CLOSED))
    drifted = {f.series_id for f in out}
    hl = health(store, now_ns, days=rules.health_days, series_ids=sorted(start), rules=rules.decay)["series"]
    for row in hl:
        s = int(row["series_id"])
        if row["status"] != "degraded" or s in drifted:
            continue
        if now_ns - start[s] < rules.health_days * DAY_NS:  # the window still holds the days before it went live
            continue
        out.append(Finding(s, "decay", "accuracy", now_ns, {
            "window_days": rules.health_days, "reasons": row["reasons"], "live_mase": row["mase"],
            "backtest_mase": row["backtest_mase"], "coverage80": row["coverage80"], "action": "retrain requested"},
            status=CLOSED))
    return out
