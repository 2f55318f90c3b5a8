"""Forecast alerts on real greenhouse data: the forecast rule against the crossings that happened.

Protocol (issue 7, acceptance point 2), the same for every air-temperature series of AGC 2018
(6 compartments) and OSU 2024 (2 zones), loaded as bench/forecast_accuracy.py loads them (local
wall clock localised in the data set's zone, UTC inside):

- Replay period: from the first local midnight with 14 days of readings before it (the shortest
  training window of bench/forecast_accuracy.py) to the last reading.
- Threshold per series: the `--quantile` (0.8) quantile of the series' daily maxima over the
  complete local days of the replay period, rounded to 0.1 degC: a level crossed on about one day
  in five, so an alert is a hot day, not every afternoon. Needs >= 10 crossing days (local days
  on which an actual episode starts); where fewer, it is lowered by 0.1 degC until there are 10,
  never below the median daily maximum.
  The level is chosen with hindsight (the operator's setpoint stands in for it); the forecasts
  never see it.
- Actual rule: `alerts.rules.level` with `RuleConfig(kind="threshold", value=threshold,
  clear=threshold - 1)` on every raw reading (5 min), through `machine.Track` (for_s 0): an
  actual crossing is an episode's start, the first reading above the threshold after the series
  was last below threshold - 1.
- Forecasts, as the node makes them with the `[forecast]` defaults (ForecastConfig()): 15-minute
  grid, 28 days of history prepared by `forecast.quality.prepare_panel` with the node's rules,
  a run every `refresh_min` (15) minutes at the boundary + 5 s, as `ForecastService.loop` runs;
  the model per series chosen again every `refit_h` (24) hours by `forecast_panel` (candidates
  blend, lagreg, profile, ets, prefer_margin 0.2, 3 backtest origins, conformal intervals), the
  refit passing the promotion gate (`mlops.gate.decide`) before it serves, and every run in
  between a refresh of the chosen model (`forecast.refresh.refresh`): the code of
  `ForecastService._run` without the store, the registry and the monitor (no drift or decay
  retrains; a model that fails at a refresh is refit at the next run, as the node does). The
  panel carries the data set's time zone, as a node configured for the site does.
- Forecast rule: at every run, `alerts.rules.crossing` of the new forecast (mean, lo80, hi80) with
  `RuleConfig(kind="forecast", value=threshold, horizon_h=H, probability=p)`, its probability fed
  to a `machine.Track` as one sample at the run's time (breach: probability >= p; clear:
  probability < clear_p, p / 2 by default), as the rule engine does with each new stored forecast
  (`alerts/engine.py`; the node rounds stored forecasts to the quantity's resolution, the bench
  does not, and the engine's round comes up to `interval_s` after the run).
  The shipped defaults are H = 6 h, p = 0.5; the table over p and H uses `rules.step_probability`
  vectorised, checked equal to `crossing` on the default.
- Matching: an actual crossing at t is recalled when the last forecast alert that fired before t
  fired at most H before t, or was still open at t; its lead time is t minus that firing. A
  forecast alert that fired at f is a true positive when an actual crossing starts in (f, f + H]
  or while it is open (one that fires while the actual episode is already on is false unless
  another crossing follows). precision = true-positive alerts / alerts; recall = recalled crossings /
  crossings. Counted: alerts that fired by the end - H, crossings from the start + H (each had
  the whole H to be matched); the matching itself sees every episode.
- Baselines in the same run, same rule and matching: the seasonal naive forecast (yesterday's
  value at the same time, the same runner and conformal intervals; no gate, which would keep its
  first widths forever since each refit forecasts the same); and an early-warning level on the
  actuals, threshold - 1 degC (clear 1 degC lower), 0.5 and 2 degC beside it.
- `--weather` (default none: the node's default config, no inputs): the data set's outside weather
  of bench/forecast_accuracy.py's DataSpec (AGC 2018: Tout, Iglob of its meteo file; OSU 2024 has
  none there, so it runs without) as `[[forecast.inputs]]`, laid onto each run's grid as
  `forecast.inputs.input_arrays` does (the same `prepare_panel` rules, one site-wide row for every
  series), read by the lagreg model and blend's lagreg member. `lagged`: observations up to the run's
  `now` only, what a node with a weather station has. `known`: the measured weather at the
  forecast's own steps as well, standing in for a perfect weather forecast: an oracle, an optimistic
  upper bound of what a weather forecast could add, never a node's result (it is passed as the
  `known` role, the one the node accepts for a stored weather forecast, so the refresh and the gate
  run unchanged).

Run:
    .venv/bin/python bench/forecast_alerts.py [--jobs 2] [--json] [--weather none|lagged|known]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greennanny.alerts.config import RuleConfig
from greennanny.alerts.machine import Track
from greennanny.alerts.rules import crossing, level, step_probability
from greennanny.config import ForecastConfig
from greennanny.forecast.base import ForecastResult
from greennanny.forecast.panel import Exog, Panel
from greennanny.forecast.quality import PreparedPanel, QualityRules, prepare_panel
from greennanny.forecast.refresh import Choice, merge, refresh, refreshable, remember, take
from greennanny.forecast.runner import forecast_panel
from greennanny.mlops.gate import GateRules, decide

sys.path.insert(0, str(Path(__file__).resolve().parent))
import forecast_accuracy as fa  # the data sets and their loading, shared

MIN_NS = 60 * 10**9
HOUR_NS = 60 * MIN_NS
DAY_NS = 24 * HOUR_NS
RUN_DELAY_NS = 5 * 10**9  # ForecastService.loop runs 5 s after each refresh boundary
DEFAULT_H, DEFAULT_P = RuleConfig.model_fields["horizon_h"].default, RuleConfig.model_fields["probability"].default
HORIZONS_H = (3.0, 6.0, 12.0)
PROBABILITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
RELIABILITY_BINS = np.linspace(0.0, 1.0, 11)
EARLY_MARGINS = (0.5, 1.0, 2.0)
CLEAR_MARGIN = 1.0  # degC below the threshold (or the early-warning level) that ends an episode
MIN_CROSSING_DAYS = 10
TARGETS = {"lead_min": 60.0, "precision": 0.6, "recall": 0.8}
AUTO, NAIVE, EARLY = "greennanny (auto)", "seasonal naive", "early warning 1 degC"
DATASETS = tuple(fa.DataSpec(s.name, s.path, s.time_col, s.series_cols[:1], s.tz, s.group_col, s.weather,
                             s.weather_cols)
                 for s in fa.DATASETS[:2])  # air temperature: AGC 2018 Tair, OSU 2024 T Air (+ their weather)
WEATHER = {"none": "no inputs (the node's defaults)",
           "lagged": "outside weather observed up to each run (lagged input)",
           "known": "ORACLE: the measured outside weather at the forecast's steps, standing in for a perfect "
                    "weather forecast (known input; an optimistic upper bound)"}


# ---------------------------------------------------------------- episodes and matching (unit-tested)


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert episode: fired at `start_ns`, resolved at `end_ns` (None: still open at the end)."""

    start_ns: int
    end_ns: int | None = None


