"""The point tables of the embedded store: hot rows, cold days, rollups (docs/design/003).

`PointTables` works on the store's DuckDB connection under the store's lock and transaction; it
knows nothing of series keys or units. Values arrive and leave as integers at storage resolution
(`v`, NULL for a missing row); the store converts. Reads see one table of raw points: the hot
rows, plus the cold day files with any (series, ts) that the hot tier also holds left out, so a
late point written after its day was compacted wins, as every write does.

Rollups (store/rollups.py) cover every bucket before the watermark `until`: compaction builds a
closing day's rollups from its rows in the transaction that moves it to the cold tier and
advances the watermark; a write or delete that reaches behind the watermark (a late point)
recomputes from raw exactly the buckets it touches. Reads take whole buckets from the rollups
there and aggregate the raw rows after it: the hot window, a few days at most. Writes in the hot
window, which is what live ingest does, do no rollup work at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from greennanny.store.bucket_merge import merge_buckets, tier_for
from greennanny.store.cold import DAY_NS, ColdTier, day_of, sort_rows
from greennanny.store.cold import SCHEMA as COLD_SCHEMA
from greennanny.store.cold_rollups import RollupMonths
from greennanny.store.rollups import (  # noqa: F401 - re-exported: tests and the store name them here
    BASE_COLS,
    HI,
    HOUR_NS,
    LISTING_COLS,
    LIVE,
    LO,
    MIN_NS,
    SERVED,
    TIER_COLS,
    TIERS,
    Rollups,
)
from greennanny.store.rollups import SCHEMA as ROLLUP_SCHEMA
from greennanny.store.writes_behind import WritesBehind

SCHEMA = "CREATE TABLE IF NOT EXISTS points (series_id INTEGER, ts BIGINT, v BIGINT, quality UTINYINT);" + ROLLUP_SCHEMA


_DAY_ROWS_KEPT = 3_000_000  # rows of closed days kept for their move (~63 MB; 1,000 series at 5 min: 864,000)


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
        # Rows of closed days as compaction's rollup build read them (hot over cold, sorted), kept
        # for the move of the same day to its cold file two days later: that move then neither
        # queries nor sorts them again. Any write, delete or retention that reaches a day drops it.
        self._day_rows: dict[int, pa.Table] = {}
        has_state = create or bool(con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'tier_state'").fetchall()[0][0])
        self.writes = WritesBehind()  # compaction's files, encoded on a thread (settled before its commit)
        self.rollups = Rollups(con, RollupMonths(cold.root), self.raw_sql, self._raw_days, self.writes,
                               has_state=has_state)
        # The newest instant stored per series (any quality): a batch entirely newer than it cannot
        # collide with a stored row, so it skips the collision queries. Seeded from all raw rows.
        self._last = np.full(1, _I64_MIN, np.int64)
        # And the oldest (never raised by deletes or retention, so a bound only): a downsampled read
        # skips the raw edge of a range that ends before it, a year before the first point for one.
        self._first = np.full(1, _I64_MAX, np.int64)
        raw, args = self.raw_sql(LO, HI)
        for sid_, first, last in con.execute(f"SELECT series_id, min(ts), max(ts) FROM ({raw}) GROUP BY 1",
                                             args).fetchall():
            self._grow(int(sid_) + 1)
            self._last[int(sid_)], self._first[int(sid_)] = int(last), int(first)

    @property
    def until(self) -> int:
        """The rollup watermark: rollups cover every bucket before this instant."""
        return self.rollups.until

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

    def _raw_days(self, lo: int, hi: int) -> Iterator[tuple[int, pa.Table]]:
        """(day, its raw rows, hot over cold, in (series_id, ts) order) of every UTC day in
        [lo, hi) with any; the rows of days still hot are kept for their move (`_day_rows`)."""
        day = f"(ts - (((ts % {DAY_NS}) + {DAY_NS}) % {DAY_NS})) // {DAY_NS}"
        hot = {int(d) for (d,) in self.con.execute(f"SELECT DISTINCT {day} FROM points WHERE ts >= ? AND ts < ?",
                                                   [lo, hi]).fetchall()}
        days = hot | {d for d in self._cold_days if lo <= d * DAY_NS and (d + 1) * DAY_NS <= hi}
        for d in sorted(days):
            raw, args = self.raw_sql(d * DAY_NS, (d + 1) * DAY_NS)
            rows = sort_rows(self.con.sql(f"SELECT series_id, ts, v, quality FROM ({raw})", params=args)
                             .to_arrow_table().cast(COLD_SCHEMA))
            if d in hot and sum(t.num_rows for t in self._day_rows.values()) + rows.num_rows <= _DAY_ROWS_KEPT:
                self._day_rows[d] = rows
            yield d, rows

    def _forget_days(self, lo: int, hi: int) -> None:
        """Drop the kept rows of the days that [lo, hi] (inclusive) reaches: their rows change."""
        if self._day_rows:
            first, last = day_of(lo), day_of(hi)
            for d in [d for d in self._day_rows if first <= d <= last]:
                del self._day_rows[d]

    def _files(self, lo: int, hi: int) -> list[str]:
        if not self._cold_days:
            return []
        first, last = (day_of(max(lo, 0)), day_of(max(hi - 1, 0)))
        return [str(self.cold.path(d)) for d in sorted(self._cold_days) if first <= d <= last]

    # -- writing ---------------------------------------------------------------------------
    def _grow(self, size: int) -> None:
        if size > len(self._last):
            more = max(size, 2 * len(self._last)) - len(self._last)
            self._last = np.concatenate([self._last, np.full(more, _I64_MIN)])
            self._first = np.concatenate([self._first, np.full(more, _I64_MAX)])

    def write(self, sid: np.ndarray, ts: np.ndarray, v: np.ndarray, valid: np.ndarray, quality: np.ndarray) -> Written:
        """Append rows (last wins per (series, ts)); rollup buckets behind the watermark that they
        touch are recomputed, the hot window needs nothing."""
        n = len(ts)
        if not n:
            return Written(0, 0)
        self._forget_days(int(ts.min()), int(ts.max()))
        sid = sid.astype(np.int64, copy=False)
        self._grow(int(sid.max()) + 1)
        order = np.lexsort((ts, sid))
        s_sorted, t_sorted = sid[order], ts[order]
        in_batch_dup = bool(((s_sorted[1:] == s_sorted[:-1]) & (t_sorted[1:] == t_sorted[:-1])).any())
        if not in_batch_dup and bool((ts > self._last[sid]).all()):
            # Live ingest: every row is newer than anything stored for its series: no collision.
            tbl = pa.table({"series_id": pa.array(sid.astype(np.int32)), "ts": pa.array(ts),
                            "v": pa.array(v.astype(np.int64), mask=~valid), "quality": pa.array(quality.astype(np.uint8))})
            self.con.register("_in", tbl)
            try:
                self.con.execute("INSERT INTO points SELECT * FROM _in")
            finally:
                self.con.unregister("_in")
            out = Written(n, 0)
        else:
            out = self._write_general(sid, ts, v, valid, quality)
        np.maximum.at(self._last, sid, ts)
        np.minimum.at(self._first, sid, ts)
        behind = ts < self.until
        if behind.any():  # late for the rollups: recompute what these rows touch
            self._recompute_rows(sid[behind], ts[behind])
        return out

    def _recompute_rows(self, sid: np.ndarray, ts: np.ndarray) -> None:
        tbl = pa.table({"series_id": pa.array(sid.astype(np.int32)), "ts": pa.array(ts.astype(np.int64))})
        self.con.register("_late", tbl)
        try:
            self._recompute_from("_late", int(ts.min()), int(ts.max()) + 1)
        finally:
            self.con.unregister("_late")

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
        finally:
            con.unregister("_in")
        return Written(len(df), replaced + hot_hits + cold_hits)

    def _recompute_from(self, rows_table: str, lo: int, hi: int) -> None:
        """Recompute every rollup bucket before the watermark that a row of `rows_table`
        (series_id, ts) falls in."""
        hi = min(hi, self.until)
        if lo >= hi:
            return
        con = self.con
        for name, width in TIERS.items():
            b_lo, b_hi = lo - lo % width, (hi - 1) - (hi - 1) % width + width
            con.execute(f"CREATE OR REPLACE TEMP TABLE _touch AS SELECT DISTINCT series_id AS sid, "
                        f"ts - (((ts % {width}) + {width}) % {width}) AS bucket FROM {rows_table} WHERE ts < {self.until}")
            self.rollups.rebuild(name, width, b_lo, b_hi)

    def delete(self, lo: int, hi: int, series: list[int] | None) -> int:
        """Delete raw rows in [lo, hi) (of `series`, or all), hot and cold; rollups follow."""
        con = self.con
        if lo < hi:
            self._forget_days(lo, hi - 1)
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
    def compact(self, before_ns: int, rollups_before_ns: int | None = None) -> int:
        """Move every whole UTC day before `before_ns` from the hot tier into its cold file, and
        build the rollups of everything up to the midnight before `rollups_before_ns` (default
        `before_ns`; the new watermark); rollups of the months that closed move to their month
        files (store/rollups.py).

        Runs inside the store's transaction: the file is replaced first (atomically), then the
        day's hot rows are deleted. A crash in between leaves rows in both tiers, which reads
        resolve (hot wins, same values) and the next compaction repeats; the rollups and the
        watermark commit with the deletes or not at all. Returns days moved.
        """
        con = self.con
        cold_until = day_of(before_ns) * DAY_NS
        new_until = max(cold_until, day_of(rollups_before_ns if rollups_before_ns is not None else before_ns) * DAY_NS)
        rows = con.execute("SELECT DISTINCT ts // ? AS d FROM points WHERE ts < ? ORDER BY 1",
                           [DAY_NS, cold_until]).fetchall()
        try:
            if new_until > self.until:
                self.rollups.build(self.until, new_until)
                self.rollups.set_until(new_until)
            for (day,) in rows:
                self._rewrite_day(int(day), behind=True)
                con.execute("DELETE FROM points WHERE ts >= ? AND ts < ?", [day * DAY_NS, (day + 1) * DAY_NS])
            self.rollups.close_months()  # also merges late rows recomputed into closed days and months
        finally:
            self.writes.settle()  # every file in place before the caller commits
        return len(rows)

    def _rewrite_day(self, day: int, drop: tuple[int, int, list[int] | None] | None = None, *,
                     behind: bool = False) -> None:
        """Write the day's file as its cold rows, overlaid by its hot rows, less `drop`; with
        `behind`, on the writer thread (listed once `writes` settles)."""
        start, end = day * DAY_NS, (day + 1) * DAY_NS
        kept = self._day_rows.pop(day, None)
        if kept is not None and drop is None:
            table = kept  # as the rollup build read it (sorted), and nothing has reached the day since
        else:
            raw, args = self.raw_sql(start, end)
            sql = f"SELECT series_id, ts, v, quality FROM ({raw}) WHERE true"
            extra: list[Any] = []
            if drop is not None:
                d_lo, d_hi, d_series = drop
                sql += " AND NOT (ts >= ? AND ts < ?" + ("" if d_series is None else " AND list_contains(?, series_id)") + ")"
                extra = [d_lo, d_hi] + ([] if d_series is None else [d_series])
            table = self.con.sql(sql, params=args + extra).to_arrow_table()
        if behind:
            self.writes.submit(self.cold.write_day, day, table, then=partial(self._listed, day, table.num_rows))
        else:
            self.cold.write_day(day, table)
            self._listed(day, table.num_rows)

    def _listed(self, day: int, rows: int) -> None:
        if rows:
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
        self._forget_days(LO, ts_ns)
        self._cold_days = {d for d in self._cold_days if d >= keep}  # readers stop listing them first
        return n + self.cold.drop_before(keep)

    def drop_rollups_before(self, name: str, ts_ns: int) -> int:
        return self.rollups.drop_before(name, ts_ns)

    # -- reads -------------------------------------------------------------------------------
    def rollup(self, name: str, lo: int, hi: int, *, ids_table: str | None = None,
               series_id: int | None = None) -> pd.DataFrame:
        """The stored rollup rows of tier `name` whose bucket starts in [lo, hi), table and month
        files (tests, audits)."""
        return self.rollups.rows(name, lo, hi, ids_table=ids_table, series_id=series_id)

    def bucketed(self, lo: int, hi: int, every: int, *, ids_table: str | None = None,
                 series_id: int | None = None, con: duckdb.DuckDBPyConnection | None = None) -> pd.DataFrame:
        """Served points in [lo, hi) per (series, `every`-bucket): n, vmin, vmax, vsum, last_ts,
        last_v (integers at storage resolution; vsum a double).

        Whole rollup buckets inside the range come from the coarsest tier that divides `every`;
        the partial buckets at either edge are aggregated from raw, so the answer equals an
        aggregate over raw exactly, while a year at 1 h reads 8,760 rollup rows, not 105,120 points.
        """
        tier = tier_for(every)
        agg = "count(*) AS n, min(v) AS vmin, max(v) AS vmax, sum(v)::DOUBLE AS vsum, max(ts) AS last_ts, arg_max(v, ts) AS last_v"
        parts: list[str] = []
        args: list[Any] = []
        raw_ranges = [(lo, hi)]
        con = con or self.con
        regs: list[str] = []
        if tier is not None:
            w = TIERS[tier]
            inner_lo, inner_hi = -((-lo) // w) * w, (min(hi, self.until) // w) * w  # rollups stop at the watermark
            if inner_lo < inner_hi:
                raw_ranges = [(lo, inner_lo), (inner_hi, hi)]
                src, s_args, regs = self.rollups.source(tier, inner_lo, inner_hi, ids_table=ids_table,
                                                        series_id=series_id, con=con)
                if src:
                    parts.append(f"SELECT series_id, bucket, n, vmin, vmax, vsum, last_ts, last_v FROM ({src}) "
                                 "WHERE n > 0")
                    args += s_args
        first = int(self._first[series_id] if series_id is not None and series_id < len(self._first)
                    else self._first.min())
        raws: list[str] = []
        for r_lo, r_hi in raw_ranges:
            if r_lo >= r_hi or r_hi <= first:
                continue
            raw, raw_args = self.raw_sql(r_lo, r_hi, ids_table=ids_table, series_id=series_id)
            raws.append(raw)
            args += raw_args
        if raws:  # one aggregate over both edges: DuckDB takes ~0.15 ms to plan each aggregate
            parts.append(f"SELECT series_id, ts - (((ts % {every}) + {every}) % {every}) AS bucket, {agg} "
                         f"FROM ({' UNION ALL '.join(raws)}) WHERE {SERVED} GROUP BY 1, 2")
        if not parts:
            return pd.DataFrame(columns=BASE_COLS)
        union = " UNION ALL ".join(parts)
        if tier is not None and every == TIERS[tier]:  # rollup and raw edge buckets are whole and disjoint
            sql = f"SELECT * FROM ({union}) ORDER BY 1, 2"
        else:
            sql = (f"SELECT series_id, bucket - (((bucket % {every}) + {every}) % {every}) AS bucket, "
                   "sum(n)::BIGINT AS n, min(vmin) AS vmin, max(vmax) AS vmax, sum(vsum) AS vsum, "
                   f"max(last_ts) AS last_ts, arg_max(last_v, last_ts) AS last_v FROM ({union}) GROUP BY 1, 2 ORDER BY 1, 2")
        try:
            return con.execute(sql, args).df()
        finally:
            for r in regs:
                con.unregister(r)

    def bucketed_one(self, lo: int, hi: int, every: int, series_id: int, *, last: bool = True,
                     con: duckdb.DuckDBPyConnection | None = None) -> dict[str, np.ndarray] | None:
        """`bucketed` of one series as numpy columns (BASE_COLS less series_id; less last_ts and
        last_v too unless `last`: each column read costs ~0.1 ms per month file and per table
        scan), computed without an aggregate query; None where it does not apply (`every` not a
        positive multiple of a tier's width: the SQL path answers those).

        DuckDB spends ~4 ms planning the aggregate SQL of `bucketed` (about 0.15 ms per aggregate
        function), more than the rows take to read, so here: one plain SELECT (no aggregate) takes
        the series' rollup table rows (the open month, and the overrides and tombstones of closed
        months) and its served raw rows of the edges; the month files' rows of the series come
        from their row groups (cold_rollups.series_rows); table rows shadow file rows as in
        `Rollups.source`, and numpy merges everything into `every`-buckets. The rows and the
        resolution are those of `bucketed` (tests/unit/test_store_fast_read.py checks they are equal).
        The month files are read on a worker thread while the SELECT runs, and used only if they
        are still the same files after it (else read again). Where the time goes (50 M-point bench
        store, 2 cores, p50): the SELECT ~2.3 ms (it scans the open month's table rows of all
        series and today's raw rows), the month files ~0.4 ms each (one row group, five columns,
        from a file kept open), mostly hidden under the SELECT; numpy and the frame ~1 ms.
        """
        tier = tier_for(every) if every > 0 else None
        if tier is None:
            return None
        names = _ONE_COLS if last else _ONE_COLS[:5]
        con = con or self.con
        rollups = self.rollups
        until, w = rollups.until, TIERS[tier]
        floor = rollups.floor[tier]
        parts: list[str] = []
        args: list[Any] = []
        raw_ranges = [(lo, hi)]
        r_lo = r_hi = 0
        inner_lo, inner_hi = -((-lo) // w) * w, (min(hi, until) // w) * w
        if inner_lo < inner_hi:
            raw_ranges = [(lo, inner_lo), (inner_hi, hi)]
            r_lo, r_hi = max(inner_lo, floor), inner_hi  # as Rollups.source clips them
            if r_lo < r_hi:  # every table row of the series (tombstones too: they shadow file rows)
                sel = ", ".join(f"coalesce({c}, 0) AS {c}" for c in names)
                parts.append(f"SELECT {sel}, {LIVE[tier]} AS live FROM rollup_{tier} WHERE series_id = ? "
                             "AND bucket >= ? AND bucket < ?")
                args += [series_id, r_lo, r_hi]
        first = int(self._first[series_id]) if series_id < len(self._first) else _I64_MAX
        for e_lo, e_hi in raw_ranges:
            if e_lo >= e_hi or e_hi <= first:
                continue
            raw, raw_args = self.raw_sql(e_lo, e_hi, series_id=series_id)
            sel = "ts AS bucket, 1::BIGINT AS n, v AS vmin, v AS vmax, v::DOUBLE AS vsum" + (
                ", ts AS last_ts, v AS last_v" if last else "")
            parts.append(f"SELECT {sel}, -1::BIGINT AS live FROM ({raw}) WHERE {SERVED}")
            args += raw_args
        cols: dict[str, np.ndarray] = {c: np.zeros(0, np.float64 if c == "vsum" else np.int64) for c in names}
        live = np.zeros(0, np.int64)
        months = rollups.months
        # The month files are read on a thread while DuckDB runs the SELECT (both release the GIL):
        # ~1.4 ms less a year (p50; 2 ms at p95) on the 50 M-point bench store, 2 cores.
        ahead = _READS.submit(months.series_rows_as_of, tier, series_id, r_lo, r_hi, names) \
            if r_lo < r_hi and months.files(tier, r_lo, r_hi) else None
        if parts:
            got = con.execute(" UNION ALL ".join(parts), args).fetchnumpy()
            cols = {c: np.asarray(got[c], np.float64 if c == "vsum" else np.int64) for c in names}
            live = np.asarray(got["live"], np.int64)
        # The files as they are after the SELECT count, not before: a compaction that merges table
        # rows into a file renames the file before it commits the delete of those rows, so a
        # snapshot without the rows is always followed by a file with them. So the rows read ahead
        # are used only if the same files (name, device, inode, size, mtime) are there after the
        # SELECT; else (a compaction or retention in between) the files are read again, after it.
        cold = None
        if ahead is not None:
            cold, seen = ahead.result()
            if rollups.months is not months or months.changed(seen):
                cold = None
        if cold is None and r_lo < r_hi and rollups.months.files(tier, r_lo, r_hi):
            cold = rollups.months.series_rows(tier, series_id, r_lo, r_hi, names)
        if cold is not None and cold.num_rows:
            shadow = cols["bucket"][live >= 0]  # a table row wins over the file row of its bucket
            c_cols = {c: np.asarray(cold.column(c).fill_null(0).to_numpy(), np.float64 if c == "vsum" else np.int64)
                      for c in names}  # an hourly row of unserved rows only has NULL aggregates
            keep = ~np.isin(c_cols["bucket"], shadow) if len(shadow) else slice(None)
            cols = {c: np.concatenate([cols[c], c_cols[c][keep]]) for c in names}
            live = np.concatenate([live, np.ones(len(cols["bucket"]) - len(live), np.int64)])
        served = (live != 0) & (cols["n"] > 0)  # no tombstones, no buckets of unserved rows only
        return merge_buckets({c: v[served] for c, v in cols.items()}, every)

    def summary_sql(self) -> tuple[str, list[Any]]:
        """SQL of one row per series over all its points: rows, first_any, last_any (every row)
        and n, last_ts, last_v (served rows): the hourly rollups before the watermark plus the
        raw rows after it, so a listing never scans the years behind the watermark."""
        raw, args = self.raw_sql(self.until, HI)
        src, s_args, _ = self.rollups.source("1h", LO, HI)  # every series: no Arrow table registered
        f = f"FILTER (WHERE {SERVED})"
        hourly = f"SELECT series_id, rows, first_any, last_any, n, last_ts, last_v FROM ({src}) UNION ALL " if src else ""
        return ((f"SELECT series_id, sum(rows) AS rows, min(first_any) AS first_any, max(last_any) AS last_any, "
                f"sum(n) AS n, max(last_ts) AS last_ts, arg_max(last_v, last_ts) AS last_v FROM ({hourly}"
                f"SELECT series_id, count(*) AS rows, min(ts) AS first_any, max(ts) AS last_any, count(*) {f} AS n, "
                f"max(ts) {f} AS last_ts, arg_max(v, ts) {f} AS last_v "
                f"FROM ({raw}) GROUP BY 1) GROUP BY 1"), s_args + args)

    def hot_rows(self) -> int:
        row = self.con.execute("SELECT count(*) FROM points").fetchall()[0]
        return int(row[0]) if row else 0


_ONE_COLS = BASE_COLS[1:]  # bucket, n, vmin, vmax, vsum, last_ts, last_v
_READS = ThreadPoolExecutor(2, thread_name_prefix="store-month-read")  # one-series month-file reads (bucketed_one)


def scale_of(resolution: float) -> tuple[float, bool]:
    """(factor, divide): value = v / factor when the resolution is 1/integer (exact decimals),
    else value = v * factor. 0.01 -> (100, True), so 2340 reads back as 23.4, not 23.400000000000002."""
    inv = 1.0 / resolution
    if resolution < 1 and math.isclose(inv, round(inv), rel_tol=0, abs_tol=1e-9):
        return float(round(inv)), True
    return float(resolution), False


_I64_MIN = np.iinfo(np.int64).min  # "no instant yet" for a series
_I64_MAX = np.iinfo(np.int64).max

