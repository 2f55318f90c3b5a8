"""MLOps benchmark: the model registry at 10,000 series (issue 6 point 2, the steps built so far).

Sets up a store with `--series` series and registers `--runs` training runs of them as the node's
forecast service does at a refit (one version per series per run, its artifact written, the
production alias moved, one audit row: `Registry.register_run`), then times what a node and an
operator do with them: load every production version at a restart (artifacts checked by sha256),
and roll every series back to its previous version in one command. The choices are those of the
node's blend model on a 24 h horizon at 15 min (96 interval widths each), parameters included.

Printed: seconds per step (median over the runs for registration), the artifact bytes per run and
the registry's bytes on disk per run, so "disk used per day" is that times the refits a day
(`24 / [forecast] refit_h`). Not yet here (issue 6, still open): scoring a day of forecasts
against actuals and the health check of all models, which come with live accuracy monitoring.

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

from greennanny.forecast.panel import Panel
from greennanny.forecast.refresh import Choice
from greennanny.mlops.registry import Registry, lineage_of
from greennanny.model import Batch, SeriesKey
from greennanny.store.duckdb import DuckDBStore

STEP = 900 * 10**9
H = 96  # 24 h at 15 min
END = 1_767_225_600 * 10**9


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
        idx = np.arange(n, dtype=np.int32)
        store.write(Batch(keys, idx, np.full(n, END, np.int64), np.full(n, 20.0), np.zeros(n, np.uint8), {}))
        sids = sorted(s.id for s in store.series())
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
        store.checkpoint()
        total = dir_bytes(Path(tmp))
        store.close()
    per_run = total / args.runs
    reg_med = statistics.median(register_s)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    print(f"{n:,} series, {args.runs} runs of 24 h x 15 min models")
    print(f"register one run (artifact, versions, aliases, history, audit): median {reg_med:.2f} s "
          f"(runs {', '.join(f'{s:.2f}' for s in register_s)}; target < 10 s)")
    print(f"load every production version at a restart (sha256 checked): {load_s:.2f} s")
    print(f"roll every series back to its previous version: {rollback_s:.2f} s")
    print(f"artifact {statistics.median(artifact_bytes) / 1e6:.2f} MB a run; store + artifacts {per_run / 1e6:.1f} MB "
          f"a run (with 1 refit a day, that a day)")
    if args.json:
        print(json.dumps({"series": n, "runs": args.runs, "register_s_median": round(reg_med, 3),
                          "register_s": [round(s, 3) for s in register_s], "load_production_s": round(load_s, 3),
                          "rollback_all_s": round(rollback_s, 3),
                          "artifact_bytes_per_run": int(statistics.median(artifact_bytes)),
                          "disk_bytes_per_run": int(per_run)}))


if __name__ == "__main__":
    main()