def episodes(ts: np.ndarray, breach: np.ndarray, clear: np.ndarray, value: np.ndarray | None = None,
             for_ns: int = 0, since: bool = False) -> list[Episode]:
    """The firing episodes of a `machine.Track` stepped over the samples (with `for_ns` the
    condition must hold that long; samples neither breaching nor clearing change nothing). An
    episode starts when it fires, or with `since` when its condition first held (an actual
    crossing's time is the first reading above, even when the rule waits to be sure)."""
    track = Track("bench", 0)
    vals = np.zeros(len(ts)) if value is None else np.asarray(value, np.float64)
    out: list[Episode] = []
    start: int | None = None
    for t, v, b, c in zip(np.asarray(ts, np.int64).tolist(), vals.tolist(), np.asarray(breach).tolist(),
                          np.asarray(clear).tolist()):
        tr = track.step(t, v, bool(b), bool(c), for_ns)
        if tr is None:
            continue
        if tr.kind == "firing":
            start = tr.since_ns if since else tr.at_ns
        elif tr.kind == "resolved" and start is not None:
            out.append(Episode(start, tr.at_ns))
            start = None
    if start is not None:
        out.append(Episode(start, None))
    return out


def level_episodes(ts: np.ndarray, values: np.ndarray, rule: RuleConfig) -> list[Episode]:
    """Episodes of a threshold rule on readings (`alerts.rules.level`), starting at the first
    reading above (with a `for_s`, only those that held that long count)."""
    breach, clear = level(values, rule)
    return episodes(ts, breach, clear, values, rule.for_s * 10**9, since=True)


def forecast_episodes(ts: np.ndarray, probability: np.ndarray, rule: RuleConfig) -> list[Episode]:
    """Episodes of a forecast rule from the crossing probability of each run (NaN: no forecast,
    the state stays as it is)."""
    p = np.asarray(probability, np.float64)
    ok = np.isfinite(p)
    return episodes(ts, ok & (p >= rule.probability), ok & (p < rule.clear_p), p)


@dataclass
class Match:
    """How a rule's alert episodes met the actual crossings (see the module docstring)."""

    alerts: int  # counted alert episodes
    true_alerts: int  # of them, followed by a crossing within H or while open
    crossings: int  # counted actual crossings
    recalled: int
    lead_min: list[float] = field(default_factory=list)  # per recalled counted crossing
    open_only: int = 0  # recalled by an alert that fired more than H before and was still open

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else float("nan")

    @property
    def recall(self) -> float:
        return self.recalled / self.crossings if self.crossings else float("nan")

    @property
    def median_lead_min(self) -> float:
        return float(np.median(self.lead_min)) if self.lead_min else float("nan")

    def __add__(self, other: Match) -> Match:
        return Match(self.alerts + other.alerts, self.true_alerts + other.true_alerts,
                     self.crossings + other.crossings, self.recalled + other.recalled,
                     self.lead_min + other.lead_min, self.open_only + other.open_only)

    def as_dict(self) -> dict[str, Any]:
        return {"alerts": self.alerts, "true_alerts": self.true_alerts, "precision": _r(self.precision),
                "crossings": self.crossings, "recalled": self.recalled, "recall": _r(self.recall),
                "median_lead_min": _r(self.median_lead_min, 1), "lead_min_quartiles": self.lead_quartiles(),
                "recalled_by_open_alert_only": self.open_only}

    def lead_quartiles(self) -> list[float] | None:
        return [round(float(x), 1) for x in np.percentile(self.lead_min, [25, 50, 75])] if self.lead_min else None


def _r(x: float, nd: int = 3) -> float | None:
    return round(float(x), nd) if np.isfinite(x) else None


def match(alerts: Sequence[Episode], crossings: Sequence[int], horizon_ns: int,
          first_ns: int | None = None, last_ns: int | None = None) -> Match:
    """Precision, recall and lead times of `alerts` against actual crossing starts.

    A crossing at t is recalled by the last alert that fired strictly before t, if that alert
    fired at most `horizon_ns` before t or was still open at t (end None or >= t); the lead is t
    minus its firing. An alert firing at f is true when a crossing starts in (f, max(f + H, end)].
    Counted (when the window is given): alerts firing in [first, last - H], crossings in
    [first + H, last]; every episode takes part in the matching.
    """
    lo = -(2**62) if first_ns is None else first_ns
    hi = 2**62 if last_ns is None else last_ns
    starts = np.array([a.start_ns for a in alerts], dtype=np.int64)
    ends = np.array([2**62 if a.end_ns is None else a.end_ns for a in alerts], dtype=np.int64)
    cross = np.sort(np.asarray(crossings, dtype=np.int64))
    out = Match(0, 0, 0, 0)
    for f, e in zip(starts.tolist(), ends.tolist()):
        if lo <= f <= hi - horizon_ns:
            out.alerts += 1
            reach = max(f + horizon_ns, e)
            k = int(np.searchsorted(cross, f, side="right"))
            if k < cross.size and cross[k] <= reach:
                out.true_alerts += 1
    for t in cross.tolist():
        if not lo + horizon_ns <= t <= hi:
            continue
        out.crossings += 1
        k = int(np.searchsorted(starts, t, side="left")) - 1  # the last alert that fired before t
        if k >= 0 and (t - starts[k] <= horizon_ns or ends[k] >= t):
            out.recalled += 1
            out.open_only += int(t - starts[k] > horizon_ns)
            out.lead_min.append((t - int(starts[k])) / MIN_NS)
    return out


