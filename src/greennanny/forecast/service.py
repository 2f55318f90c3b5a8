"""Forecasts for every stored series, refreshed on a cadence, written back to the store.

Runs in the node process (the store's owner), on its own thread, so a long fit never blocks
ingest commits beyond the store lock of the final write. One panel holds every series of the
configured quantities on one grid, so the models vectorise across series.

Grid: the panel ends at `now` rounded UP to the step, so the last (possibly partial) bin holds
the newest reading and the first forecast step starts after it.

The points go through `forecast.quality.prepare_panel` (duplicates, stuck sensors, gaps) with the
`[forecast]` rules; the run summary counts what it found. The per-series reasons are on the
`ForecastResult` (`quality_notes`); the store has no column for them yet (issue 6 makes them
events), a fallback's reason is stored as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from greennanny.config import ForecastConfig
from greennanny.forecast.quality import QualityReport, QualityRules, prepare_panel
from greennanny.forecast.runner import forecast_panel
from greennanny.runtime.clock import Clock
from greennanny.store.duckdb import DuckDBStore

log = logging.getLogger("greennanny.forecast")
DAY_NS = 86_400 * 1_000_000_000


@dataclass
class ForecastRunSummary:
    run_id: int = 0
    series_considered: int = 0
    forecasts: int = 0
    models: dict[str, int] = field(default_factory=dict)
    fallbacks: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    quality: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quality_counts(reports: list[QualityReport]) -> dict[str, int]:
    """Totals over the run: points and steps touched, and how many series were flagged."""
    out = {
        name: sum(getattr(r, name) for r in reports)
        for name in ("duplicates", "stuck_points", "stuck_steps", "interpolated_steps", "masked_gap_steps")
    }
    out["stuck_series"] = sum(bool(r.stuck_spans) for r in reports)
    out["constant_series"] = sum(r.constant for r in reports)
    out["too_short_series"] = sum(r.too_short for r in reports)
    return out


class ForecastService:
    def __init__(self, store: DuckDBStore, cfg: ForecastConfig, clock: Clock) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock
        self.last: ForecastRunSummary | None = None

    def run_once(self, now_ns: int | None = None) -> ForecastRunSummary:
        t0 = time.monotonic()
        now = self.clock.now_ns() if now_ns is None else now_ns
        step = self.cfg.step_min * 60 * 1_000_000_000
        season = DAY_NS // step
        horizon = self.cfg.horizon_h * 3600 * 1_000_000_000 // step
        end = -(-now // step) * step
        length = self.cfg.history_days * DAY_NS // step
        start = end - length * step
        series = [s for q in self.cfg.quantities for s in self.store.series(quantity=q)
                  if s.last_ns is not None and start <= s.last_ns < end]
        summary = ForecastRunSummary(series_considered=len(series))
        if not series:
            self.last = summary
            return summary
        ids = np.array([s.id for s in series], dtype=np.int64)
        sid, ts, val = self.store.query_long(ids.tolist(), start, end)
        rules = QualityRules.for_grid(step, max_gap_min=self.cfg.max_gap_min, stuck_factor=self.cfg.stuck_factor,
                                      stuck_after_min=self.cfg.stuck_after_min,
                                      min_history_days=self.cfg.min_history_days)
        prepared = prepare_panel(sid, ts, val, step_ns=step, end_ns=end, length=length, rules=rules, series_ids=ids)
        res = forecast_panel(prepared.panel, horizon=horizon, season=int(season),
                             backtest_origins=self.cfg.backtest_origins, now_ns=now,
                             min_history=rules.min_history_steps, quality=prepared.by_id())
        summary.quality = _quality_counts(prepared.reports)
        run_id = self.store.next_run_id()
        n = len(res.series_ids)
        runs = pd.DataFrame({
            "run_id": np.full(n, run_id, np.int64), "series_id": res.series_ids.astype(np.int32),
            "made_ns": np.full(n, now, np.int64), "start_ns": np.full(n, res.start_ns, np.int64),
            "step_ns": np.full(n, res.step_ns, np.int64), "horizon": np.full(n, res.horizon, np.int32),
            "model": res.model, "backtest_mae": res.backtest_mae, "backtest_mase": res.backtest_mase,
            "runner_up": res.runner_up, "runner_up_mase": res.runner_up_mase,
            "fallback_reason": res.fallback_reason,
        })
        h = res.horizon
        points = pd.DataFrame({
            "run_id": np.full(n * h, run_id, np.int64), "series_id": np.repeat(res.series_ids, h).astype(np.int32),
            "ts": np.tile(res.timestamps(), n), "mean": res.mean.ravel(), "lo80": res.lo80.ravel(),
            "hi80": res.hi80.ravel(), "lo95": res.lo95.ravel(), "hi95": res.hi95.ravel(),
        })
        self.store.write_forecasts(runs, points)
        summary.run_id = run_id
        summary.forecasts = n
        summary.models = dict(Counter(res.model))
        summary.fallbacks = sum(r is not None for r in res.fallback_reason)
        summary.skipped = dict(Counter(res.skipped.values()))
        summary.seconds = round(time.monotonic() - t0, 2)
        self.last = summary
        log.info("forecast run %d: %d series, models %s, %d fallbacks, %.1f s", run_id, n, summary.models,
                 summary.fallbacks, summary.seconds)
        return summary

    def run_per_epoch(self, gap_ns: int = DAY_NS) -> list[ForecastRunSummary]:
        """Forecast historical data from where each group of series ends (backfill and demo).

        A live node forecasts from its clock. Imported or replayed history ends at different
        times per source (a 2018 climate export, a 2026 LoRaWAN archive): series are grouped by
        their last reading (a new group where the gap exceeds `gap_ns`) and each group is
        forecast from its own end.
        """
        last = sorted({s.last_ns for q in self.cfg.quantities for s in self.store.series(quantity=q)
                       if s.last_ns is not None})
        ends: list[int] = []
        for t in last:
            if ends and t - ends[-1] <= gap_ns:
                ends[-1] = t
            else:
                ends.append(t)
        return [self.run_once(now_ns=e + 1) for e in ends]

    def loop(self, stop: threading.Event) -> None:
        """Refresh every `refresh_min` minutes until `stop` is set; a failed run is logged, not fatal."""
        while not stop.wait(5 if self.last is None else self.cfg.refresh_min * 60):
            try:
                self.run_once()
            except Exception:
                log.exception("forecast run failed; next try in %d min", self.cfg.refresh_min)
