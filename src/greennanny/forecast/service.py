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

Every model chosen the full way is registered (`mlops.registry`, design 005): one version per
series per run, with its lineage and artifact, in one transaction at the end of the run. A node's
service (`resume=True`) starts from the registered production versions instead of re-choosing
every model; a version whose artifact is refused is replaced by the fallback chain, and the
forecasts it makes say so in their `fallback_reason`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from greennanny.config import ForecastConfig
from greennanny.forecast.inputs import input_arrays
from greennanny.forecast.models import make_model
from greennanny.forecast.panel import Panel
from greennanny.forecast.quality import QualityReport, QualityRules, prepare_panel, triage
from greennanny.forecast.refresh import Choice, merge, refresh, refreshable, remember, take
from greennanny.forecast.runner import forecast_panel
from greennanny.forecast.selection import select_by_backtest
from greennanny.mlops.events import FaultMask
from greennanny.mlops.gate import Decision, GateRules, decide
from greennanny.mlops.registry import Lineage, Registry, lineage_of
from greennanny.runtime.clock import Clock
from greennanny.store.duckdb import DuckDBStore

log = logging.getLogger("greennanny.forecast")
DAY_NS = 86_400 * 1_000_000_000
Progress = Callable[[int, int], None]  # (series done, series in the run)


def _num(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 6)