def daily_maxima(ts: np.ndarray, values: np.ndarray, tz: str, first_ns: int, last_ns: int) -> pd.Series:
    """Maximum reading of each complete local day in [first_ns, last_ns]."""
    mids = fa.local_midnights(first_ns, last_ns, tz)
    if mids.size < 2:
        return pd.Series(dtype=np.float64)
    day = np.searchsorted(mids, ts, side="right") - 1
    keep = (day >= 0) & (day < mids.size - 1) & np.isfinite(values)
    return pd.Series(values[keep]).groupby(day[keep]).max()


def crossing_days(crossings: Sequence[int], tz: str) -> int:
    """Local calendar days on which at least one crossing starts."""
    if not len(crossings):
        return 0
    return int(pd.to_datetime(np.asarray(crossings), utc=True).tz_convert(tz).normalize().nunique())


def pick_threshold(ts: np.ndarray, values: np.ndarray, tz: str, first_ns: int, last_ns: int, quantile: float,
                   min_days: int = MIN_CROSSING_DAYS, for_s: int = 0) -> tuple[float, int, int]:
    """(threshold, crossing days, complete days): the quantile of the daily maxima rounded to 0.1 degC,
    lowered by 0.1 until the actual rule starts an episode on >= `min_days` local days, but never
    below the median daily maximum (a level crossed on most days is no alert): a short span may
    end with fewer days (the returned count shows it)."""
    maxima = daily_maxima(ts, values, tz, first_ns, last_ns)
    thr = round(float(maxima.quantile(quantile)), 1)
    floor = float(maxima.median())
    while True:
        starts = [e.start_ns for e in level_episodes(ts, values, actual_rule(thr, for_s=for_s)) if e.start_ns >= first_ns]
        days = crossing_days([s for s in starts if s <= last_ns], tz)
        if days >= min_days or thr - 0.1 < floor:
            return thr, days, int(maxima.size)
        thr = round(thr - 0.1, 1)


def actual_rule(threshold: float, margin: float = 0.0, for_s: int = 0) -> RuleConfig:
    lvl = round(threshold - margin, 3)
    return RuleConfig(name="actual", kind="threshold", quantity="air_temperature", value=lvl,
                      clear=round(lvl - CLEAR_MARGIN, 3), for_s=for_s)


def forecast_rule(threshold: float, horizon_h: float = DEFAULT_H, probability: float = DEFAULT_P) -> RuleConfig:
    return RuleConfig(name="forecast", kind="forecast", quantity="air_temperature", value=threshold,
                      horizon_h=horizon_h, probability=probability)


# ---------------------------------------------------------------- the node's forecasts, replayed


@dataclass
class Engine:
    """One forecaster's memory across runs, as `ForecastService` keeps it."""

    label: str
    models: tuple[str, ...]
    prefer_margin: float
    gate: bool
    choices: dict[int, Choice] = field(default_factory=dict)
    refit_ns: int | None = None
    failed: set[int] = field(default_factory=set)
    refits: int = 0
    promoted: int = 0
    kept: int = 0
    served: Counter[str] = field(default_factory=Counter)


def serve(eng: Engine, prepared: PreparedPanel, now: int, cfg: ForecastConfig, *, horizon: int, season: int,
          min_steps: int) -> ForecastResult:
    """One run of `ForecastService._run` for one chunk: refit (choice by backtest, gate) when due,
    else a refresh of each series' chosen model; series without a choice go the full way."""
    panel = prepared.panel
    refit = cfg.refit_h == 0 or eng.refit_ns is None or now - eng.refit_ns >= cfg.refit_h * HOUR_NS
    rows = np.zeros(0, np.intp) if refit else refreshable(panel, eng.choices, horizon, min_steps)
    if eng.failed and rows.size:  # a model that failed at the last refresh is refit now
        rows = rows[~np.isin(panel.series_ids[rows], list(eng.failed))]
    eng.failed = set()
    rest = np.setdiff1d(np.arange(panel.n_series), rows)
    parts: list[ForecastResult] = []

    def again(p: Panel) -> ForecastResult:
        res = refresh(p, eng.choices, horizon=horizon, season=season, now_ns=now)
        eng.failed |= {int(s) for s, why in zip(res.series_ids.tolist(), res.fallback_reason) if why is not None}
        return res

    if rows.size:
        parts.append(again(panel.take(rows)))
    if rest.size:
        fresh = panel.take(rest)
        full = forecast_panel(fresh, horizon=horizon, season=season, models=eng.models,
                              backtest_origins=cfg.backtest_origins, now_ns=now, prefer_margin=eng.prefer_margin,
                              min_history=min_steps, quality=prepared.by_id())
        for sid, why in zip(full.series_ids.tolist(), full.fallback_reason):
            if why is not None:
                eng.choices.pop(int(sid), None)
        got = remember(full)
        held: set[int] = set()
        prod = {s: eng.choices[s] for s in got if s in eng.choices and eng.choices[s].half80.size == horizon}
        if eng.gate and prod:
            rules = GateRules(margin=cfg.promotion_margin, coverage_min=cfg.promotion_coverage_min,
                              coverage_max=cfg.promotion_coverage_max, origins=cfg.backtest_origins)
            decisions = decide(fresh, prod, got, horizon=horizon, season=season, rules=rules)
            held = {s for s, d in decisions.items() if not d.promoted}
            eng.promoted += len(decisions) - len(held)
            eng.kept += len(held)
        eng.choices.update({s: c for s, c in got.items() if s not in held})
        if held:
            is_held = np.isin(full.series_ids, list(held))
            parts += [take(full, np.flatnonzero(~is_held)),
                      again(fresh.take(np.flatnonzero(np.isin(fresh.series_ids, list(held)))))]
        else:
            parts.append(full)
    if refit:
        eng.refit_ns = now
        eng.refits += 1
    res = merge(parts)
    eng.served.update(res.model)
    return res


