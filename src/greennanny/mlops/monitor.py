"""One monitoring round after each forecast run: sensor faults, drift and decay, as events, and
the retrains they ask for (the forecast service takes those within its budget).

Why after the forecast run: the run has just prepared every series' window and its quality
report (stuck spans, silence), and the scoring round has just added the newest live errors, so a
round costs one read of the last hours of raw readings (for steps) and one aggregate query.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from greennanny.forecast.quality import QualityReport
from greennanny.mlops.drift import DriftRules, drift_findings
from greennanny.mlops.events import Events, FaultMask
from greennanny.mlops.faults import FaultRules, quality_findings, step_findings
from greennanny.mlops.registry import PRODUCTION
from greennanny.store.base import SeriesInfo
from greennanny.store.duckdb import DuckDBStore

log = logging.getLogger("greennanny.mlops")


@dataclass(slots=True)
class MonitorRound:
    opened: list[int] = field(default_factory=list)  # new event ids
    closed: int = 0  # sensor faults that ended by themselves
    retrain: dict[int, str] = field(default_factory=dict)  # series -> why (drift, decay)
    warnings: list[str] = field(default_factory=list)  # findings that are not events (an all-missing window)


class Monitor:
    def __init__(self, store: DuckDBStore, faults: FaultRules = FaultRules(), drift: DriftRules = DriftRules()) -> None:
        self.store = store
        self.events = Events(store)
        self.faults = faults
        self.drift = drift

    def check(self, now_ns: int, series: Sequence[SeriesInfo], reports: Mapping[int, QualityReport], *,
              step_ns: int, window_ns: int) -> MonitorRound:
        out = MonitorRound()
        empty = [s for s in series if (r := reports.get(s.id)) is not None and r.points == 0]
        none = {s.id for s in empty}
        for s in empty:  # a whole window without a reading is said, not raised (and never a crash)
            out.warnings.append(f"series {s.id} ({s.key}) has no reading in its {window_ns // 3_600_000_000_000} h window")
        live = [s for s in series if s.id not in none]
        found, ended = quality_findings(now_ns, live, reports, step_ns, window_ns, self.faults)
        found += step_findings(self.store, now_ns, live, self.faults)
        out.closed = self.events.close(now_ns, ended, "the sensor reports normally again")
        out.opened = self.events.raise_(now_ns, found)
        since = {int(s): int(t) for s, t in self.store.reader().execute(
            "SELECT series_id, since_ns FROM model_aliases WHERE alias = ?", [PRODUCTION]).fetchall()}
        for s in live:  # BR-22: nothing to compare with is said, and the rest is still computed
            if s.id not in since:
                out.warnings.append(f"series {s.id} ({s.key}): no reference data (no model trained on it yet), "
                                    "drift not computed")
        drifted = drift_findings(self.store, now_ns, live_since=since,
                                 last_finding=self.events.last_at(["drift", "decay"]),
                                 skip=FaultMask.load(self.store).hidden(), rules=self.drift)
        out.opened += self.events.raise_(now_ns, drifted)
        out.retrain = {f.series_id: f"{f.category}: " + "; ".join(
            str(x) for x in ([f"Page-Hinkley {f.evidence['statistic']} > {f.evidence['lambda']}"]
                             if f.category == "drift" else f.evidence.get("reasons", []))) for f in drifted}
        if out.warnings:
            log.warning("monitor: %d warnings (first: %s)", len(out.warnings), out.warnings[0])
        if out.opened:
            log.info("monitor: %d new events, %d retrains asked", len(out.opened), len(out.retrain))
        return out
