"""Live accuracy: every stored forecast scored against the actuals once they are in, kept as
aggregates per series x UTC day x horizon bucket x model (issue 6).

Why aggregates: a node refreshing 10,000 series every 15 minutes stores ~10 M forecast steps a
day; the question "how good are the models now, and at which lead time" needs sums, not rows.
Each aggregate holds the count, absolute and squared errors, the seasonal naive's absolute error
on the same targets (the actual a day earlier), and how many actuals fell inside the 80 % and
95 % intervals, so MAE, RMSE, MASE and coverage over any span are ratios of sums.

MASE here is the forecast's MAE over the seasonal naive's MAE on the very targets scored (the
one-day naive, as in the backtest), so 1.0 means "no better than yesterday's values" at any lead
time and on any span; a series whose day-ago actual is missing contributes no naive error.

Readings an open sensor-fault step hides are no actuals (the step counts as without one), and a
calibrated one's are scored with its offset (`mlops.events.FaultMask`).

Each forecast step is scored exactly once: a scoring round takes the steps whose bin ended after
the previous round's watermark and at least `grace` before now (late readings get that long),
and moves the watermark (kept in the store's `meta`) in the same transaction as the sums.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from greennanny.mlops.events import FaultMask
from greennanny.store.duckdb import DuckDBStore

DAY_NS = 86_400 * 10**9
H_NS = 3_600 * 10**9
BUCKETS_H = (1, 3, 6, 12, 24)  # upper edges (lead time to the end of the target bin, hours)
BUCKET_NAMES = ("0-1h", "1-3h", "3-6h", "6-12h", "12-24h", ">24h")
WATERMARK = "scored_through_ns"


@dataclass(slots=True)
class ScoreRound:
    forecast_steps: int = 0  # forecast steps scored (with an actual)
    without_actual: int = 0  # forecast steps whose bin had no usable reading (not scored, not retried)
    series: int = 0
    through_ns: int | None = None
    seconds: float = 0.0


def bucket_of(lead_ns: np.ndarray) -> np.ndarray:
    """Index into BUCKET_NAMES of each lead time (ns from the forecast's making to its bin's end)."""
    return np.searchsorted(np.asarray(BUCKETS_H, np.int64) * H_NS, lead_ns, side="left")


def _binned(sid: np.ndarray, ts: np.ndarray, val: np.ndarray, step: int) -> pd.Series:
    """Mean of the readings in each (series, bin start) on a grid of `step`."""
    frame = pd.DataFrame({"series_id": sid, "bin": ts - ts % step, "v": val})
    return frame.groupby(["series_id", "bin"], sort=False)["v"].mean()


class Scorer:
    def __init__(self, store: DuckDBStore, grace_ns: int = 30 * 60 * 10**9) -> None:
        self.store = store
        self.grace_ns = grace_ns

    def watermark(self) -> int | None:
        rows = self.store.reader().execute("SELECT value FROM meta WHERE key = ?", [WATERMARK]).fetchall()
        return int(rows[0][0]) if rows else None

    def score(self, now_ns: int) -> ScoreRound:
        """Score every forecast step whose bin ended in (watermark, now - grace]."""
        import time

        t0 = time.perf_counter()
        out = ScoreRound()
        cur = self.store.reader()
        hi = now_ns - self.grace_ns
        lo = self.watermark()
        if lo is None:  # the first round: everything stored so far
            first = cur.execute("SELECT min(p.ts + r.step_ns) FROM forecast_points p JOIN forecast_runs r "
                                "ON r.run_id = p.run_id AND r.series_id = p.series_id").fetchall()[0][0]
            if first is None:
                return out
            lo = int(first) - 1
        if hi <= lo:  # nothing has ended since the last round
            out.through_ns = self.watermark()
            return out
        f = cur.execute(
            "SELECT p.series_id, p.ts, p.mean, p.lo80, p.hi80, p.lo95, p.hi95, r.step_ns, r.made_ns, r.model "
            "FROM forecast_points p JOIN forecast_runs r ON r.run_id = p.run_id AND r.series_id = p.series_id "
            "WHERE p.ts + r.step_ns > ? AND p.ts + r.step_ns <= ?", [lo, hi]).df()
        parts = []
        if len(f):
            ids = np.unique(f["series_id"].to_numpy(np.int64)).tolist()
            t_lo = int(f["ts"].min()) - DAY_NS
            t_hi = int((f["ts"] + f["step_ns"]).max())
            sid, ts, val = self.store.query_long(ids, t_lo, t_hi)
            val = FaultMask.load(self.store).apply(sid, ts, val)  # a faulty sensor judges no model
            for step, g in f.groupby("step_ns", sort=True):
                bins = _binned(sid, ts, val, int(step))
                key = pd.MultiIndex.from_arrays([g["series_id"].to_numpy(np.int64), g["ts"].to_numpy(np.int64)])
                actual = bins.reindex(key).to_numpy(np.float64)
                before = bins.reindex(pd.MultiIndex.from_arrays(
                    [g["series_id"].to_numpy(np.int64), g["ts"].to_numpy(np.int64) - DAY_NS])).to_numpy(np.float64)
                has = np.isfinite(actual)
                out.without_actual += int((~has).sum())
                g = g[has]
                a, b = actual[has], before[has]
                err = a - g["mean"].to_numpy(np.float64)
                naive = np.abs(a - b)
                lead = g["ts"].to_numpy(np.int64) + int(step) - g["made_ns"].to_numpy(np.int64)
                parts.append(pd.DataFrame({
                    "series_id": g["series_id"].to_numpy(np.int32),
                    "day_ns": (g["ts"].to_numpy(np.int64) // DAY_NS) * DAY_NS,
                    "bucket": np.asarray(BUCKET_NAMES, dtype=object)[bucket_of(lead)],
                    "model": g["model"].to_numpy(object),
                    "n": np.ones(len(g), np.int64), "abs_err": np.abs(err), "sq_err": err * err,
                    "naive_abs_err": np.where(np.isfinite(naive), naive, 0.0),
                    "naive_n": np.isfinite(naive).astype(np.int64),
                    "in80": ((g["lo80"].to_numpy() <= a) & (a <= g["hi80"].to_numpy())).astype(np.int64),
                    "in95": ((g["lo95"].to_numpy() <= a) & (a <= g["hi95"].to_numpy())).astype(np.int64),
                }))
        keys = ["series_id", "day_ns", "bucket", "model"]
        agg = pd.concat(parts).groupby(keys, sort=False, as_index=False).sum() if parts else None
        if agg is not None:
            out.forecast_steps = int(agg["n"].sum())
            out.series = int(agg["series_id"].nunique())

        def tx(con: duckdb.DuckDBPyConnection) -> None:
            if agg is not None and len(agg):
                _merge(con, agg)
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [WATERMARK, str(hi)])

        self.store.transaction(tx, "scoring forecasts")
        out.through_ns = hi
        out.seconds = round(time.perf_counter() - t0, 3)
        return out


def _merge(con: duckdb.DuckDBPyConnection, agg: pd.DataFrame) -> None:
    """Add `agg`'s sums to the stored aggregates with the same keys (one row per key stays)."""
    tbl = pa.Table.from_pandas(agg, preserve_index=False)
    con.register("_sc", tbl)
    try:
        on = "s.series_id = n.series_id AND s.day_ns = n.day_ns AND s.bucket = n.bucket AND s.model = n.model"
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _scm AS SELECT series_id, day_ns, bucket, model, sum(n) AS n, "
            "sum(abs_err) AS abs_err, sum(sq_err) AS sq_err, sum(naive_abs_err) AS naive_abs_err, "
            "sum(naive_n) AS naive_n, sum(in80) AS in80, sum(in95) AS in95 FROM ("
            f"SELECT s.* FROM forecast_scores s SEMI JOIN _sc n ON {on} "
            "UNION ALL SELECT series_id, day_ns, bucket, model, n, abs_err, sq_err, naive_abs_err, naive_n, in80, "
            "in95 FROM _sc) GROUP BY ALL")
        con.execute(f"DELETE FROM forecast_scores s USING _sc n WHERE {on}")
        con.execute("INSERT INTO forecast_scores SELECT * FROM _scm")
        con.execute("DROP TABLE _scm")
    finally:
        con.unregister("_sc")
