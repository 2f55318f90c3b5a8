"""MLOps benchmark at 10,000 series (issue 6 point 2).

Sets up a store with `--series` series of 5-minute readings (two days) and a day of hourly
forecast runs with a 24 h horizon (24 runs x 24 steps per series, as a node refreshing hourly
stores them), then times what the node does with its models:
- register one training run (`Registry.register_run`: one version per series, its artifact
  written and fsynced, the production alias moved with history, one audit row), `--runs` times;
- load every production version at a restart (each artifact checked by sha256);
- roll every series back to its previous version in one command;
- score the day of forecasts against the actuals (`mlops.scoring.Scorer.score`);
- health-check every model (`mlops.health.health`: live MASE, coverage, status per series);
- one monitoring round as the node runs it after each forecast run (`mlops.monitor.Monitor`:
  the step check on every series' last 9.5 h of readings against 20 peers each, stuck and silent
  from the quality reports, Page-Hinkley and decay on the live scores), with a +3 degC offset
  injected into 10 series that it must find.
The models are the node's blend on a 24 h horizon at 15 min (96 interval widths each).

Printed: seconds per step (the median over the runs for registration), the artifact bytes per
run, and the disk a day costs: the store file's growth from a day of forecasts and their scores,
plus one run's registry rows and artifact (one refit a day, `[forecast] refit_h = 24`).
Targets (issue 6): register a run in under 10 s; score the day in under 30 s.

Run: .venv/bin/python bench/mlops.py [--series 10000] [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from greennanny.config import RetentionConfig
from greennanny.forecast.panel import Panel
from greennanny.forecast.quality import QualityReport
from greennanny.forecast.refresh import Choice
from greennanny.mlops.events import Events
from greennanny.mlops.health import health
from greennanny.mlops.monitor import Monitor
from greennanny.mlops.registry import Registry, lineage_of
from greennanny.mlops.scoring import Scorer
from greennanny.model import Batch, SeriesKey
from greennanny.store.duckdb import DuckDBStore

RAW_B_PER_POINT = 1.51  # the raw tier on the same kind of data (bench/store.py, docs/benchmarks.md)
STEP = 900 * 10**9
H = 96  # 24 h at 15 min
END = 1_767_225_600 * 10**9  # the end of the scored day: 2026-01-01T00:00Z
DAY = 86_400 * 10**9


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5, help="training runs registered (each times one registration)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    n = args.series
    with tempfile.TemporaryDirectory(prefix="gn-mlops-bench-", dir=os.environ.get("BENCH_TMP")) as tmp:
        store = DuckDBStore(Path(tmp) / "store.duckdb")
        keys = [SeriesKey("bench", f"zone{i // 10:04d}", f"dev{i:05d}", "air_temperature") for i in range(n)]
        day0 = END - 2 * DAY  # readings over two days (the scored day and the day before, for the naive)
        t5 = day0 + np.arange(2 * 288, dtype=np.int64) * 300 * 10**9
        phase = rng.uniform(0, 2 * np.pi, n)
        level = rng.normal(0, 1.0, (n, 2))  # each day's own level (the weather), so yesterday is no oracle
        for part in np.array_split(np.arange(len(t5)), 48):  # time-major batches, as ingest writes them
            ts = np.repeat(t5[part], n)
            idx = np.tile(np.arange(n, dtype=np.int32), len(part))
            hours = (ts % DAY) / 3.6e12
            val = np.round(20 + level[idx, (ts - day0) // DAY] + 3 * np.sin(hours / 24 * 2 * np.pi + phase[idx])
                           + rng.normal(0, 0.3, len(ts)), 2)
            faulty = (idx % 1000 == 7) & (ts >= END - 6 * 3600 * 10**9 + 2)  # 10 series: a knocked probe
            val = np.where(faulty, val + 3.0, val)
            store.write(Batch(keys, idx, ts, val, np.zeros(len(ts), np.uint8), {}))
        sids = sorted(s.id for s in store.series())
        store.checkpoint()
        size0 = store.path.stat().st_size
        write_day_of_forecasts(store, sids, END - DAY, rng, phase, level[:, 1])
        store.checkpoint()
        file_before = store.path.stat().st_size
        forecast_day_bytes = file_before - size0
        reg = Registry(store)
        register_s: list[float] = []
        artifact_bytes: list[int] = []
        for run in range(1, args.runs + 1):
            values = rng.normal(20, 3, (n, 28 * 96))  # the training window the lineage hashes
            panel = Panel(np.array(sids, np.int64), END - values.shape[1] * STEP, STEP, values)
            choices = {s: Choice("blend", 0.3 + 0.01 * run, 0.85, "ets", 0.9, np.sort(rng.uniform(0.2, 1.5, H)),
                                 np.sort(rng.uniform(0.4, 2.5, H)),
                                 {"w_ets": 0.3, "w_profile3": 0.2, "w_profile7": 0.3, "w_lagreg": 0.2})
                       for s in sids}
            before = dir_bytes(Path(tmp))
            t0 = time.perf_counter()
            lin = lineage_of(panel)
            got = reg.register_run(run, END + run * 3600 * 10**9, choices, lin, step_ns=STEP, horizon=H,
                                   trained_by="schedule", reason="refit")
            register_s.append(time.perf_counter() - t0)
            store.checkpoint()
            artifact_bytes.append((reg.directory / f"run-{run:08d}.parquet").stat().st_size)
            assert len(got) == n
            print(f"  run {run}: registered {n:,} versions in {register_s[-1]:.2f} s "
                  f"(disk +{(dir_bytes(Path(tmp)) - before) / 1e6:.1f} MB)", file=sys.stderr)
        t0 = time.perf_counter()
        loaded = reg.load_production(now_ns=END + 10**12)
        load_s = time.perf_counter() - t0
        assert len(loaded.choices) == n and not loaded.notes
        t0 = time.perf_counter()
        moved = reg.rollback(None, None, actor="bench", reason="bench", now_ns=END + 2 * 10**12)
        rollback_s = time.perf_counter() - t0
        assert all(m["to"] == args.runs - 1 for m in moved) if args.runs > 1 else True
        t0 = time.perf_counter()
        scored = Scorer(store).score(END + 30 * 60 * 10**9)
        score_s = time.perf_counter() - t0
        assert scored.forecast_steps == n * 24 * 24 - n * (24 * 25 // 2 - 24) - scored.without_actual
        t0 = time.perf_counter()
        checked = health(store, END, days=7)
        health_s = time.perf_counter() - t0
        assert len(checked["series"]) == n
        every = store.series()
        reports = {x.id: QualityReport(x.id, points=2 * 288, observed_steps=2 * 96) for x in every}
        t0 = time.perf_counter()
        round_ = Monitor(store).check(END, every, reports, step_ns=STEP, window_ns=2 * DAY)
        monitor_s = time.perf_counter() - t0
        steps = [e for e in Events(store).list(category="sensor_fault", limit=100_000) if e["kind"] == "step"]
        store.checkpoint()

        day_bytes = store.path.stat().st_size - file_before
        store.close()
    reg_med = statistics.median(register_s)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    print(f"{n:,} series, {args.runs} runs of 24 h x 15 min models")
    print(f"register one run (artifact, versions, aliases, history, audit): median {reg_med:.2f} s "
          f"(runs {', '.join(f'{s:.2f}' for s in register_s)}; target < 10 s)")
    print(f"load every production version at a restart (sha256 checked): {load_s:.2f} s")
    print(f"roll every series back to its previous version: {rollback_s:.2f} s")
    print(f"score a day of forecasts (24 hourly runs x 24 h): {score_s:.2f} s for {scored.forecast_steps:,} steps "
          f"({scored.without_actual:,} without a reading yet; target < 30 s)")
    print(f"health-check every model (7 days): {health_s:.2f} s; {checked['counts']}")
    print(f"one monitoring round (steps, stuck, silent, drift, decay): {monitor_s:.2f} s; {len(round_.opened)} events, "
          f"{len(steps)} steps found of the {len(range(7, n, 1000))} injected")
    reg_day = day_bytes / args.runs + statistics.median(artifact_bytes)
    ret = RetentionConfig()
    per_step = forecast_day_bytes / (n * 24 * 24)
    hot_days = ret.forecasts_thin_after_h / 24
    kept_steps = n * 24 * (hot_days * 24 + (ret.forecasts_days - hot_days) * 1)  # thinned: one run a day (+ the latest)
    raw_bytes = ret.raw_days * n * 288 * RAW_B_PER_POINT
    print(f"forecast storage: {per_step:.1f} B a step; under the default retention ({ret.forecasts_thin_after_h} h of "
          f"every run, then one a day to {ret.forecasts_days} days) {kept_steps * per_step / 1e6:.1f} MB, against "
          f"{raw_bytes / 1e6:.1f} MB of raw tier ({ret.raw_days} days of 5-min readings at {RAW_B_PER_POINT} B/pt, "
          f"bench/store.py): ratio {kept_steps * per_step / raw_bytes:.2f}")
    print(f"disk a day: a day of forecasts {forecast_day_bytes / 1e6:.1f} MB of store file; scores, registry rows "
          f"and audit of {args.runs} runs {day_bytes / 1e6:.1f} MB; one run's artifact "
          f"{statistics.median(artifact_bytes) / 1e6:.2f} MB (one refit a day: "
          f"{(forecast_day_bytes + reg_day) / 1e6:.1f} MB a day in all)")
    if args.json:
        print(json.dumps({"series": n, "runs": args.runs, "register_s_median": round(reg_med, 3),
                          "register_s": [round(s, 3) for s in register_s], "load_production_s": round(load_s, 3),
                          "rollback_all_s": round(rollback_s, 3), "score_day_s": round(score_s, 3),
                          "scored_steps": scored.forecast_steps, "health_s": round(health_s, 3),
                          "monitor_s": round(monitor_s, 3), "steps_found": len(steps),
                          "artifact_bytes_per_run": int(statistics.median(artifact_bytes)),
                          "forecast_day_bytes": int(forecast_day_bytes),
                          "registry_and_scores_bytes": int(day_bytes), "forecast_bytes_per_step": round(per_step, 2),
                          "forecast_steady_state_bytes": int(kept_steps * per_step), "raw_tier_bytes": int(raw_bytes), "disk_bytes_per_day": int(forecast_day_bytes + reg_day)}))


def write_day_of_forecasts(store: DuckDBStore, sids: list[int], start: int, rng: np.random.Generator,
                           phase: np.ndarray, level: np.ndarray) -> None:
    """24 hourly runs from `start`, 24 hourly steps each, for every series (the truth plus noise)."""
    n = len(sids)
    for k in range(24):
        made = start + k * 3600 * 10**9
        ts = made + np.arange(24, dtype=np.int64) * 3600 * 10**9
        hours = (ts % DAY) / 3.6e12 + 0.5
        mean = (20 + level[:, None] + 3 * np.sin(hours[None, :] / 24 * 2 * np.pi + phase[:, None])
                + rng.normal(0, 0.3, (n, 24)))
        half = np.linspace(0.5, 1.0, 24)[None, :]
        runs = pd.DataFrame({"run_id": np.full(n, 1000 + k, np.int64), "series_id": np.asarray(sids, np.int32),
                             "made_ns": np.full(n, made, np.int64), "start_ns": np.full(n, made, np.int64),
                             "step_ns": np.full(n, 3600 * 10**9, np.int64), "horizon": np.full(n, 24, np.int32),
                             "model": ["blend"] * n, "backtest_mae": np.full(n, 0.4), "backtest_mase": np.full(n, 0.8),
                             "runner_up": ["ets"] * n, "runner_up_mase": np.full(n, 0.9), "fallback_reason": [None] * n})
        pts = pd.DataFrame({"run_id": np.full(n * 24, 1000 + k, np.int64),
                            "series_id": np.repeat(np.asarray(sids, np.int32), 24), "ts": np.tile(ts, n),
                            "mean": mean.ravel(), "lo80": (mean - half).ravel(), "hi80": (mean + half).ravel(),
                            "lo95": (mean - 2 * half).ravel(), "hi95": (mean + 2 * half).ravel()})
        store.write_forecasts(runs, pts)


if __name__ == "__main__":
    main()
