"""The point tables of the embedded store: hot rows, cold days, rollups (docs/design/003).

`PointTables` works on the store's DuckDB connection under the store's lock and transaction; it
knows nothing of series keys or units. Values arrive and leave as integers at storage resolution
(`v`, NULL for a missing row); the store converts. Reads see one table of raw points: the hot
rows, plus the cold day files with any (series, ts) that the hot tier also holds left out, so a
late point written after its day was compacted wins, as every write does.

Rollups hold, per (series, bucket): over its served points (quality ok or flagged) count, min,
max, sum and the last point; the 1 h tier also, over all its rows (missing and quarantined ones
too, which are kept but never served), their count and first and last instant, which is what a
series listing shows. The 1 min tier has a row only where a bucket has a served point. Each write recomputes from raw exactly the buckets its
rows fall in; a delete recomputes the buckets it cuts. Nothing is ever merged incrementally, so a
rollup always equals a recompute from raw, whatever order points came in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from greennanny.store.cold import DAY_NS, ColdTier, day_of

MIN_NS = 60 * 1_000_000_000
HOUR_NS = 60 * MIN_NS
TIERS = {"1m": MIN_NS, "1h": HOUR_NS}
SERVED = "quality IN (0, 2) AND v IS NOT NULL"
_SERVED_R = "r.quality IN (0, 2) AND r.v IS NOT NULL"

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (series_id INTEGER, ts BIGINT, v BIGINT, quality UTINYINT);
CREATE TABLE IF NOT EXISTS rollup_1m (series_id INTEGER, bucket BIGINT, n BIGINT, vmin BIGINT, vmax BIGINT,
  vsum DOUBLE, last_ts BIGINT, last_v BIGINT);
CREATE TABLE IF NOT EXISTS rollup_1h (series_id INTEGER, bucket BIGINT, n BIGINT, vmin BIGINT, vmax BIGINT,
  vsum DOUBLE, last_ts BIGINT, last_v BIGINT, rows BIGINT, first_any BIGINT, last_any BIGINT);
"""
# Every tier keeps what downsampled reads need; the 1 h tier also what a series listing shows
# (rows of any quality and their first and last instant). `vsum` is a double: exact for sums of
# sensor integers (below 2**53) and never overflows, so no write can fail on a sum.
BASE_COLS = ["series_id", "bucket", "n", "vmin", "vmax", "vsum", "last_ts", "last_v"]
LISTING_COLS = ["rows", "first_any", "last_any"]
TIER_COLS = {"1m": BASE_COLS, "1h": BASE_COLS + LISTING_COLS}

LO, HI = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class Written:
    written: int
    replaced: int  # rows that took the place of a stored row (hot or cold) or of an earlier row of the batch


