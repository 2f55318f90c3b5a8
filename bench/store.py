"""Store benchmark: greennanny's DuckDB store beside SQLite (WAL) and Parquet+zstd, same points.

Data: the AGC 2018 greenhouse climate (Tair, RHair, CO2air of six compartments, 5 min) read from
../shared/data, repeated across `--series` series by shifting whole days (no added noise): series
i is base series i mod 18, rolled by i // 18 days, tiled to `--points / --series` steps. Points go
in as live ingest sends them: time-major batches of `--batch` rows (10,000) through `Store.write`,
as the node does: hot rows take the writes, and at each simulated midnight the node's compaction
moves the days older than 48 h to the cold tier and builds their rollups (design 003). Printed for greennanny: points/s of the
writes alone and of writes plus the compaction that rolls them up (the honest figure for a store
that must also roll up), and the compaction's own time.

Printed: write throughput, bytes per point of the raw tier (at storage resolution, and the same
points as doubles for reference), query latency p50/p95 of "last 24 h at 5 min of one series",
"one year at 1 h of one series" and "7 days of all series into a pandas frame", each beside the
same numbers for SQLite (WAL, executemany in one transaction per batch, primary key (series, ts),
WITHOUT ROWID) and Parquet+zstd (pyarrow defaults, one file per day, read by DuckDB), with ratios.

Run: .venv/bin/python bench/store.py [--points 50000000] [--series 1000] [--repeat 30] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from greennanny.model import Batch, SeriesKey
from greennanny.store.duckdb import DuckDBStore

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
AGC = "agc2018_cucumber_greenhouse_climate.csv.gz"
COLUMNS = {"Tair": "air_temperature", "RHair": "relative_humidity", "CO2air": "co2"}
STEP_NS = 300 * 10**9
START_NS = 1_533_168_000 * 10**9  # 2018-08-02T00:00Z
DAY_STEPS = 288
H_NS = 3600 * 10**9


@dataclass
class Points:
    keys: list[SeriesKey]
    values: np.ndarray  # (series, steps) float64, at storage resolution already (0.01 / 0.1 data)
    ts: np.ndarray  # (steps,) int64

    @property
    def n(self) -> int:
        return int(self.values.size)


def load(points: int, series: int, shared: Path) -> Points:
    df = pd.read_csv(shared / AGC, usecols=["compartment", *COLUMNS])
    base: list[tuple[str, str, np.ndarray]] = []
    for comp, g in df.groupby("compartment", sort=True):
        for col, q in COLUMNS.items():
            base.append((str(comp), q, g[col].dropna().to_numpy(np.float64)))
    steps = points // series
    keys, rows = [], []
    for i in range(series):
        comp, q, v = base[i % len(base)]
        keys.append(SeriesKey("bench", comp, f"copy{i // len(base):03d}", q))
        rows.append(np.roll(np.resize(v, steps), (i // len(base)) * DAY_STEPS))
    return Points(keys, np.vstack(rows), START_NS + np.arange(steps, dtype=np.int64) * STEP_NS)


def batches(p: Points, size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(series index, ts, value) columns of time-major batches of `size` rows."""
    s, t = p.values.shape
    per = max(1, size // s)
    sidx = np.tile(np.arange(s, dtype=np.int32), per)
    for j in range(0, t, per):
        k = min(per, t - j)
        yield (sidx[: k * s], np.repeat(p.ts[j : j + k], s), p.values[:, j : j + k].T.reshape(-1))


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# -- greennanny ---------------------------------------------------------------------------------
def run_greennanny(p: Points, root: Path, batch: int, repeat: int, rng: np.random.Generator) -> dict[str, Any]:
    store = DuckDBStore(root / "gn" / "store.duckdb")
    empty_q = np.zeros(0, np.uint8)
    write_s = compact_s = 0.0
    day = int(p.ts[0]) // (DAY_STEPS * STEP_NS)
    for sidx, ts, val in batches(p, batch):
        q = np.zeros(len(ts), np.uint8) if len(empty_q) != len(ts) else empty_q
        empty_q = q
        t0 = time.perf_counter()
        store.write(Batch(p.keys, sidx, ts, val, q, {}))
        write_s += time.perf_counter() - t0
        if int(ts[-1]) // (DAY_STEPS * STEP_NS) != day:  # midnight: the node's maintenance runs, as it would hourly
            day = int(ts[-1]) // (DAY_STEPS * STEP_NS)
            t0 = time.perf_counter()
            store.compact(int(ts[-1]))
            compact_s += time.perf_counter() - t0
    now = int(p.ts[-1]) + STEP_NS
    store.checkpoint() if hasattr(store, "checkpoint") else None
    stats = store.stats() if hasattr(store, "stats") else {}
    raw_bytes = int(stats.get("raw_bytes", dir_bytes(root / "gn")))
    ids = [s.id for s in store.series()]
    end = now
    q24 = timed(lambda: store.query(int(rng.choice(ids)), end - 24 * H_NS, end), repeat)
    qyear = timed(lambda: store.query(int(rng.choice(ids)), end - 365 * 24 * H_NS, end, H_NS), repeat)
    q7 = timed(lambda: store.query_many(ids, end - 7 * 24 * H_NS, end), max(3, repeat // 10))
    got = store.query(ids[0], end - 24 * H_NS, end)
    store.close()
    return {"write_s": write_s, "compact_s": compact_s, "raw_bytes": raw_bytes, "stats": stats,
            "q24": q24, "qyear": qyear, "q7": q7, "check_rows_24h": len(got)}


# -- SQLite --------------------------------------------------------------------------------------
def run_sqlite(p: Points, root: Path, batch: int, repeat: int, rng: np.random.Generator) -> dict[str, Any]:
    path = root / "sqlite.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE points (series_id INTEGER, ts INTEGER, value REAL, PRIMARY KEY (series_id, ts))"
                " WITHOUT ROWID")
    t0 = time.perf_counter()
    for sidx, ts, val in batches(p, batch):
        con.execute("BEGIN")
        con.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?)",
                        zip(sidx.tolist(), ts.tolist(), val.tolist(), strict=True))
        con.execute("COMMIT")
    write_s = time.perf_counter() - t0
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    end = int(p.ts[-1]) + STEP_NS
    s_count = len(p.keys)

    def q24() -> Any:
        return con.execute("SELECT ts, value FROM points WHERE series_id = ? AND ts >= ? AND ts < ? ORDER BY ts",
                           (int(rng.integers(s_count)), end - 24 * H_NS, end)).fetchall()

    def qyear() -> Any:
        return con.execute("SELECT ts / ? * ?, avg(value), min(value), max(value), count(*) FROM points "
                           "WHERE series_id = ? AND ts >= ? AND ts < ? GROUP BY 1 ORDER BY 1",
                           (H_NS, H_NS, int(rng.integers(s_count)), end - 365 * 24 * H_NS, end)).fetchall()

    def q7() -> Any:
        return pd.read_sql_query("SELECT series_id, ts, value FROM points WHERE ts >= ? AND ts < ? "
                                 "ORDER BY series_id, ts", con, params=(end - 7 * 24 * H_NS, end))

    out = {"write_s": write_s, "raw_bytes": size, "q24": timed(q24, repeat), "qyear": timed(qyear, repeat),
           "q7": timed(q7, max(3, repeat // 10))}
    con.close()
    return out


# -- Parquet+zstd --------------------------------------------------------------------------------
def run_parquet(p: Points, root: Path, repeat: int, rng: np.random.Generator) -> dict[str, Any]:
    """One file per day, time-major as it arrives, pyarrow's defaults plus zstd; read by DuckDB."""
    d = root / "parquet"
    d.mkdir()
    s, t = p.values.shape
    t0 = time.perf_counter()
    for j in range(0, t, DAY_STEPS):
        k = min(DAY_STEPS, t - j)
        table = pa.table({"series_id": np.tile(np.arange(s, dtype=np.int32), k),
                          "ts": np.repeat(p.ts[j : j + k], s), "value": p.values[:, j : j + k].T.reshape(-1)})
        pq.write_table(table, d / f"{j // DAY_STEPS:05d}.parquet", compression="zstd")
    write_s = time.perf_counter() - t0
    size = dir_bytes(d)
    con = duckdb.connect()
    glob = str(d / "*.parquet")
    end = int(p.ts[-1]) + STEP_NS

    def q24() -> Any:
        return con.execute(f"SELECT ts, value FROM read_parquet('{glob}') WHERE series_id = ? AND ts >= ? AND "
                           "ts < ? ORDER BY ts", [int(rng.integers(s)), end - 24 * H_NS, end]).fetchnumpy()

    def qyear() -> Any:
        return con.execute(f"SELECT ts // {H_NS} * {H_NS} AS b, avg(value), min(value), max(value), count(*) "
                           f"FROM read_parquet('{glob}') WHERE series_id = ? AND ts >= ? AND ts < ? GROUP BY 1 "
                           "ORDER BY 1", [int(rng.integers(s)), end - 365 * 24 * H_NS, end]).fetchnumpy()

    def q7() -> Any:
        return con.execute(f"SELECT series_id, ts, value FROM read_parquet('{glob}') WHERE ts >= ? AND ts < ? "
                           "ORDER BY 1, 2", [end - 7 * 24 * H_NS, end]).df()

    out = {"write_s": write_s, "raw_bytes": size, "q24": timed(q24, repeat), "qyear": timed(qyear, repeat),
           "q7": timed(q7, max(3, repeat // 10))}
    con.close()
    return out


def lossless_reference(p: Points, root: Path) -> int:
    """Bytes of the same points as doubles in the cold tier's own layout (the lossless reference)."""
    s, t = p.values.shape
    table = pa.table({"series_id": np.repeat(np.arange(s, dtype=np.int32), t), "ts": np.tile(p.ts, s),
                      "value": p.values.reshape(-1)})
    path = root / "lossless.parquet"
    pq.write_table(table, path, compression="zstd", use_dictionary=False, row_group_size=128 * 1024,
                   column_encoding={"series_id": "DELTA_BINARY_PACKED", "ts": "DELTA_BINARY_PACKED",
                                    "value": "BYTE_STREAM_SPLIT"})
    return path.stat().st_size


def machine() -> dict[str, str]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "duckdb": duckdb.__version__, "sqlite": sqlite3.sqlite_version, "pyarrow": pa.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--points", type=int, default=50_000_000)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=10_000, help="rows per Store.write")
    ap.add_argument("--repeat", type=int, default=30, help="runs of each one-series query")
    ap.add_argument("--baseline-points", type=int, default=0,
                    help="points for SQLite and Parquet (default: the same as --points)")
    ap.add_argument("--shared", type=Path, default=SHARED.parent)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()
    shared = args.shared / "data"
    if not (shared / AGC).exists():
        raise SystemExit(f"{shared / AGC} not found: this benchmark runs on the shared AGC 2018 data")
    rng = np.random.default_rng(7)
    p = load(args.points, args.series, shared)
    print(f"store: {p.n:,} points, {len(p.keys)} series x {p.values.shape[1]:,} steps of 5 min "
          f"(AGC 2018 shifted by whole days), batches of {args.batch:,}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="gn-store-bench-", dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        gn = run_greennanny(p, root, args.batch, args.repeat, rng)
        print(f"  greennanny written in {gn['write_s']:.1f} s, compacted in {gn['compact_s']:.1f} s", file=sys.stderr)
        lossless = lossless_reference(p, root)
        bp = p if not args.baseline_points else load(args.baseline_points, args.series, shared)
        gc.collect()
        sq = run_sqlite(bp, root, args.batch, args.repeat, rng)
        print(f"  sqlite written in {sq['write_s']:.1f} s", file=sys.stderr)
        pa_ = run_parquet(bp, root, args.repeat, rng)
    rows = {"greennanny (DuckDB + cold Parquet)": (gn, p.n), "SQLite (WAL, batched)": (sq, bp.n),
            "Parquet+zstd (per day)": (pa_, bp.n)}
    info = machine()
    print(f"\nmachine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, DuckDB {info['duckdb']}, "
          f"SQLite {info['sqlite']}, pyarrow {info['pyarrow']}")
    print(f"{'store':<36} {'Mpt/s':>6} {'B/pt':>5} {'24h p50/p95 ms':>15} {'1y@1h p50/p95 ms':>17} "
          f"{'7d x all p50 ms':>15}")
    for name, (r, n) in rows.items():
        print(f"{name:<36} {n / r['write_s'] / 1e6:6.2f} {r['raw_bytes'] / n:5.2f} "
              f"{pct(r['q24'], 50):7.1f}/{pct(r['q24'], 95):<7.1f} {pct(r['qyear'], 50):8.1f}/{pct(r['qyear'], 95):<8.1f} "
              f"{pct(r['q7'], 50):15.0f}")
    both = p.n / (gn["write_s"] + gn["compact_s"])
    print(f"greennanny: writes alone {p.n / gn['write_s'] / 1e6:.2f} Mpt/s; writes + compaction with rollups "
          f"{both / 1e6:.2f} Mpt/s (compaction {gn['compact_s']:.1f} s)")
    gn_bpp, pq_bpp = gn["raw_bytes"] / p.n, pa_["raw_bytes"] / bp.n
    print(f"raw tier: {gn_bpp:.2f} B/pt at storage resolution; the same points as doubles in the same layout "
          f"(lossless reference): {lossless / p.n:.2f} B/pt")
    print(f"ratios: write x{(p.n / gn['write_s']) / (bp.n / sq['write_s']):.1f} of SQLite; bytes "
          f"{gn_bpp / pq_bpp:.2f} of Parquet+zstd, {gn_bpp / (sq['raw_bytes'] / bp.n):.2f} of SQLite")
    if args.json:
        def summary(r: dict[str, Any], n: int) -> dict[str, Any]:
            return {"points": n, "write_points_per_s": round(n / r["write_s"]), "bytes_per_point": round(r["raw_bytes"] / n, 3),
                    "q24h_ms": [round(pct(r["q24"], 50), 2), round(pct(r["q24"], 95), 2)],
                    "q1y_1h_ms": [round(pct(r["qyear"], 50), 2), round(pct(r["qyear"], 95), 2)],
                    "q7d_all_ms_p50": round(pct(r["q7"], 50), 1)}
        print(json.dumps({"greennanny": {**summary(gn, p.n), "compact_s": round(gn["compact_s"], 2),
                                         "write_and_rollup_points_per_s": round(both),
                                         "lossless_bytes_per_point": round(lossless / p.n, 3)},
                          "sqlite": summary(sq, bp.n), "parquet_zstd": summary(pa_, bp.n), "machine": info}))


if __name__ == "__main__":
    main()