@dataclass
class Replay:
    """Every run's forecast of the first `steps` steps, per engine: (runs, series, steps)."""

    names: list[str]
    run_ns: np.ndarray  # (R,) `now` of each run
    start_ns: np.ndarray  # (R,) first forecast step of each run
    step_ns: int
    forecasts: dict[str, dict[str, np.ndarray]]  # engine -> {"mean", "lo80", "hi80"}
    info: dict[str, dict[str, Any]]  # engine -> refits, gate, models served
    seconds: float


def load_air(spec: fa.DataSpec, only: Sequence[str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray,
                                                                             np.ndarray]:
    """(names, series index, UTC ns, value) of the data set's air-temperature readings in time
    order (`fa.load_series`), only the series named in `only` when given."""
    names, sid, ts, val = fa.load_series(spec)
    if only is not None:
        missing = sorted(set(only) - set(names))
        if missing:
            raise SystemExit(f"{spec.name}: no series {missing}; there are {names}")
        keep = [names.index(n) for n in only]
        remap = np.full(len(names), -1)
        remap[keep] = np.arange(len(keep))
        sel = np.isin(sid, keep)
        names, sid, ts, val = list(only), remap[sid[sel]], ts[sel], val[sel]
    order = np.argsort(ts, kind="stable")
    return names, sid[order], ts[order], val[order]


@dataclass
class Weather:
    """A data set's outside weather in time order, long form (`load_weather`), and its role."""

    names: list[str]
    sid: np.ndarray
    ts: np.ndarray
    val: np.ndarray
    role: str  # lagged | known


def load_weather(spec: fa.DataSpec, role: str) -> Weather:
    """The weather columns of `spec` (as `fa.weather_inputs` reads them: wall clock localised in
    the data set's zone), one long series each, in time order."""
    assert spec.weather is not None and role in ("lagged", "known")
    df = pd.read_csv(spec.weather)
    df.columns = [c.strip() for c in df.columns]
    ts = fa.localize_wall_clock(df[spec.time_col], spec.tz, pd.Series("weather", index=df.index))
    parts = []
    for k, c in enumerate(spec.weather_cols):
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(np.float64)
        keep = np.isfinite(v) & (ts != np.iinfo(np.int64).min)
        parts.append((np.full(int(keep.sum()), k), ts[keep], v[keep]))
    sid, t, v = (np.concatenate(p) for p in zip(*parts))
    order = np.argsort(t, kind="stable")
    return Weather([f"{c} (outside)" for c in spec.weather_cols], sid[order], t[order], v[order], role)


def weather_exog(w: Weather, n_series: int, *, step_ns: int, end_ns: int, length: int, horizon: int,
                 rules: QualityRules, now_ns: int) -> dict[str, Exog]:
    """`forecast.inputs.input_arrays` on the bench's weather: the site's station serves every
    series; a lagged input is read up to `now_ns` (inclusive), a known one over the horizon too."""
    ahead = horizon if w.role == "known" else 0
    stop = end_ns + ahead * step_ns
    read_to = stop if w.role == "known" else min(stop, now_ns + 1)
    lo, hi = np.searchsorted(w.ts, end_ns - length * step_ns), np.searchsorted(w.ts, read_to)
    grid = prepare_panel(w.sid[lo:hi], w.ts[lo:hi], w.val[lo:hi], step_ns=step_ns, end_ns=stop, length=length + ahead,
                         rules=rules, series_ids=np.arange(len(w.names))).panel
    return {name: Exog(np.tile(grid.values[k], (n_series, 1)), w.role) for k, name in enumerate(w.names)}


def replay(names: list[str], sid: np.ndarray, ts: np.ndarray, val: np.ndarray, tz: str, first_ns: int, last_ns: int,
           steps: int, every_ns: int, gate: bool, cfg: ForecastConfig | None = None,
           weather: Weather | None = None) -> Replay:
    """Run the node's forecasting every `every_ns` from `first_ns` (+ 5 s) while runs are <= last_ns,
    on readings in time order (`load_air`), with `weather` as the forecasts' inputs when given."""
    cfg = cfg or ForecastConfig()
    step = cfg.step_min * MIN_NS
    season, horizon, length = DAY_NS // step, cfg.horizon_h * HOUR_NS // step, cfg.history_days * DAY_NS // step
    rules = QualityRules.for_grid(step, max_gap_min=cfg.max_gap_min, stuck_factor=cfg.stuck_factor,
                                  stuck_after_min=cfg.stuck_after_min, min_history_days=cfg.min_history_days)
    min_steps = rules.min_history_steps or 2 * season
    engines = [Engine(AUTO, tuple(cfg.models), cfg.prefer_margin, gate), Engine(NAIVE, ("seasonal_naive",), 0.0, False)]
    runs = np.arange(first_ns, last_ns - RUN_DELAY_NS + 1, every_ns, dtype=np.int64) + RUN_DELAY_NS
    n = len(names)
    fc = {e.label: {k: np.full((runs.size, n, steps), np.nan) for k in ("mean", "lo80", "hi80")} for e in engines}
    starts = np.zeros(runs.size, np.int64)
    t0 = time.perf_counter()
    for r, now in enumerate(runs.tolist()):
        end = -(-now // step) * step
        lo, hi = np.searchsorted(ts, end - length * step), np.searchsorted(ts, now, side="right")
        prepared = prepare_panel(sid[lo:hi], ts[lo:hi], val[lo:hi], step_ns=step, end_ns=end, length=length,
                                 rules=rules, series_ids=np.arange(n))
        p = prepared.panel
        exog = None if weather is None else weather_exog(weather, n, step_ns=step, end_ns=end, length=length,
                                                         horizon=horizon, rules=rules, now_ns=now)
        prepared.panel = Panel(p.series_ids, p.start_ns, p.step_ns, p.values, exog, tz)
        starts[r] = end
        for eng in engines:
            res = serve(eng, prepared, now, cfg, horizon=horizon, season=season, min_steps=min_steps)
            rows = res.series_ids.astype(np.intp)
            for k in ("mean", "lo80", "hi80"):
                fc[eng.label][k][r, rows] = getattr(res, k)[:, :steps]
    secs = time.perf_counter() - t0
    info = {e.label: {"refits": e.refits, "gate_promoted": e.promoted, "gate_kept": e.kept,
                      "served": dict(e.served)} for e in engines}
    return Replay(names, runs, starts, step, fc, info, secs)


def probabilities(rep: Replay, engine: str, s: int, threshold: float, horizon_h: float) -> np.ndarray:
    """Per run: the highest step probability of being above `threshold` in (now, now + H]
    (`rules.step_probability`, as `crossing` computes it), NaN where the run has none."""
    f = rep.forecasts[engine]
    ts = rep.start_ns[:, None] + rep.step_ns * np.arange(f["mean"].shape[2])[None, :]
    sel = (ts > rep.run_ns[:, None]) & (ts <= rep.run_ns[:, None] + int(horizon_h * HOUR_NS))
    p = step_probability(f["mean"][:, s], f["lo80"][:, s], f["hi80"][:, s], threshold, True)
    p = np.where(sel, p, np.nan)
    with np.errstate(all="ignore"):
        out = np.nanmax(np.where(np.isfinite(p), p, -1.0), axis=1)
    return np.where(out >= 0, out, np.nan)


def crossing_probabilities(rep: Replay, engine: str, s: int, rule: RuleConfig) -> np.ndarray:
    """Per run: `alerts.rules.crossing(...).probability` of the stored forecast (the shipped path)."""
    f = rep.forecasts[engine]
    out = np.full(rep.run_ns.size, np.nan)
    steps = np.arange(f["mean"].shape[2])
    for r in range(rep.run_ns.size):
        pts = pd.DataFrame({"ts": rep.start_ns[r] + rep.step_ns * steps, "mean": f["mean"][r, s],
                            "lo80": f["lo80"][r, s], "hi80": f["hi80"][r, s]})
        c = crossing(pts, int(rep.run_ns[r]), int(rule.horizon_h * HOUR_NS), rule, int(rep.run_ns[r]))
        if c is not None:
            out[r] = c.probability
    return out


# ---------------------------------------------------------------- evaluation


def episode_shape(ts: np.ndarray, values: np.ndarray, eps: Sequence[Episode], threshold: float,
                  bin_ns: int) -> dict[str, float]:
    """What the actual crossings look like: the median minutes of readings above the threshold per
    episode, the share of episodes with at most two such readings (10 min at 5-minute readings),
    and the share in which some forecast-grid bin's mean (what a forecast step forecasts) is above it."""
    spacing = float(np.median(np.diff(ts))) if len(ts) > 1 else float(bin_ns)
    means = pd.Series(values).groupby(ts // bin_ns).mean()
    minutes, short, bin_above = [], 0, 0
    for e in eps:
        end = e.end_ns if e.end_ns is not None else int(ts[-1])
        sel = (ts >= e.start_ns) & (ts <= end)
        above = int(np.sum(values[sel] > threshold))
        minutes.append(above * spacing / MIN_NS)
        short += above <= 2
        bins = means.loc[e.start_ns // bin_ns: end // bin_ns]
        bin_above += bool((bins > threshold).any())
    n = max(len(eps), 1)
    return {"episode_minutes_above_median": float(np.median(minutes)) if minutes else float("nan"),
            "episodes_short_share": short / n, "episodes_bin_mean_above_share": bin_above / n}


def reliability(run_ns: np.ndarray, probability: np.ndarray, ts: np.ndarray, values: np.ndarray, threshold: float,
                horizon_ns: int, last_ns: int) -> np.ndarray:
    """(2, bins): per bin of the rule's probability, the runs in it and those after which a reading
    was above the threshold within the horizon (runs whose horizon ends by `last_ns`)."""
    above = np.concatenate([[0], np.cumsum(values > threshold)])
    lo = np.searchsorted(ts, run_ns, side="right")
    hi = np.searchsorted(ts, run_ns + horizon_ns, side="right")
    hit = above[hi] - above[lo] > 0
    ok = np.isfinite(probability) & (run_ns <= last_ns - horizon_ns)
    idx = np.clip(np.digitize(probability[ok], RELIABILITY_BINS) - 1, 0, RELIABILITY_BINS.size - 2)
    out = np.zeros((2, RELIABILITY_BINS.size - 1), dtype=np.int64)
    np.add.at(out[0], idx, 1)
    np.add.at(out[1], idx, hit[ok].astype(np.int64))
    return out




def replay_span(ts: np.ndarray, tz: str, days: int = 0) -> tuple[int, int]:
    """(first, last): the first local midnight with 14 days of readings before it, and the last
    reading (or `days` after the first)."""
    first = int(fa.local_midnights(int(ts.min()) + 14 * DAY_NS, int(ts.min()) + 15 * DAY_NS, tz)[0])
    last = int(ts.max())
    return first, (min(last, first + days * DAY_NS) if days else last)


def score_series(rep: Replay, s: int, t: np.ndarray, v: np.ndarray, tz: str, first: int, last: int,
                 quantile: float, for_s: int = 0) -> tuple[dict[str, Any], dict[str, Match], dict[str, Match], float]:
    """One series: its threshold, and the matches of every rule. Returns (row for the table,
    matches at the defaults by rule, matches of the sweep by key, max |crossing() - vectorised|)."""
    thr, days, n_days = pick_threshold(t, v, tz, first, last, quantile, for_s=for_s)
    actual = level_episodes(t, v, actual_rule(thr, for_s=for_s))
    cross = [e.start_ns for e in actual]
    row: dict[str, Any] = {"series": rep.names[s], "threshold": thr, "crossing_days": days, "days": n_days,
                           "daily_max_median": round(float(daily_maxima(t, v, tz, first, last).median()), 2)}
    row.update(episode_shape(t, v, [e for e in actual if first + DEFAULT_H * HOUR_NS <= e.start_ns <= last], thr,
                             rep.step_ns))
    at_default: dict[str, Match] = {}
    sweep: dict[str, Match] = {}
    check = 0.0
    h_ns = int(DEFAULT_H * HOUR_NS)
    for eng in rep.forecasts:
        rule = forecast_rule(thr)
        p_rule = crossing_probabilities(rep, eng, s, rule)  # the shipped path, at every run
        p_vec = probabilities(rep, eng, s, thr, DEFAULT_H)
        if not np.array_equal(np.isfinite(p_rule), np.isfinite(p_vec)):
            raise RuntimeError(f"{rep.names[s]}: crossing() and step_probability disagree on which runs have one")
        both = np.isfinite(p_rule)
        check = max(check, float(np.max(np.abs(p_rule[both] - p_vec[both]), initial=0.0)))
        at_default[eng] = match(forecast_episodes(rep.run_ns, p_rule, rule), cross, h_ns, first, last)
        row[f"{eng} reliability"] = reliability(rep.run_ns, p_rule, t, v, thr, h_ns, last).tolist()
        for h in HORIZONS_H:
            ph = p_rule if h == DEFAULT_H else probabilities(rep, eng, s, thr, h)
            for p in PROBABILITIES:
                sweep[f"{eng}|H={h:g}|p={p:g}"] = match(forecast_episodes(rep.run_ns, ph, forecast_rule(thr, h, p)),
                                                        cross, int(h * HOUR_NS), first, last)
    for margin in EARLY_MARGINS:
        warn = level_episodes(t, v, actual_rule(thr, margin))
        for h in HORIZONS_H:
            sweep[f"early warning {margin:g} degC|H={h:g}"] = match(warn, cross, int(h * HOUR_NS), first, last)
    at_default[EARLY] = sweep[f"{EARLY}|H={DEFAULT_H:g}"]
    row.update({k: m.as_dict() for k, m in at_default.items()})
    return row, at_default, sweep, check


def evaluate(spec: fa.DataSpec, args: argparse.Namespace) -> dict[str, Any]:
    names, sid, ts, val = load_air(spec)
    first, last = replay_span(ts, spec.tz, args.days)
    steps = int(max(HORIZONS_H) * HOUR_NS // (ForecastConfig().step_min * MIN_NS)) + 1
    role = getattr(args, "weather", "none")
    if role != "none" and spec.weather is None:
        weather, used = None, f"none: {spec.name} has no weather in forecast_accuracy's DataSpec"
    else:
        weather = None if role == "none" else load_weather(spec, role)
        used = WEATHER[role] + ("" if weather is None else f" ({', '.join(weather.names)})")
    rep = replay(names, sid, ts, val, spec.tz, first, last, steps, args.every_min * MIN_NS, not args.no_gate,
                 weather=weather)
    per_series: list[dict[str, Any]] = []
    pooled: dict[str, Match] = {}
    sweep: dict[str, Match] = {}
    check = 0.0
    for s in range(len(names)):
        sel = (sid == s) & (ts <= last)
        row, at_default, sw, c = score_series(rep, s, ts[sel], val[sel], spec.tz, first, last, args.quantile,
                                              args.actual_for_min * 60)
        per_series.append(row)
        check = max(check, c)
        for k, m in at_default.items():
            pooled[k] = pooled.get(k, Match(0, 0, 0, 0)) + m
        for k, m in sw.items():
            sweep[k] = sweep.get(k, Match(0, 0, 0, 0)) + m
    if check > 1e-9:
        raise RuntimeError(f"crossing() and the vectorised step probability differ by {check:g}")
    fmt = "%Y-%m-%d %H:%M %Z"
    info = {
        "series": len(names),
        "replay_first": f"{pd.Timestamp(first, tz='UTC').tz_convert(spec.tz):{fmt}}",
        "replay_last": f"{pd.Timestamp(last, tz='UTC').tz_convert(spec.tz):{fmt}}",
        "runs": int(rep.run_ns.size),
        "every_min": args.every_min,
        "actual_for_min": args.actual_for_min,
        "weather": used,
        "replay_s": round(rep.seconds, 1),
        "engines": rep.info,
        "max_abs_crossing_vs_vectorised": check,
    }
    out = {"info": info, "per_series": per_series, "pooled": pooled, "sweep": sweep}
    print_dataset(spec, out)
    return out


def print_dataset(spec: fa.DataSpec, out: dict[str, Any]) -> None:
    info = out["info"]
    print(f"\n### {spec.name}: {spec.path.name} ({spec.series_cols[0]}; {spec.tz})")
    print(f"{info['series']} series; runs every {info['every_min']} min from {info['replay_first']} to "
          f"{info['replay_last']} ({info['runs']} runs, replayed in {info['replay_s']} s)")
    print(f"forecast inputs: {info.get('weather', WEATHER['none'])}")
    for eng, e in info["engines"].items():
        print(f"  {eng}: {e['refits']} refits, gate promoted {e['gate_promoted']} / kept production "
              f"{e['gate_kept']}; forecasts served by {', '.join(f'{k} {v}' for k, v in sorted(e['served'].items()))}")
    print(f"  crossing() against the vectorised step probability: max |difference| "
          f"{info['max_abs_crossing_vs_vectorised']:.1e}")
    print(f"\nAt the shipped defaults (horizon_h {DEFAULT_H:g}, probability {DEFAULT_P:g}, clear_p {DEFAULT_P / 2:g}):"
          " alerts counted (true), precision; crossings recalled / counted, recall; median lead min\n")
    print("| series | threshold degC | crossing days / days | forecast rule: alerts | precision | recall | median lead |"
          " seasonal naive: precision | recall | lead | early warning -1 degC: alerts | precision | recall | lead |")
    print("| --- " * 14 + "|")
    for row in out["per_series"]:
        a, n, w = row[AUTO], row[NAIVE], row[EARLY]
        print(f"| {row['series']} | {row['threshold']:.1f} | {row['crossing_days']} / {row['days']} | "
              f"{a['alerts']} ({a['true_alerts']}) | {_f(a['precision'])} | {a['recalled']}/{a['crossings']} "
              f"{_f(a['recall'])} | {_f(a['median_lead_min'], 0)} | {_f(n['precision'])} | {_f(n['recall'])} | "
              f"{_f(n['median_lead_min'], 0)} | {w['alerts']} | {_f(w['precision'])} | {_f(w['recall'])} | "
              f"{_f(w['median_lead_min'], 0)} |")
    p = out["pooled"]
    a, n, w = p[AUTO], p[NAIVE], p[EARLY]
    print(f"| **pooled** | | {sum(r['crossing_days'] for r in out['per_series'])} / "
          f"{sum(r['days'] for r in out['per_series'])} | {a.alerts} ({a.true_alerts}) | {_f(a.precision)} | "
          f"{a.recalled}/{a.crossings} {_f(a.recall)} | {_f(a.median_lead_min, 0)} | {_f(n.precision)} | "
          f"{_f(n.recall)} | {_f(n.median_lead_min, 0)} | {w.alerts} | {_f(w.precision)} | {_f(w.recall)} | "
          f"{_f(w.median_lead_min, 0)} |")
    print("\nThe counted crossings: the median of the daily maxima; median minutes of readings above the threshold per"
          " episode, share of episodes with at most 2 readings above it, share in which a"
          f" {ForecastConfig().step_min}-minute mean (what a forecast step forecasts) is above it\n")
    print("| series | threshold | median daily max | crossings | median min above | <= 2 readings | a bin mean above |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in out["per_series"]:
        print(f"| {row['series']} | {row['threshold']:.1f} | {row['daily_max_median']:.2f} | {row[AUTO]['crossings']} | "
              f"{_f(row['episode_minutes_above_median'], 0)} | {_f(row['episodes_short_share'])} | "
              f"{_f(row['episodes_bin_mean_above_share'])} |")


def _f(x: float | None, nd: int = 2) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"


def sweep_rows(sweep: dict[str, Match]) -> list[tuple[str, str, str, Match]]:
    """(rule, H, p, match) of the printed sweep: greennanny at every H and p, the seasonal naive
    and the early-warning levels at the default H (the JSON has them all)."""
    out = []
    for key, m in sweep.items():
        eng, *rest = key.split("|")
        h = rest[0].removeprefix("H=")
        p = rest[1].removeprefix("p=") if len(rest) > 1 else "-"
        if eng == AUTO or float(h) == DEFAULT_H:
            out.append((eng, h, p, m))
    return out


def print_sweep(title: str, sweep: dict[str, Match]) -> None:
    print(f"\n{title}: alerts (true), precision, crossings recalled / counted, recall, median lead min\n")
    print("| rule | H h | p | alerts | precision | recall | median lead | meets targets |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for eng, h, p, m in sweep_rows(sweep):
        star = "**" if (eng == AUTO and float(h) == DEFAULT_H and p != "-" and float(p) == DEFAULT_P) else ""
        print(f"| {star}{eng}{star} | {h} | {p} | {m.alerts} ({m.true_alerts}) | {_f(m.precision)} | "
              f"{m.recalled}/{m.crossings} {_f(m.recall)} | {_f(m.median_lead_min, 0)} | {'yes' if meets(m) else 'no'} |")


def print_reliability(rows: list[dict[str, Any]]) -> None:
    """The rule's probability against what followed, pooled over every series (defaults)."""
    print(f"\nReliability of the forecast rule's probability (H {DEFAULT_H:g} h), every run of every series: share of"
          " runs after which a reading was above the threshold within H\n")
    print("| probability | " + " | ".join(f"runs ({e})" for e in (AUTO, NAIVE)) + " | "
          + " | ".join(f"above within H ({e})" for e in (AUTO, NAIVE)) + " |")
    print("| --- " * 5 + "|")
    tables = {e: np.sum([np.asarray(r[f"{e} reliability"]) for r in rows], axis=0) for e in (AUTO, NAIVE)}
    for i in range(RELIABILITY_BINS.size - 1):
        runs = [int(tables[e][0, i]) for e in (AUTO, NAIVE)]
        share = [_f(tables[e][1, i] / tables[e][0, i]) if tables[e][0, i] else "-" for e in (AUTO, NAIVE)]
        print(f"| {RELIABILITY_BINS[i]:.1f}-{RELIABILITY_BINS[i + 1]:.1f} | {runs[0]} | {runs[1]} | {share[0]} | "
              f"{share[1]} |")


def meets(m: Match) -> bool:
    return bool(m.median_lead_min >= TARGETS["lead_min"] and m.precision >= TARGETS["precision"]
                and m.recall >= TARGETS["recall"])


def ratio(a: float, b: float) -> float:
    return a / b if b and np.isfinite(a) and np.isfinite(b) else float("nan")


def _evaluate_job(name: str, args: argparse.Namespace) -> tuple[str, dict[str, Any], str]:
    """One data set in a worker process; its printed table is returned to be printed in order."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        out = evaluate(next(s for s in DATASETS if s.name == name), args)
    return name, out, buf.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--quantile", type=float, default=0.8, help="quantile of the daily maxima that sets each threshold")
    ap.add_argument("--every-min", type=int, default=ForecastConfig().refresh_min,
                    help="minutes between forecast runs (the node's refresh_min, 15)")
    ap.add_argument("--actual-for-min", type=int, default=0,
                    help="a crossing counts when the readings stay above the threshold this long (the actual rule's "
                         "for_s; default 0: any reading above); its time is still the first reading above")
    ap.add_argument("--days", type=int, default=0, help="replay only this many days (0: to the end; for a quick look)")
    ap.add_argument("--datasets", default=",".join(s.name for s in DATASETS), help="comma-separated data set names")
    ap.add_argument("--no-gate", action="store_true", help="every refit goes live (the node's gate is on by default)")
    ap.add_argument("--jobs", type=int, default=1, help="data sets replayed in parallel processes (1 or 2 here)")
    ap.add_argument("--weather", choices=tuple(WEATHER), default="none",
                    help="outside weather as forecast inputs: none (default, the node's defaults); lagged (observed "
                         "up to each run); known (ORACLE: the measured weather at the forecast's steps standing in "
                         "for a perfect weather forecast, an optimistic upper bound)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    wanted = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = set(wanted) - {s.name for s in DATASETS}
    if unknown:
        ap.error(f"unknown data set(s) {sorted(unknown)}; known: {[s.name for s in DATASETS]}")
    t0 = time.perf_counter()
    env = fa.machine()
    env.pop("statsforecast", None)
    print(f"forecast alerts, {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC; "
          + ", ".join(f"{k} {v}" for k, v in env.items()))
    print(f"thresholds: the {args.quantile:g} quantile of each series' daily maxima (0.1 degC), >= {MIN_CROSSING_DAYS}"
          f" crossing days; actual rule clears {CLEAR_MARGIN:g} degC below. Matching window H = the rule's horizon.")
    print(f"forecast inputs (--weather {args.weather}): {WEATHER[args.weather]}")
    results: dict[str, dict[str, Any]] = {}
    if args.jobs > 1 and len(wanted) > 1:
        with ProcessPoolExecutor(max_workers=min(args.jobs, len(wanted))) as pool:
            done = {n: (o, text) for n, o, text in pool.map(_evaluate_job, wanted, [args] * len(wanted))}
        for n in wanted:
            print(done[n][1], end="")
            results[n] = done[n][0]
    else:
        for n in wanted:
            results[n] = evaluate(next(s for s in DATASETS if s.name == n), args)
    total: dict[str, Match] = {}
    sweep: dict[str, Match] = {}
    for out in results.values():
        for k, m in out["pooled"].items():
            total[k] = total.get(k, Match(0, 0, 0, 0)) + m
        for k, m in out["sweep"].items():
            sweep[k] = sweep.get(k, Match(0, 0, 0, 0)) + m
    for name, out in results.items():
        print_sweep(f"{name}, pooled over its series: the forecast rule over H and p, the baselines at H "
                    f"{DEFAULT_H:g}", out["sweep"])
    if len(results) > 1:
        print_sweep("Both data sets, pooled", sweep)
    print_reliability([r for o in results.values() for r in o["per_series"]])
    a, n, w = total[AUTO], total[NAIVE], total[EARLY]
    print(f"\nPooled over {', '.join(results)} at the defaults (H {DEFAULT_H:g} h, p {DEFAULT_P:g}): greennanny "
          f"precision {_f(a.precision)}, recall {_f(a.recall)} ({a.recalled}/{a.crossings}), median lead "
          f"{_f(a.median_lead_min, 0)} min over {a.alerts} alerts; seasonal naive {_f(n.precision)} / {_f(n.recall)} / "
          f"{_f(n.median_lead_min, 0)}; early warning at -1 degC {_f(w.precision)} / {_f(w.recall)} / "
          f"{_f(w.median_lead_min, 0)}")
    q = a.lead_quartiles()
    print(f"greennanny's lead times at the defaults: quartiles {' / '.join(f'{x:.0f}' for x in q) if q else '-'} min; "
          f"{a.open_only} of {a.recalled} recalled crossings by an alert that fired more than H before, still open")
    print(f"ratios greennanny / seasonal naive: precision {_f(ratio(a.precision, n.precision))}, recall "
          f"{_f(ratio(a.recall, n.recall))}, lead {_f(ratio(a.median_lead_min, n.median_lead_min))}; greennanny / "
          f"early warning: precision {_f(ratio(a.precision, w.precision))}, recall {_f(ratio(a.recall, w.recall))}, "
          f"lead {_f(ratio(a.median_lead_min, w.median_lead_min))}")
    print(f"targets: median lead >= {TARGETS['lead_min']:g} min at precision >= {TARGETS['precision']:g} and recall >= "
          f"{TARGETS['recall']:g}")
    met: dict[str, list[str]] = {}
    for name, o in [*results.items(), *([("both data sets", {"sweep": sweep, "pooled": total})]
                                         if len(results) > 1 else [])]:
        met[name] = [k for k, m in o["sweep"].items() if meets(m) and not k.startswith("early")]
        print(f"  {name}: at the defaults {'met' if meets(o['pooled'][AUTO]) else 'not met'}; forecast settings "
              f"that meet them: {', '.join(met[name]) or 'none'}")
    wall = time.perf_counter() - t0
    print(f"\nwall time {wall:.1f} s")
    if args.json:
        def dump(d: dict[str, Match]) -> dict[str, Any]:
            return {k: m.as_dict() for k, m in d.items()}

        print(json.dumps({
            "machine": env,
            "protocol": {"quantile": args.quantile, "every_min": args.every_min, "actual_for_min": args.actual_for_min,
                         "days": args.days, "weather": args.weather,
                         "gate": not args.no_gate, "default_horizon_h": DEFAULT_H, "default_probability": DEFAULT_P,
                         "clear_margin": CLEAR_MARGIN, "targets": TARGETS},
            "datasets": {k: {"info": o["info"], "per_series": o["per_series"], "pooled": dump(o["pooled"]),
                             "sweep": dump(o["sweep"])} for k, o in results.items()},
            "pooled": dump(total),
            "sweep": dump(sweep),
            "targets_met_at_defaults": meets(a),
            "settings_meeting_targets": met,
            "wall_s": round(wall, 1),
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