class PointTables:
    def __init__(self, con: duckdb.DuckDBPyConnection, cold: ColdTier, *, create: bool = True) -> None:
        self.con = con
        self.cold = cold
        if create:
            con.execute(SCHEMA)
        self._cold_days = set(cold.days())
        # The newest instant stored per series (any quality): a batch entirely newer than it cannot
        # collide with a stored row, so it skips the collision queries. The 1 h rollups hold every
        # row's instant and outlive raw points (retention enforces it), so they seed it exactly.
        self._last = np.full(1, _I64_MIN, np.int64)
        rows = con.execute("SELECT series_id, max(last_any) FROM rollup_1h GROUP BY 1").fetchall()
        for sid_, last in rows:
            self._grow(int(sid_) + 1)
            self._last[int(sid_)] = int(last)
        self._open = {name: _OpenRows(cols) for name, cols in TIER_COLS.items()}

    # -- reading ---------------------------------------------------------------------------
    def raw_sql(self, lo: int, hi: int, *, ids_table: str | None = None, series_id: int | None = None) -> tuple[str, list[Any]]:
        """SQL (and its args) of raw rows (series_id, ts, v, quality) in [lo, hi), hot over cold.

        `ids_table` names a registered table with a column `sid` to restrict the series to.
        """

        def part(alias: str) -> tuple[str, str, list[Any]]:
            join = f" SEMI JOIN {ids_table} ON {alias}.series_id = {ids_table}.sid" if ids_table else ""
            cond, args = f"{alias}.ts >= ? AND {alias}.ts < ?", [lo, hi]
            if series_id is not None:
                cond += f" AND {alias}.series_id = ?"
                args.append(series_id)
            return join, cond, args

        join, cond, args = part("h")
        hot = f"SELECT h.series_id, h.ts, h.v, h.quality FROM points h{join} WHERE {cond}"
        files = self._files(lo, hi)
        if not files:
            return hot, args
        listing = "[" + ", ".join(f"'{f}'" for f in files) + "]"
        cjoin, ccond, cargs = part("c")
        cold = (f"SELECT c.series_id, c.ts, c.v, c.quality FROM read_parquet({listing}) c "
                "ANTI JOIN (SELECT series_id, ts FROM points WHERE ts >= ? AND ts < ?) o "
                f"ON o.series_id = c.series_id AND o.ts = c.ts{cjoin} WHERE {ccond}")
        return f"{hot} UNION ALL {cold}", args + [lo, hi] + cargs

    def _files(self, lo: int, hi: int) -> list[str]:
        if not self._cold_days:
            return []
        first, last = (day_of(max(lo, 0)), day_of(max(hi - 1, 0)))
        return [str(self.cold.path(d)) for d in sorted(self._cold_days) if first <= d <= last]

    # -- writing ---------------------------------------------------------------------------
    def _grow(self, size: int) -> None:
        if size > len(self._last):
            self._last = np.concatenate([self._last, np.full(max(size, 2 * len(self._last)) - len(self._last), _I64_MIN)])

    def write(self, sid: np.ndarray, ts: np.ndarray, v: np.ndarray, valid: np.ndarray, quality: np.ndarray) -> Written:
        """Append rows (last wins per (series, ts)) and bring the rollup buckets they touch up to date."""
        n = len(ts)
        if not n:
            return Written(0, 0)
        sid = sid.astype(np.int64, copy=False)
        self._grow(int(sid.max()) + 1)
        order = np.lexsort((ts, sid))
        s_sorted, t_sorted = sid[order], ts[order]
        in_batch_dup = bool(((s_sorted[1:] == s_sorted[:-1]) & (t_sorted[1:] == t_sorted[:-1])).any())
        if not in_batch_dup and bool((ts > self._last[sid]).all()):
            # Live ingest: every row is newer than anything stored for its series.
            tbl = pa.table({"series_id": pa.array(sid.astype(np.int32)), "ts": pa.array(ts),
                            "v": pa.array(v.astype(np.int64), mask=~valid), "quality": pa.array(quality.astype(np.uint8))})
            self.con.register("_in", tbl)
            try:
                self.con.execute("INSERT INTO points SELECT * FROM _in")
            finally:
                self.con.unregister("_in")
            self._merge_newest(sid, ts, v, valid, quality)
            np.maximum.at(self._last, sid, ts)
            return Written(n, 0)
        out = self._write_general(sid, ts, v, valid, quality)
        np.maximum.at(self._last, sid, ts)
        for op in self._open.values():  # the general path may have rewritten an open bucket
            op.forget()
        return out

    def _write_general(self, sid: np.ndarray, ts: np.ndarray, v: np.ndarray, valid: np.ndarray,
                       quality: np.ndarray) -> Written:
        """Rows in any order: replacements counted against both tiers, rollups kept exact."""
        df = pd.DataFrame({"series_id": sid.astype(np.int32), "ts": ts,
                           "v": pd.array(v, dtype="Int64") if not valid.all() else v, "quality": quality})
        if not valid.all():
            df.loc[~valid, "v"] = pd.NA
        dup = df.duplicated(["series_id", "ts"], keep="last")
        replaced = int(dup.sum())
        if replaced:
            df = df[~dup.to_numpy()]
        lo, hi = int(df.ts.min()), int(df.ts.max()) + 1
        con = self.con
        con.register("_in", df)
        try:
            stored = con.execute("SELECT count(*) FROM points p SEMI JOIN _in i ON p.series_id = i.series_id "
                                 "AND p.ts = i.ts WHERE p.ts >= ? AND p.ts < ?", [lo, hi]).fetchall()[0]
            hot_hits = int(stored[0]) if stored else 0
            cold_hits = 0
            files = self._files(lo, hi)
            if files:  # a late point for a compacted day shadows its cold row: a replacement too,
                # unless a hot row already shadowed that cold row (then the hot row is what it replaces)
                listing = "[" + ", ".join(f"'{f}'" for f in files) + "]"
                row = con.execute(f"SELECT count(*) FROM read_parquet({listing}) c SEMI JOIN _in i ON "
                                  "c.series_id = i.series_id AND c.ts = i.ts ANTI JOIN (SELECT series_id, ts FROM "
                                  "points WHERE ts >= ? AND ts < ?) h ON h.series_id = c.series_id AND h.ts = c.ts",
                                  [lo, hi]).fetchall()[0]
                cold_hits = int(row[0]) if row else 0
            if hot_hits:
                con.execute("DELETE FROM points p USING _in i WHERE p.ts >= ? AND p.ts < ? AND p.series_id = i.series_id "
                            "AND p.ts = i.ts", [lo, hi])
            con.execute("INSERT INTO points SELECT series_id::INTEGER, ts::BIGINT, v::BIGINT, quality::UTINYINT FROM _in")
            if replaced or hot_hits or cold_hits:
                self._recompute_from("_in", lo, hi)  # something was replaced: only a recompute is exact
            else:  # only new (series, ts): old rows of a bucket plus the new ones is the whole bucket
                keep = ~dup.to_numpy()
                self._merge(sid[keep], ts[keep], v[keep], valid[keep], quality[keep])
        finally:
            con.unregister("_in")
        return Written(len(df), replaced + hot_hits + cold_hits)

    def _merge_newest(self, sid: np.ndarray, ts: np.ndarray, v: np.ndarray, valid: np.ndarray,
                      quality: np.ndarray) -> None:
        """Fold rows newer than everything stored into the rollups. Only a series' newest stored
        bucket can meet them, and that row is cached (`_OpenRows`), so no lookup is needed: the
        cached rows that meet a new bucket are replaced, the rest is appended."""
        con = self.con
        served = valid & ((quality == 0) | (quality == 2))
        for name, width in TIERS.items():
            cols = TIER_COLS[name]
            sel = served if name == "1m" else np.ones(len(ts), bool)  # 1 min keeps served buckets only
            if not sel.any():
                continue
            new = _aggregate(sid[sel], ts[sel], v[sel], served[sel], width)
            op = self._open[name]
            op.load(con, name, new["series_id"], new["bucket"])
            s_ = new["series_id"]
            met = op.known[s_] & (op.data["bucket"][s_] == new["bucket"])
            if met.any():
                idx = s_[met]
                d = op.data
                new["n"][met] += d["n"][idx]
                new["vmin"][met] = np.minimum(new["vmin"][met], d["vmin"][idx])
                new["vmax"][met] = np.maximum(new["vmax"][met], d["vmax"][idx])
                new["vsum"][met] += d["vsum"][idx]
                older = d["last_ts"][idx] > new["last_ts"][met]
                new["last_v"][met] = np.where(older, d["last_v"][idx], new["last_v"][met])
                new["last_ts"][met] = np.maximum(new["last_ts"][met], d["last_ts"][idx])
                if "rows" in cols:
                    new["rows"][met] += d["rows"][idx]
                    new["first_any"][met] = np.minimum(new["first_any"][met], d["first_any"][idx])
                    new["last_any"][met] = np.maximum(new["last_any"][met], d["last_any"][idx])
                gone = pa.table({"series_id": pa.array(idx.astype(np.int32)), "bucket": pa.array(new["bucket"][met])})
                con.register("_met", gone)
                try:
                    con.execute(f"DELETE FROM rollup_{name} r USING _met m WHERE r.bucket >= ? AND r.bucket <= ? "
                                "AND r.series_id = m.series_id AND r.bucket = m.bucket",
                                [int(new["bucket"][met].min()), int(new["bucket"][met].max())])
                finally:
                    con.unregister("_met")
            con.register("_roll", _arrow_rows(new, cols))
            try:
                con.execute(f"INSERT INTO rollup_{name} SELECT * FROM _roll")
            finally:
                con.unregister("_roll")
            op.keep_newest(new)

    def _merge(self, sid: np.ndarray, ts: np.ndarray, v: np.ndarray, valid: np.ndarray, quality: np.ndarray) -> None:
        """Fold rows that are all new into the rollups: per touched bucket, the stored rollup row
        (if any) and the batch's own aggregate combine into the bucket's new row."""
        for op in self._open.values():
            op.forget()
        con = self.con
        served = valid & ((quality == 0) | (quality == 2))
        for name, width in TIERS.items():
            cols = TIER_COLS[name]
            if name == "1m":  # this tier keeps served buckets only
                if not served.any():
                    continue
                new = _aggregate(sid[served], ts[served], v[served], served[served], width).frame(cols)
            else:
                new = _aggregate(sid, ts, v, served, width).frame(cols)
            b_lo, b_hi = int(new["bucket"].min()), int(new["bucket"].max()) + 1
            con.register("_agg", new[["series_id", "bucket"]])
            try:
                old = con.execute(
                    f"SELECT {', '.join(cols)} "
                    f"FROM rollup_{name} r SEMI JOIN _agg a ON r.series_id = a.series_id AND r.bucket = a.bucket "
                    "WHERE r.bucket >= ? AND r.bucket < ?", [b_lo, b_hi]).df()
                if len(old):
                    con.execute(f"DELETE FROM rollup_{name} r USING _agg a WHERE r.bucket >= ? AND r.bucket < ? "
                                "AND r.series_id = a.series_id AND r.bucket = a.bucket", [b_lo, b_hi])
                    new = _combine(old, new, cols)
            finally:
                con.unregister("_agg")
            con.register("_roll", _nullable(new))
            try:
                con.execute(f"INSERT INTO rollup_{name} SELECT series_id::INTEGER, {', '.join(cols[1:])} FROM _roll")
            finally:
                con.unregister("_roll")

    def _recompute_from(self, rows_table: str, lo: int, hi: int) -> None:
        """Recompute every rollup bucket that a row of `rows_table` (series_id, ts) falls in."""
        for op in self._open.values():
            op.forget()
        con = self.con
        for name, width in TIERS.items():
            b_lo, b_hi = _floor(lo, width), _floor(hi - 1, width) + width
            con.execute(f"CREATE OR REPLACE TEMP TABLE _touch AS SELECT DISTINCT series_id AS sid, "
                        f"ts - (((ts % {width}) + {width}) % {width}) AS bucket FROM {rows_table}")
            self._rebuild(name, width, b_lo, b_hi)

    def _rebuild(self, name: str, width: int, b_lo: int, b_hi: int) -> None:
        """Replace the buckets listed in temp table `_touch` (sid, bucket) by a recompute from raw."""
        con = self.con
        con.execute(f"DELETE FROM rollup_{name} r USING _touch t WHERE r.bucket >= ? AND r.bucket < ? "
                    "AND r.series_id = t.sid AND r.bucket = t.bucket", [b_lo, b_hi])
        raw, args = self.raw_sql(b_lo, b_hi, ids_table="_touch")
        f = f"FILTER (WHERE {_SERVED_R})"
        listing = ", count(*), min(r.ts), max(r.ts)" if name == "1h" else ""
        where = "" if name == "1h" else f" WHERE {_SERVED_R}"
        con.execute(
            f"INSERT INTO rollup_{name} SELECT r.series_id, r.ts - (((r.ts % {width}) + {width}) % {width}) AS b, "
            f"count(*) {f}, min(r.v) {f}, max(r.v) {f}, (sum(r.v) {f})::DOUBLE, max(r.ts) {f}, arg_max(r.v, r.ts) {f}"
            f"{listing} FROM ({raw}) r SEMI JOIN _touch t ON r.series_id = t.sid "
            f"AND r.ts - (((r.ts % {width}) + {width}) % {width}) = t.bucket{where} GROUP BY 1, 2", args)

    def delete(self, lo: int, hi: int, series: list[int] | None) -> int:
        """Delete raw rows in [lo, hi) (of `series`, or all), hot and cold; rollups follow."""
        con = self.con
        sel = "" if series is None else " AND list_contains(?, series_id)"
        extra: list[Any] = [] if series is None else [series]
        raw, args = self.raw_sql(lo, hi)
        con.execute(f"CREATE OR REPLACE TEMP TABLE _gone AS SELECT series_id, ts FROM ({raw}) WHERE true{sel}",
                    args + extra)
        row = con.execute("SELECT count(*) FROM _gone").fetchall()[0]
        n = int(row[0]) if row else 0
        if not n:
            return 0
        con.execute(f"DELETE FROM points WHERE ts >= ? AND ts < ?{sel}", [lo, hi, *extra])
        for day in [d for d in sorted(self._cold_days) if d * DAY_NS < hi and (d + 1) * DAY_NS > lo]:
            self._rewrite_day(day, drop=(lo, hi, series))
        self._recompute_from("_gone", lo, hi)
        return n

    # -- compaction and retention ------------------------------------------------------------
    def compact(self, before_ns: int) -> int:
        """Move every whole UTC day before `before_ns` from the hot tier into its cold file.

        Runs inside the store's transaction: the file is replaced first (atomically), then the
        day's hot rows are deleted. A crash in between leaves rows in both tiers, which reads
        resolve (hot wins, same values) and the next compaction repeats. Returns days moved.
        """
        con = self.con
        last_day = day_of(before_ns) - 1
        rows = con.execute("SELECT DISTINCT ts // ? AS d FROM points WHERE ts < ? ORDER BY 1",
                           [DAY_NS, (last_day + 1) * DAY_NS]).fetchall()
        for (day,) in rows:
            self._rewrite_day(int(day))
            con.execute("DELETE FROM points WHERE ts >= ? AND ts < ?", [day * DAY_NS, (day + 1) * DAY_NS])
        return len(rows)

    def _rewrite_day(self, day: int, drop: tuple[int, int, list[int] | None] | None = None) -> None:
        """Write the day's file as its cold rows, overlaid by its hot rows, less `drop`."""
        start, end = day * DAY_NS, (day + 1) * DAY_NS
        raw, args = self.raw_sql(start, end)
        sql = f"SELECT series_id, ts, v, quality FROM ({raw}) WHERE true"
        extra: list[Any] = []
        if drop is not None:
            d_lo, d_hi, d_series = drop
            sql += " AND NOT (ts >= ? AND ts < ?" + ("" if d_series is None else " AND list_contains(?, series_id)") + ")"
            extra = [d_lo, d_hi] + ([] if d_series is None else [d_series])
        table: pa.Table = self.con.sql(sql, params=args + extra).to_arrow_table()
        self.cold.write_day(day, table)
        if table.num_rows:
            self._cold_days.add(day)
        else:
            self._cold_days.discard(day)

    def drop_raw_before(self, ts_ns: int) -> int:
        """Retention of the raw tier: whole cold days before `ts_ns` go, and hot rows before it."""
        con = self.con
        row = con.execute("SELECT count(*) FROM points WHERE ts < ?", [ts_ns]).fetchall()[0]
        n = int(row[0]) if row else 0
        con.execute("DELETE FROM points WHERE ts < ?", [ts_ns])
        keep = day_of(ts_ns)
        self._cold_days = {d for d in self._cold_days if d >= keep}  # readers stop listing them first
        return n + self.cold.drop_before(keep)

    def drop_rollups_before(self, name: str, ts_ns: int) -> int:
        self._open[name].forget()
        row = self.con.execute(f"SELECT count(*) FROM rollup_{name} WHERE bucket < ?", [ts_ns]).fetchall()[0]
        self.con.execute(f"DELETE FROM rollup_{name} WHERE bucket < ?", [ts_ns])
        return int(row[0]) if row else 0

    # -- reads -------------------------------------------------------------------------------
    def rollup(self, name: str, lo: int, hi: int, *, ids_table: str | None = None,
               series_id: int | None = None) -> pd.DataFrame:
        """The stored rollup rows of tier `name` whose bucket starts in [lo, hi) (tests, stats)."""
        cond, args = "bucket >= ? AND bucket < ?", [_floor(lo, TIERS[name]), hi]
        if series_id is not None:
            cond += " AND series_id = ?"
            args.append(series_id)
        join = f" SEMI JOIN {ids_table} ON series_id = {ids_table}.sid" if ids_table else ""
        return self.con.execute(
            f"SELECT {', '.join(TIER_COLS[name])} FROM rollup_{name}{join} "
            f"WHERE {cond} ORDER BY series_id, bucket", args).df()

    def bucketed(self, lo: int, hi: int, every: int, *, ids_table: str | None = None,
                 series_id: int | None = None, con: duckdb.DuckDBPyConnection | None = None) -> pd.DataFrame:
        """Served points in [lo, hi) per (series, `every`-bucket): n, vmin, vmax, vsum, last_ts,
        last_v (integers at storage resolution; vsum a double).

        Whole rollup buckets inside the range come from the coarsest tier that divides `every`;
        the partial buckets at either edge are aggregated from raw, so the answer equals an
        aggregate over raw exactly, while a year at 1 h reads 8,760 rollup rows, not 105,120 points.
        """
        tier = next((name for name, w in sorted(TIERS.items(), key=lambda t: -t[1]) if every % w == 0), None)
        agg = "count(*) AS n, min(v) AS vmin, max(v) AS vmax, sum(v)::DOUBLE AS vsum, max(ts) AS last_ts, arg_max(v, ts) AS last_v"
        parts: list[str] = []
        args: list[Any] = []
        raw_ranges = [(lo, hi)]
        if tier is not None:
            w = TIERS[tier]
            inner_lo, inner_hi = -((-lo) // w) * w, (hi // w) * w
            if inner_lo < inner_hi:
                raw_ranges = [(lo, inner_lo), (inner_hi, hi)]
                join = f" SEMI JOIN {ids_table} ON series_id = {ids_table}.sid" if ids_table else ""
                cond = "n > 0 AND bucket >= ? AND bucket < ?" + (" AND series_id = ?" if series_id is not None else "")
                parts.append(f"SELECT series_id, bucket, n, vmin, vmax, vsum, last_ts, last_v "
                             f"FROM rollup_{tier}{join} WHERE {cond}")
                args += [inner_lo, inner_hi] + ([series_id] if series_id is not None else [])
        for r_lo, r_hi in raw_ranges:
            if r_lo >= r_hi:
                continue
            raw, raw_args = self.raw_sql(r_lo, r_hi, ids_table=ids_table, series_id=series_id)
            parts.append(f"SELECT series_id, ts - (((ts % {every}) + {every}) % {every}) AS bucket, {agg} "
                         f"FROM ({raw}) WHERE {SERVED} GROUP BY 1, 2")
            args += raw_args
        if not parts:
            return pd.DataFrame(columns=BASE_COLS)
        union = " UNION ALL ".join(parts)
        return (con or self.con).execute(
            f"SELECT series_id, bucket - (((bucket % {every}) + {every}) % {every}) AS bucket, sum(n)::BIGINT AS n, "
            "min(vmin) AS vmin, max(vmax) AS vmax, sum(vsum) AS vsum, "
            f"max(last_ts) AS last_ts, arg_max(last_v, last_ts) AS last_v FROM ({union}) GROUP BY 1, 2 ORDER BY 1, 2",
            args).df()

    def hot_rows(self) -> int:
        row = self.con.execute("SELECT count(*) FROM points").fetchall()[0]
        return int(row[0]) if row else 0


def _floor(ts: int, width: int) -> int:
    return ts - (ts % width)


def scale_of(resolution: float) -> tuple[float, bool]:
    """(factor, divide): value = v / factor when the resolution is 1/integer (exact decimals),
    else value = v * factor. 0.01 -> (100, True), so 2340 reads back as 23.4, not 23.400000000000002."""
    inv = 1.0 / resolution
    if resolution < 1 and math.isclose(inv, round(inv), rel_tol=0, abs_tol=1e-9):
        return float(round(inv)), True
    return float(resolution), False


_I64_MAX, _I64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def _aggregate(sid: np.ndarray, ts: np.ndarray, v: np.ndarray, served: np.ndarray, width: int) -> _Cols:
    """Rollup rows of a batch, vectorised: one per (series, bucket), with "none" encoded as the
    int64 extremes (vmin: max; vmax/last_ts/last_v: min) until `_nullable`."""
    bucket = ts - np.mod(ts, width)
    order = np.lexsort((ts, bucket, sid))
    s_, b_, t_, v_, ok = sid[order].astype(np.int64), bucket[order], ts[order], v[order].astype(np.int64), served[order]
    change = np.empty(len(s_), bool)
    change[0] = True
    change[1:] = (s_[1:] != s_[:-1]) | (b_[1:] != b_[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(s_))
    vm = np.where(ok, v_, _I64_MAX)
    vx = np.where(ok, v_, _I64_MIN)
    tx = np.where(ok, t_, _I64_MIN)
    last_ts = np.maximum.reduceat(tx, starts)
    # the served row with the greatest ts of each group: rows are sorted by ts within a group
    pos = np.arange(len(s_))
    last_pos = np.maximum.reduceat(np.where(ok, pos, -1), starts)
    last_v = np.where(last_pos >= 0, v_[np.maximum(last_pos, 0)], _I64_MIN)
    return _Cols({
        "series_id": s_[starts], "bucket": b_[starts], "n": np.add.reduceat(ok.astype(np.int64), starts),
        "vmin": np.minimum.reduceat(vm, starts), "vmax": np.maximum.reduceat(vx, starts),
        "vsum": np.add.reduceat(np.where(ok, v_, 0).astype(np.float64), starts),
        "last_ts": last_ts, "last_v": last_v,
        "rows": ends - starts, "first_any": t_[starts], "last_any": t_[ends - 1]})


def _combine(old: pd.DataFrame, new: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Stored rollup rows (NULLs where a bucket has no served point) and a batch's rows, merged."""
    o = pd.DataFrame({c: old[c].to_numpy(np.int64) for c in cols if c not in _NONE and c != "vsum"})
    o["vsum"] = old["vsum"].to_numpy(np.float64, na_value=0.0)
    for col, none in _NONE.items():  # back to the int64 "none" encoding of `_aggregate`
        raw = old[col]
        o[col] = np.where(raw.isna().to_numpy(), none, raw.fillna(0).to_numpy(np.int64))
    both = pd.concat([o[cols], new[cols]], ignore_index=True).sort_values(["series_id", "bucket", "last_ts"],
                                                                           kind="stable")
    how = {"n": "sum", "vmin": "min", "vmax": "max", "vsum": "sum", "last_ts": "max", "last_v": "last",
           "rows": "sum", "first_any": "min", "last_any": "max"}
    out = both.groupby(["series_id", "bucket"], sort=True).agg({c: how[c] for c in cols[2:]}).reset_index()
    return out[cols]


_NONE = {"vmin": _I64_MAX, "vmax": _I64_MIN, "last_ts": _I64_MIN, "last_v": _I64_MIN}


def _nullable(df: pd.DataFrame) -> pd.DataFrame:
    """The int64 "none" encoding back to NULLs for the rollup table."""
    out = df.copy()
    for col, none in _NONE.items():
        arr = pd.array(out[col].to_numpy(np.int64), dtype="Int64")
        arr[out[col].to_numpy(np.int64) == none] = pd.NA
        out[col] = arr
    none_served = out["n"].to_numpy() == 0
    vsum = pd.array(out["vsum"].to_numpy(np.float64), dtype="Float64")
    vsum[none_served] = pd.NA
    out["vsum"] = vsum
    return out


class _Cols(dict[str, np.ndarray]):
    """Columns of rollup rows as numpy arrays (what `_aggregate` makes and `_merge*` fold)."""

    def frame(self, cols: list[str]) -> pd.DataFrame:
        return pd.DataFrame({c: self[c] for c in cols})


def _arrow_rows(rows: _Cols, cols: list[str]) -> pa.Table:
    """Rollup rows for the table: the int64 "none" encoding becomes NULL, as does vsum where n is 0."""
    out = {"series_id": pa.array(rows["series_id"].astype(np.int32)), "bucket": pa.array(rows["bucket"])}
    for c in cols[2:]:
        arr = rows[c]
        if c in _NONE:
            out[c] = pa.array(arr, mask=arr == _NONE[c])
        elif c == "vsum":
            out[c] = pa.array(arr.astype(np.float64), mask=rows["n"] == 0)
        else:
            out[c] = pa.array(arr.astype(np.int64))
    return pa.table(out)


class _OpenRows:
    """The newest stored rollup row of each series in one tier, by series id.

    `known[sid]` says the entry is trustworthy; `bucket` is _I64_MIN where the series has no row
    that a newer batch could meet. Anything that rewrites rollups other than `_merge_newest`
    calls `forget`, and the next batch reads the rows it needs from the table once (`load`).
    """

    def __init__(self, cols: list[str]) -> None:
        self.cols = cols
        self.known = np.zeros(1, bool)
        self.data: dict[str, np.ndarray] = {c: np.zeros(1, np.float64 if c == "vsum" else np.int64) for c in cols[1:]}

    def _grow(self, size: int) -> None:
        if size <= len(self.known):
            return
        size = max(size, 2 * len(self.known))
        self.known = np.concatenate([self.known, np.zeros(size - len(self.known), bool)])
        for c, a in self.data.items():
            self.data[c] = np.concatenate([a, np.zeros(size - len(a), a.dtype)])

    def forget(self) -> None:
        self.known[:] = False

    def load(self, con: duckdb.DuckDBPyConnection, name: str, sid: np.ndarray, bucket: np.ndarray) -> None:
        """Read, for series not known yet, their stored row at the buckets a batch touches."""
        self._grow(int(sid.max()) + 1)
        unknown = ~self.known[sid]
        if not unknown.any():
            return
        ask = pa.table({"series_id": pa.array(sid[unknown].astype(np.int32)), "bucket": pa.array(bucket[unknown])})
        con.register("_ask", ask)
        try:
            found = con.execute(f"SELECT {', '.join(self.cols)} FROM rollup_{name} r SEMI JOIN _ask a ON "
                                "r.series_id = a.series_id AND r.bucket = a.bucket WHERE r.bucket >= ? AND r.bucket <= ?",
                                [int(bucket[unknown].min()), int(bucket[unknown].max())]).df()
        finally:
            con.unregister("_ask")
        fresh = np.unique(sid[unknown])
        self.known[fresh] = True
        self.data["bucket"][fresh] = _I64_MIN
        if len(found):
            # a series meets at most one stored bucket (its newest); keep that row
            f_sid = found["series_id"].to_numpy(np.int64)
            for c in self.cols[1:]:
                col = found[c]
                if c in _NONE:
                    self.data[c][f_sid] = np.where(col.isna().to_numpy(), _NONE[c], col.fillna(0).to_numpy(np.int64))
                elif c == "vsum":
                    self.data[c][f_sid] = col.to_numpy(np.float64, na_value=0.0)
                else:
                    self.data[c][f_sid] = col.to_numpy(np.int64)

    def keep_newest(self, rows: _Cols) -> None:
        """After a write: each series' newest row in `rows` is its newest stored row now."""
        s_ = rows["series_id"]
        last = np.flatnonzero(np.append(s_[1:] != s_[:-1], True))  # rows are sorted by (series, bucket)
        idx = s_[last]
        self._grow(int(idx.max()) + 1)
        for c in self.cols[1:]:
            self.data[c][idx] = rows[c][last]
        self.known[idx] = True