@dataclass
class ForecastRunSummary:
    run_id: int = 0
    series_considered: int = 0
    forecasts: int = 0
    models: dict[str, int] = field(default_factory=dict)
    fallbacks: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    quality: dict[str, int] = field(default_factory=dict)
    refit: bool = True  # the models were chosen again by backtest (else: a refresh of the last choice)
    refreshed: int = 0  # series forecast with their remembered model (the rest went the full way)
    registered: int = 0  # model versions this run added to the registry
    promoted: int = 0  # series whose refit passed the promotion gate (mlops/gate.py)
    kept: int = 0  # series whose refit the gate kept out of production (forecast by production)
    retrained: int = 0  # series refit because drift, decay or an operator asked (within the budget)
    retrain_waiting: int = 0  # asked for and not yet done (over the budget, or an open sensor fault)
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
    def __init__(self, store: DuckDBStore, cfg: ForecastConfig, clock: Clock, *, resume: bool = False) -> None:
        self.store = store
        self.cfg = cfg
        self.clock = clock
        self.last: ForecastRunSummary | None = None
        self.registry = Registry(store)
        self._run_lock = threading.Lock()  # the refresh thread and a run asked for through the API
        self._choices: dict[int, Choice] = {}  # per series, from the last full refit (forecast/refresh.py)
        self._refit_ns: int | None = None  # `now` of the last refit of every series
        self._resume = resume  # start from the registry's production versions (the node), once
        self._chain: dict[int, str] = {}  # series whose choice came down the fallback chain, and why
        self._asked: set[int] = set()  # series whose production version was already asked of the registry
        self._retrain: dict[int, tuple[str, str]] = {}  # series -> (who asked, why): refit at the next run
        self.last_reports: dict[int, QualityReport] = {}  # the last run's data-quality report per series
        self.last_series: list[Any] = []  # the series the last run considered
        self._mask = FaultMask({})
        self._failed: dict[int, str] = {}  # series whose model failed at this run's refresh, and why

    def reload(self, now_ns: int | None = None) -> int:
        """Take every series' production version from the registry (at a node's first run, and
        after a rollback); returns how many series got a choice from it."""
        with self._run_lock:
            return self._load_registered(self.clock.now_ns() if now_ns is None else now_ns)

    def _load_registered(self, now: int) -> int:
        self._resume = False
        loaded = self.registry.load_production(now_ns=now)
        self._asked |= set(loaded.choices) | set(loaded.notes)
        self._choices.update(loaded.choices)
        self._chain = {s: why for s, why in loaded.notes.items() if s in loaded.choices}
        if loaded.notes:  # a refused artifact is a health event until the series is refit
            from greennanny.mlops.events import Events, Finding

            Events(self.store).raise_(now, [Finding(s, "fallback", "artifact", now, {"reason": why})
                                            for s, why in loaded.notes.items()], actor="forecast", audit=False)
        for sid in set(loaded.notes) - set(loaded.choices):  # nothing loads: the next run refits it
            self._choices.pop(sid, None)
        if loaded.last_run_ns is not None and self._refit_ns is None:
            self._refit_ns = loaded.last_run_ns
        return len(loaded.choices)

    def request_retrain(self, series_ids: Sequence[int], *, actor: str, reason: str) -> int:
        """Ask for a full refit of these series at the next run (within `retrain_max_series` a run);
        returns how many are waiting now."""
        for sid in series_ids:
            self._retrain[int(sid)] = (actor, reason)
        return len(self._retrain)

    def cancel_retrain(self, series_ids: Sequence[int]) -> None:
        for sid in series_ids:
            self._retrain.pop(int(sid), None)

    def _grid(self, now: int) -> tuple[int, int, int, int, int]:
        """(step, season, horizon, end, length) of the panel for a run at `now`."""
        step = self.cfg.step_min * 60 * 1_000_000_000
        end = -(-now // step) * step
        return step, int(DAY_NS // step), self.cfg.horizon_h * 3600 * 1_000_000_000 // step, end, \
            self.cfg.history_days * DAY_NS // step

    def _candidates(self, now: int, series_ids: Sequence[int] | None) -> list[Any]:
        """The series a run at `now` forecasts: the configured quantities with readings in the
        history window (or exactly `series_ids`, any quantity, when given)."""
        step, _, _, end, length = self._grid(now)
        start = end - length * step
        pool = [s for q in self.cfg.quantities for s in self.store.series(quantity=q)] if series_ids is None \
            else [s for s in (self.store.series_by_id(int(i)) for i in series_ids) if s is not None]
        # readings inside the window: a run as of an earlier time (--at) also takes series that go on
        # after it (their later points are not read)
        return [s for s in pool if s.last_ns is not None and s.last_ns >= start
                and (s.first_ns if s.first_ns is not None else s.last_ns) < end]

    def _prepared(self, ids: np.ndarray, now: int) -> Any:
        """The clean panel of `ids` at `now`, with the site's time zone and the configured inputs."""
        step, _, horizon, end, length = self._grid(now)
        # up to `now` inclusive: the last bin runs on to `end`, and a run as of an earlier time
        # (--at) must not read what came after it
        sid, ts, val = self.store.query_long(ids.tolist(), end - length * step, min(end, now + 1))
        val = self._mask.apply(sid, ts, val)  # an open step fault's readings are not learned from
        prepared = prepare_panel(sid, ts, val, step_ns=step, end_ns=end, length=length, rules=self._rules(step),
                                 series_ids=ids)
        infos = [self.store.series_by_id(int(i)) for i in ids.tolist()] if self.cfg.inputs else []
        exog = input_arrays(self.store, self.cfg.inputs, infos, step_ns=step,
                            end_ns=end, length=length, horizon=horizon, rules=self._rules(step), now_ns=now)
        p = prepared.panel
        prepared.panel = Panel(p.series_ids, p.start_ns, p.step_ns, p.values, exog, self.cfg.tz)
        return prepared

    def _rules(self, step: int) -> QualityRules:
        return QualityRules.for_grid(step, max_gap_min=self.cfg.max_gap_min, stuck_factor=self.cfg.stuck_factor,
                                     stuck_after_min=self.cfg.stuck_after_min,
                                     min_history_days=self.cfg.min_history_days)

    def run_once(self, now_ns: int | None = None, *, series_ids: Sequence[int] | None = None,
                 progress: Progress | None = None, trained_by: str = "schedule") -> ForecastRunSummary:
        """One forecasting run (one run id), `chunk_series` series at a time.

        Why chunks: memory stays bounded by a chunk (the backtest holds models x origins x series
        x horizon forecasts), the store lock is taken once a chunk for its write, and a caller
        can show progress (`progress(done, total)`). Series are independent in every model, so a
        chunk's forecasts equal those of one big panel. `trained_by` is what the registry records
        as having trained the run's new versions (schedule, manual, backfill).
        """
        with self._run_lock:
            return self._run(now_ns, series_ids, progress, trained_by)

    def _run(self, now_ns: int | None, series_ids: Sequence[int] | None,
             progress: Progress | None, trained_by: str) -> ForecastRunSummary:
        t0 = time.monotonic()
        now = self.clock.now_ns() if now_ns is None else now_ns
        if self._resume:
            self._load_registered(now)
        step, season, horizon, _, _ = self._grid(now)
        series = self._candidates(now, series_ids)
        summary = ForecastRunSummary(series_considered=len(series))
        self._mask = FaultMask.load(self.store)
        self._failed = {}
        hidden = self._mask.hidden()
        ready = [s for s in self._retrain if s not in hidden]
        due = {s: self._retrain[s] for s in ready[: self.cfg.retrain_max_series]}
        self.last_series = series
        if not series:
            self.last = summary
            return summary
        run_id = self.store.next_run_id()
        models: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        reports: list[QualityReport] = []
        chunk = self.cfg.chunk_series
        if progress is not None:
            progress(0, len(series))
        refit = self._refit_due(now)
        summary.refit = refit
        chosen: dict[int, Choice] = {}
        lineage: dict[int, Lineage] = {}
        decisions: dict[int, Decision] = {}
        for k in range(0, len(series), chunk):
            ids = np.array([s.id for s in series[k:k + chunk]], dtype=np.int64)
            prepared = self._prepared(ids, now)
            panel, min_steps = prepared.panel, self._rules(step).min_history_steps or 2 * season
            rows = np.zeros(0, np.intp) if refit else refreshable(panel, self._choices, horizon, min_steps)
            if due and rows.size:  # asked-for retrains go the full way (choice, gate) this run
                rows = rows[~np.isin(panel.series_ids[rows], list(due))]
            rest = np.setdiff1d(np.arange(panel.n_series), rows)
            parts = []
            if rows.size:
                again = refresh(panel.take(rows), self._choices, horizon=horizon, season=season, now_ns=now)
                for i, sid in enumerate(again.series_ids.tolist()):  # a version from the fallback chain says so
                    if again.fallback_reason[i] is not None:  # the model failed now: the chain served it
                        self._failed[int(sid)] = again.fallback_reason[i] or ""
                    else:
                        again.fallback_reason[i] = self._chain.get(int(sid))
                parts.append(again)
                summary.refreshed += int(rows.size)
            if rest.size:
                fresh = panel.take(rest)
                full = forecast_panel(fresh, horizon=horizon, season=season, models=self.cfg.models,
                                      backtest_origins=self.cfg.backtest_origins, now_ns=now,
                                      prefer_margin=self.cfg.prefer_margin, min_history=min_steps,
                                      quality=prepared.by_id())
                for sid, why in zip(full.series_ids.tolist(), full.fallback_reason):
                    if why is not None:  # a fallback now: no remembered model may stand in for it
                        self._choices.pop(int(sid), None)
                got = remember(full)
                gated = self._gate(fresh, got, horizon, season) if self.cfg.promotion_gate else {}
                decisions.update(gated)
                held = {s for s, d in gated.items() if not d.promoted}
                self._choices.update({s: c for s, c in got.items() if s not in held})
                chosen.update(got)
                lineage.update({s: x for s, x in lineage_of(fresh).items() if s in got})
                for sid in got:
                    if sid not in held:
                        self._chain.pop(sid, None)
                if held:  # production stays: its forecast is the one served, as between refits
                    is_held = np.isin(full.series_ids, list(held))
                    again = refresh(fresh.take(np.flatnonzero(np.isin(fresh.series_ids, list(held)))), self._choices,
                                    horizon=horizon, season=season, now_ns=now)
                    for i, sid in enumerate(again.series_ids.tolist()):
                        if again.fallback_reason[i] is not None:
                            self._failed[int(sid)] = again.fallback_reason[i] or ""
                        else:
                            again.fallback_reason[i] = self._chain.get(int(sid))
                    parts += [take(full, np.flatnonzero(~is_held)), again]
                else:
                    parts.append(full)
            res = merge(parts)
            reports += prepared.reports
            self.last_reports.update(prepared.by_id())
            self._write(run_id, now, res)
            summary.forecasts += len(res.series_ids)
            models.update(res.model)
            summary.fallbacks += sum(r is not None for r in res.fallback_reason)
            skipped.update(res.skipped.values())
            if progress is not None:
                progress(min(k + chunk, len(series)), len(series))
        if refit and series_ids is None:
            self._refit_ns = now
        asked = {s: due[s] for s in chosen if s in due}
        summary.registered = len(self.registry.register_run(
            run_id, now, chosen, lineage, step_ns=step, horizon=horizon, trained_by=trained_by,
            reason="refit" if refit else "first model of a series without one", gate=decisions, why=asked))
        in_run = {int(s.id) for s in series}
        for s in due:  # done, or without data to fit (asking again is up to whoever asked); a run of
            if s in in_run or series_ids is None:  # other series (--series) leaves the rest queued
                self._retrain.pop(s, None)
        summary.retrained = len(asked)
        self._fallback_events(now, [s.id for s in series])
        summary.retrain_waiting = len(self._retrain)
        summary.promoted = sum(d.promoted for d in decisions.values())
        summary.kept = len(decisions) - summary.promoted
        summary.quality = _quality_counts(reports)
        summary.run_id = run_id
        summary.models = dict(models)
        summary.skipped = dict(skipped)
        summary.seconds = round(time.monotonic() - t0, 2)
        self.last = summary
        log.info("forecast run %d: %d series, models %s, %d fallbacks, %.1f s", run_id, summary.forecasts,
                 summary.models, summary.fallbacks, summary.seconds)
        return summary

    def _fallback_events(self, now: int, ids: Sequence[int]) -> None:
        """A model that failed at refresh is a health event (open while it keeps failing), and its
        series is asked to refit at the next run; the event closes once the series refreshes again."""
        from greennanny.mlops.events import Events, Finding

        ev = Events(self.store)
        if self._failed:
            ev.raise_(now, [Finding(s, "fallback", "refresh", now, {"reason": why, "action": "refit asked"})
                            for s, why in self._failed.items()], actor="forecast")
            for s, why in self._failed.items():
                self._retrain.setdefault(s, ("fallback", f"fallback: {why}"))
        ev.close(now, [(int(s), "fallback", "refresh") for s in ids if int(s) not in self._failed]
                 + [(int(s), "fallback", "artifact") for s in ids if int(s) not in self._chain and int(s) in self._choices],
                 "the series is forecast by its model again", actor="forecast")

    def _gate(self, panel: Panel, got: dict[int, Choice], horizon: int, season: int) -> dict[int, Decision]:
        """The promotion gate for the series of `got` that have a production choice (mlops/gate.py).
        A series served from the fallback chain (its production artifact refused) is not gated:
        its refit replaces a production version that cannot be loaded."""
        known = {s: self._choices[s] for s in got if s in self._choices and s not in self._chain}
        unknown = [s for s in got if s not in self._choices and s not in self._asked]
        if unknown:  # a service that did not load them (a CLI run on the file): production from the registry
            loaded = self.registry.load_production(unknown, now_ns=self.clock.now_ns())
            self._asked |= set(unknown)
            fine = {s: c for s, c in loaded.choices.items() if s not in loaded.notes}
            known.update(fine)
            self._choices.update(fine)  # a kept production version serves this run's forecast
        prod = {s: c for s, c in known.items() if c.half80.size == horizon}
        if not prod:
            return {}
        rules = GateRules(margin=self.cfg.promotion_margin, coverage_min=self.cfg.promotion_coverage_min,
                          coverage_max=self.cfg.promotion_coverage_max, origins=self.cfg.backtest_origins)
        return decide(panel, prod, got, horizon=horizon, season=season, rules=rules)

    def _refit_due(self, now: int) -> bool:
        """Choose again when `refit_h` has passed since the last refit of every series, when the
        clock went back (a run `--at` an earlier time), or always with refit_h = 0."""
        last = self._refit_ns
        return (self.cfg.refit_h == 0 or last is None or now < last
                or now - last >= self.cfg.refit_h * 3600 * 1_000_000_000)

    def _write(self, run_id: int, now: int, res: Any) -> None:
        n = len(res.series_ids)
        if not n:
            return
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

    def backtest(self, now_ns: int | None = None, *, series_ids: Sequence[int] | None = None,
                 models: Sequence[str] | None = None, progress: Progress | None = None) -> list[dict[str, Any]]:
        """The selection backtest on stored history, without writing anything: per series, each
        model's mean MAE and MASE over the rolling origins, the choice and the runner-up
        (`greennanny forecast backtest`). Series too short or constant are listed with why."""
        now = self.clock.now_ns() if now_ns is None else now_ns
        step, season, horizon, _, _ = self._grid(now)
        names = tuple(models or self.cfg.models)
        for name in names:
            make_model(name, season)  # an unknown name fails before any work
        series = self._candidates(now, series_ids)
        min_steps = self._rules(step).min_history_steps or 2 * season
        out: list[dict[str, Any]] = []
        chunk = self.cfg.chunk_series
        if progress is not None:
            progress(0, len(series))
        self._mask = FaultMask.load(self.store)
        for k in range(0, len(series), chunk):
            part = series[k:k + chunk]
            prepared = self._prepared(np.array([s.id for s in part], dtype=np.int64), now)
            tri = triage(prepared.panel.values, min_steps)
            has = np.isfinite(prepared.panel.values).any(axis=1)
            ok = np.flatnonzero(has & ~tri.too_short & ~tri.constant)
            sel = select_by_backtest(prepared.panel.take(ok), names, horizon=horizon, season=season,
                                     n_origins=self.cfg.backtest_origins,
                                     prefer_margin=self.cfg.prefer_margin if models is None else 0.0) \
                if ok.size else None
            pos = {int(r): j for j, r in enumerate(ok)}
            for r, s in enumerate(part):
                row: dict[str, Any] = {"series_id": s.id, "quantity": s.key.quantity, "zone": s.key.zone,
                                       "device": s.key.device}
                j = pos.get(r)
                if j is None or sel is None:
                    row.update(choice=None, runner_up=None,
                               reason=tri.reasons.get(r, "no usable value in the history window"))
                else:
                    row.update({f"{m}_mase": _num(sel.mase[i, j]) for i, m in enumerate(names)})
                    row.update({f"{m}_mae": _num(sel.mae[i, j]) for i, m in enumerate(names)})
                    c, u = int(sel.choice[j]), int(sel.runner_up[j])
                    row.update(choice=names[c] if c >= 0 else None, runner_up=names[u] if u >= 0 else None,
                               reason="; ".join(sel.notes[j]) or None)
                out.append(row)
            if progress is not None:
                progress(min(k + chunk, len(series)), len(series))
        return out

    def run_per_epoch(self, gap_ns: int = DAY_NS) -> list[ForecastRunSummary]:
        """Forecast historical data from where each group of series ends (backfill and demo).

        A live node forecasts from its clock. Imported or replayed history ends at different
        times per source (a 2018 climate export, a 2026 LoRaWAN archive): series are grouped by
        their last reading (a new group where the gap exceeds `gap_ns`) and each group is
        forecast from its own end.
        """
        series = sorted((s for q in self.cfg.quantities for s in self.store.series(quantity=q)
                         if s.last_ns is not None), key=lambda s: s.last_ns or 0)
        groups: list[tuple[int, list[int]]] = []  # (end, series ids): each series in one group only
        for s in series:
            t = int(s.last_ns or 0)
            if groups and t - groups[-1][0] <= gap_ns:
                groups[-1] = (t, groups[-1][1] + [s.id])
            else:
                groups.append((t, [s.id]))
        return [self.run_once(now_ns=end + 1, series_ids=ids, trained_by="backfill") for end, ids in groups]

    def loop(self, stop: threading.Event) -> None:
        """Run 5 s after start, then at every `refresh_min` boundary of the wall clock (:00, :15,
        ... by default, plus 5 s for the bin's last readings), until `stop` is set; a failed run is
        logged, not fatal."""
        every = self.cfg.refresh_min * 60 * 1_000_000_000

        while not stop.wait(5 if self.last is None else (every - self.clock.now_ns() % every) / 1e9 + 5):
            try:
                self.run_once()
            except Exception:
                log.exception("forecast run failed; next try in %d min", self.cfg.refresh_min)
            self.after_run(self.clock.now_ns())

    def after_run(self, now_ns: int) -> Any:
        """Score what has arrived, then monitor: faults, drift and decay become events, and the
        retrains they ask for wait for the next run. A failure here is logged, never fatal."""
        from greennanny.mlops.monitor import Monitor
        from greennanny.mlops.scoring import Scorer

        try:  # live accuracy: the stored forecasts whose targets have arrived (mlops/scoring.py)
            done = Scorer(self.store).score(now_ns)
            if done.forecast_steps:
                log.info("scored %d forecast steps of %d series in %.1f s", done.forecast_steps, done.series,
                         done.seconds)
        except Exception:
            log.exception("scoring forecasts failed; next try after the next run")
        if not self.cfg.monitor or not self.last_series:
            return None
        try:
            step, _, _, _, length = self._grid(now_ns)
            got = Monitor(self.store, self.cfg.fault_rules(), self.cfg.drift_rules()).check(
                now_ns, self.last_series, self.last_reports, step_ns=step, window_ns=length * step)
            for sid, why in got.retrain.items():
                self.request_retrain([sid], actor="monitor", reason=why)
            return got
        except Exception:
            log.exception("monitoring failed; next try after the next run")
            return None
