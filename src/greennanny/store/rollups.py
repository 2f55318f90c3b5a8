"""The rollup tiers of the embedded store: DuckDB rows for the open month, Parquet files for
closed ones (docs/design/003-store-tiers.md).

A rollup row holds, per (series, bucket): over its served points (quality ok or flagged) count,
min, max, sum and the last point; the 1 h tier also, over all its rows (missing and quarantined
ones too, which are kept but never served), their count and first and last instant, which is
what a series listing shows. The 1 min tier has a row only where a bucket has a served point.

Rollups cover every bucket before the watermark `until` (a UTC midnight, kept in `tier_state`)
and equal a recompute from raw there, by construction: compaction builds a closing day's rows
from raw (`build`), and a write or delete behind the watermark recomputes exactly the buckets it
touches (`rebuild`). Rows live in the tables `rollup_1m` / `rollup_1h` until their UTC month
lies wholly behind the watermark; then `close_months` merges them into the month's Parquet file
(store/cold_rollups.py) and deletes them from the table.

One rule resolves the two places, as for raw points: a table row wins over a file row of the
same (series, bucket). A late point or delete that reaches a closed month recomputes its buckets
into the table (a bucket left with nothing gets a tombstone row: `n = 0` in the 1 min tier,
`rows = 0` in the 1 h tier, never served), and the next compaction merges them into the file.
A crash between a file's rename and the commit that deletes its rows from the table leaves the
same rows in both, which reads resolve the same way; file rows at or after the watermark (a
rolled-back compaction) are never read and are trimmed by the next build.

Retention of a tier deletes its table rows before the cut, drops the month files that end by
it and raises the tier's floor (`rollup_<tier>_from` in `tier_state`): rows of a month that
straddles the cut are not read any more and go with their file once the month is past.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from greennanny.store.cold import DAY_NS
from greennanny.store.cold_rollups import SCHEMAS, RollupMonths, month_of, month_of_day, month_start
from greennanny.store.rollup_build import day_rollups, exact_in_int64
from greennanny.store.writes_behind import WritesBehind

MIN_NS = 60 * 1_000_000_000
HOUR_NS = 60 * MIN_NS
TIERS = {"1m": MIN_NS, "1h": HOUR_NS}
SERVED = "quality IN (0, 2) AND v IS NOT NULL"
_SERVED_R = "r.quality IN (0, 2) AND r.v IS NOT NULL"
# Every tier keeps what downsampled reads need; the 1 h tier also what a series listing shows
# (rows of any quality and their first and last instant). `vsum` is a double: exact for sums of
# sensor integers (below 2**53) and never overflows, so no write can fail on a sum.
BASE_COLS = ["series_id", "bucket", "n", "vmin", "vmax", "vsum", "last_ts", "last_v"]
LISTING_COLS = ["rows", "first_any", "last_any"]
TIER_COLS = {"1m": BASE_COLS, "1h": BASE_COLS + LISTING_COLS}
LIVE = {"1m": "n", "1h": "rows"}  # the column that is 0 in a tombstone
LO, HI = -(2**63), 2**63 - 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollup_1m (series_id INTEGER, bucket BIGINT, n BIGINT, vmin BIGINT, vmax BIGINT,
  vsum DOUBLE, last_ts BIGINT, last_v BIGINT);
CREATE TABLE IF NOT EXISTS rollup_1h (series_id INTEGER, bucket BIGINT, n BIGINT, vmin BIGINT, vmax BIGINT,
  vsum DOUBLE, last_ts BIGINT, last_v BIGINT, rows BIGINT, first_any BIGINT, last_any BIGINT);
CREATE TABLE IF NOT EXISTS tier_state (key VARCHAR PRIMARY KEY, value BIGINT);
"""

RawSql = Callable[..., tuple[str, list[Any]]]
RawDays = Callable[[int, int], Iterator[tuple[int, pa.Table]]]  # (day, its raw rows, sorted) of the days in [lo, hi)


class Rollups:
    """Both rollup tiers on the store's connection, under the store's lock and transaction."""

    def __init__(self, con: duckdb.DuckDBPyConnection, months: RollupMonths, raw_sql: RawSql, raw_days: RawDays,
                 writes: WritesBehind, *, has_state: bool) -> None:
        self.con = con
        self.months = months
        self._raw_sql = raw_sql
        self._raw_days = raw_days
        self.writes = writes
        state = dict(con.execute("SELECT key, value FROM tier_state").fetchall()) if has_state else {}
        self.until = int(state.get("rollups_until", LO))  # rollups cover every bucket before this instant
        self.floor = {name: int(state.get(f"rollup_{name}_from", LO)) for name in TIERS}  # retention

    def _set(self, key: str, value: int) -> None:
        # An UPDATE where the row is there: INSERT OR REPLACE costs ~2 ms more on DuckDB's key index
        if not self.con.execute("UPDATE tier_state SET value = ? WHERE key = ?", [value, key]).fetchall()[0][0]:
            self.con.execute("INSERT INTO tier_state VALUES (?, ?)", [key, value])

    def set_until(self, until: int) -> None:
        self.until = until
        self._set("rollups_until", until)

    def closed_before(self) -> int:
        """The start of the month the watermark is in: every month before it is closed."""
        return LO if self.until == LO else month_start(month_of(self.until))

    def filed_before(self, name: str) -> int:
        """The end of the newest file (month or day) of the tier: table rows before it may shadow
        file rows. The watermark, or the start of the open month for the 1-h tier, except after a
        compaction that died after its rename."""
        return self.months.end(name)

    # -- building ------------------------------------------------------------------------------
    def build(self, lo: int, hi: int) -> None:
        """Rollup rows of every bucket in [lo, hi) (whole days, from the watermark on), from raw,
        a day at a time (store/rollup_build.py): the 1-min rows to the day's file, the 1-h rows
        to the table. The day files are written on a thread (store/writes_behind.py) and may
        still be when this returns: the caller settles `writes` before it commits.

        Files left from `lo` on by a rolled-back compaction go first: day files of days that
        hold nothing now, and a month file whose month is not closed (the 1-min tier's, written
        by a version that merged its month, entirely: the table still holds its rows; the 1-h
        tier's is trimmed to the rows before `lo`)."""
        months = self.months
        for name in TIERS:
            for m in [m for m in months.months(name) if month_start(m + 1) > lo]:
                kept = SCHEMAS[name].empty_table() if name == "1m" else self.con.sql(
                    f"SELECT * FROM {months.scan_sql(name, [str(months.path(name, m))])} WHERE bucket < ?",
                    params=[lo]).to_arrow_table()
                months.write_month(name, m, kept)
            self.con.execute(f"DELETE FROM rollup_{name} WHERE bucket >= ? AND bucket < ?", [lo, hi])
        built: set[int] = set()
        for day, raw in self._raw_days(lo, hi):
            one_m = self._build_day(raw)
            if one_m.num_rows:
                built.add(day)
                self.writes.submit(months.write_day_file, "1m", day, one_m, then=partial(months.adopt_day, "1m", day))
        months.drop_days_from("1m", lo // DAY_NS, built)

    def _build_day(self, raw: pa.Table) -> pa.Table:
        """One day's rollups from its raw rows: the 1-h rows go into the table, the 1-min rows
        (in file order) are returned for the day's file. `raw` is in (series_id, ts) order."""
        if not exact_in_int64(raw):  # sums near int64's bound: DuckDB's HUGEINT sum is the exact one
            self.con.register("_day_raw", raw)
            try:
                one_m = self.con.sql(_rollup_select("1m", MIN_NS, "_day_raw r") + " ORDER BY 1, 2").to_arrow_table() \
                    .rename_columns(TIER_COLS["1m"])
                one_h = self.con.sql(_rollup_select("1h", HOUR_NS, "_day_raw r")).to_arrow_table()
            finally:
                self.con.unregister("_day_raw")
        else:
            one_m = day_rollups(raw, MIN_NS, listing=False)
            one_h = day_rollups(raw, HOUR_NS, listing=True)
        if one_h.num_rows:
            self.con.register("_day_1h", one_h)
            try:
                self.con.execute("INSERT INTO rollup_1h SELECT * FROM _day_1h")
            finally:
                self.con.unregister("_day_1h")
        return one_m

    def rebuild(self, name: str, width: int, b_lo: int, b_hi: int) -> None:
        """Replace the buckets listed in temp table `_touch` (sid, bucket) by a recompute from raw;
        in closed months, a bucket left with nothing gets a tombstone that hides its file row."""
        con = self.con
        con.execute(f"DELETE FROM rollup_{name} r USING _touch t WHERE r.bucket >= ? AND r.bucket < ? "
                    "AND r.series_id = t.sid AND r.bucket = t.bucket", [b_lo, b_hi])
        raw, args = self._raw_sql(b_lo, b_hi, ids_table="_touch")
        bucket = f"r.ts - (((r.ts % {width}) + {width}) % {width})"
        con.execute(_rollup_insert(name, width, f"({raw}) r SEMI JOIN _touch t ON r.series_id = t.sid "
                                                f"AND {bucket} = t.bucket"), args)
        closed = min(b_hi, self.filed_before(name))
        if b_lo < closed and self.months.files(name, b_lo, closed):
            zero = "0, NULL, NULL, NULL, NULL, NULL" + (", 0, NULL, NULL" if name == "1h" else "")
            con.execute(f"INSERT INTO rollup_{name} SELECT t.sid, t.bucket, {zero} FROM _touch t ANTI JOIN "
                        f"(SELECT series_id, bucket FROM rollup_{name} WHERE bucket >= ? AND bucket < ?) r "
                        "ON r.series_id = t.sid AND r.bucket = t.bucket WHERE t.bucket >= ? AND t.bucket < ?",
                        [b_lo, closed, b_lo, closed])

    def close_months(self) -> int:
        """Merge the table rows of every closed month into its files (file first, atomically;
        the table's delete commits with the caller's transaction) and return the files written:
        the 1-h tier's into the month file; the 1-min tier's (late points and deletes behind the
        watermark, which shadow file rows until then) into their day files (or their month file,
        where one is there from a version that made them)."""
        closed = self.closed_before()
        written = 0
        first = self.con.execute("SELECT min(bucket) FROM rollup_1h WHERE bucket < ?", [closed]).fetchall()
        if first[0][0] is not None:
            for m in range(month_of(int(first[0][0])), month_of(closed)):
                lo, hi = month_start(m), month_start(m + 1)
                if self._table_rows("1h", lo, hi):
                    self._merge("1h", lo, hi, partial(self.months.write_month, "1h", m))
                    written += 1
        months = self.months
        late = [int(d) for (d,) in self.con.execute(
            f"SELECT DISTINCT (bucket - (((bucket % {DAY_NS}) + {DAY_NS}) % {DAY_NS})) // {DAY_NS} FROM rollup_1m "
            "WHERE bucket < ? ORDER BY 1", [closed]).fetchall()]
        filed = set(months.months("1m"))
        for m in sorted({month_of_day(d) for d in late} & filed):
            self._merge("1m", month_start(m), month_start(m + 1), partial(months.write_month, "1m", m))
            written += 1
        for d in [d for d in late if month_of_day(d) not in filed]:
            self._merge("1m", d * DAY_NS, (d + 1) * DAY_NS, partial(months.write_day, "1m", d))
            written += 1
        return written

    def _table_rows(self, name: str, lo: int, hi: int) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM rollup_{name} WHERE bucket >= ? AND bucket < ?",
                                    [lo, hi]).fetchall()[0][0])

    def _merge(self, name: str, lo: int, hi: int, write: Callable[[pa.Table], int]) -> None:
        """The file of [lo, hi) (a month or a day) written as its table rows over its file rows
        (tombstones left out), then its table rows deleted."""
        cols = ", ".join(TIER_COLS[name])
        keep_lo = max(lo, self.floor[name])
        sql = f"SELECT {cols} FROM rollup_{name} t WHERE bucket >= ? AND bucket < ? AND t.{LIVE[name]} > 0"
        args: list[Any] = [keep_lo, hi]
        files = self.months.files(name, lo, hi)
        if files:
            c_cols = ", ".join(f"c.{c}" for c in TIER_COLS[name])
            sql += (f" UNION ALL SELECT {c_cols} FROM {self.months.scan_sql(name, files)} c ANTI JOIN "
                    f"(SELECT series_id, bucket FROM rollup_{name} WHERE bucket >= ? AND bucket < ?) o "
                    "ON o.series_id = c.series_id AND o.bucket = c.bucket WHERE c.bucket >= ? AND c.bucket < ?")
            args += [lo, hi, keep_lo, min(hi, self.until)]
        write(self.con.sql(sql, params=args).to_arrow_table())
        self.con.execute(f"DELETE FROM rollup_{name} WHERE bucket >= ? AND bucket < ?", [lo, hi])

    # -- retention -------------------------------------------------------------------------------
    def drop_before(self, name: str, ts_ns: int) -> int:
        """Retention of tier `name`: no bucket before `ts_ns` is read any more; returns how many
        were removed (table rows deleted, month files dropped, rows of a straddling month hidden)."""
        if ts_ns <= self.floor[name]:
            return 0
        src, args, regs = self.source(name, self.floor[name], ts_ns)
        n = int(self.con.execute(f"SELECT count(*) FROM ({src})", args).fetchall()[0][0]) if src else 0
        assert not regs
        self.con.execute(f"DELETE FROM rollup_{name} WHERE bucket < ?", [ts_ns])
        self.months.drop_before(name, month_of(ts_ns))
        self.months.drop_days_before(name, ts_ns // DAY_NS)
        self.floor[name] = ts_ns
        self._set(f"rollup_{name}_from", ts_ns)
        return n

    # -- reading ---------------------------------------------------------------------------------
    def source(self, name: str, lo: int, hi: int, *, ids_table: str | None = None, series_id: int | None = None,
               con: duckdb.DuckDBPyConnection | None = None) -> tuple[str, list[Any], list[str]]:
        """SQL (args, and names of Arrow tables registered on `con` for it, to unregister after
        the query) of the rollup rows of tier `name` with bucket in [lo, hi): table rows over
        month-file rows, behind the watermark and the tier's floor, tombstones left out.
        Empty SQL when the range holds nothing."""
        lo, hi = max(lo, self.floor[name]), min(hi, self.until)
        if lo >= hi:
            return "", [], []
        cols = TIER_COLS[name]
        join = f" SEMI JOIN {ids_table} ON t.series_id = {ids_table}.sid" if ids_table else ""
        cond, args = "t.bucket >= ? AND t.bucket < ?", [lo, hi]
        if series_id is not None:
            cond += " AND t.series_id = ?"
            args.append(series_id)
        sql = f"SELECT {', '.join('t.' + c for c in cols)} FROM rollup_{name} t{join} WHERE {cond} AND t.{LIVE[name]} > 0"
        files = self.months.files(name, lo, hi)
        if not files:
            return sql, args, []
        o_hi = min(hi, self.filed_before(name))  # table rows that can shadow a file row
        con = con or self.con
        if series_id is not None:  # one series: its row groups only (see store/cold_rollups.py), and
            # the table rows that shadow them left out here: a DuckDB anti join costs ~3 ms a query
            cold = self.months.series_rows(name, series_id, lo, hi, cols)
            shadow = con.execute(f"SELECT bucket FROM rollup_{name} WHERE bucket >= ? AND bucket < ? AND series_id = ?",
                                 [lo, o_hi, series_id]).fetchnumpy()["bucket"]
            if len(shadow):
                cold = cold.filter(pc.invert(pc.is_in(cold.column("bucket"), pa.array(np.asarray(shadow, np.int64)))))
            con.register(f"_cold_{name}", cold)
            return f"{sql} UNION ALL SELECT {', '.join(cols)} FROM _cold_{name}", args, [f"_cold_{name}"]
        src = self.months.scan_sql(name, files)
        c_join = f" SEMI JOIN {ids_table} ON c.series_id = {ids_table}.sid" if ids_table else ""
        sql += (f" UNION ALL SELECT {', '.join('c.' + c for c in cols)} FROM {src} c{c_join} ANTI JOIN "
                f"(SELECT series_id, bucket FROM rollup_{name} WHERE bucket >= ? AND bucket < ?) o "
                "ON o.series_id = c.series_id AND o.bucket = c.bucket WHERE c.bucket >= ? AND c.bucket < ?")
        return sql, args + [lo, o_hi, lo, hi], []

    def rows(self, name: str, lo: int, hi: int, *, ids_table: str | None = None,
             series_id: int | None = None) -> pd.DataFrame:
        """The rollup rows of tier `name` whose bucket starts in [lo, hi), ordered (tests, audits)."""
        width = TIERS[name]
        src, args, regs = self.source(name, lo - (lo % width), hi, ids_table=ids_table, series_id=series_id)
        try:
            if not src:
                return pd.DataFrame({c: pd.Series(dtype="int64") for c in TIER_COLS[name]})
            return self.con.execute(f"SELECT * FROM ({src}) ORDER BY series_id, bucket", args).df()
        finally:
            for r in regs:
                self.con.unregister(r)

    def stats(self, con: duckdb.DuckDBPyConnection) -> dict[str, int]:
        """Rows and bytes of each tier (`db stats`): rows read as served (table and files, less
        tombstones and shadowed file rows), bytes of its month files and of its table's blocks."""
        out: dict[str, int] = {}
        block = int(con.execute("SELECT block_size FROM pragma_database_size()").fetchall()[0][0])
        for name in TIERS:
            src, args, _ = self.source(name, LO, HI)
            out[f"rollup_{name}_rows"] = int(con.execute(f"SELECT count(*) FROM ({src})", args).fetchall()[0][0]) \
                if src else 0
            out[f"rollup_{name}_months"] = len(self.months.months(name))
            out[f"rollup_{name}_days"] = len(self.months.days(name))
            out[f"rollup_{name}_file_bytes"] = self.months.bytes(name)
            blocks = con.execute(f"SELECT count(DISTINCT block_id) FROM pragma_storage_info('rollup_{name}') "
                                 "WHERE persistent AND block_id >= 0").fetchall()[0][0]
            out[f"rollup_{name}_bytes"] = out[f"rollup_{name}_file_bytes"] + int(blocks) * block
        return out


def _rollup_insert(name: str, width: int, source: str) -> str:
    """INSERT of rollup tier `name` rows aggregated from `source`, raw rows aliased `r`."""
    return f"INSERT INTO rollup_{name} " + _rollup_select(name, width, source)


def _rollup_select(name: str, width: int, source: str) -> str:
    """SELECT of rollup tier `name` rows aggregated from `source`, raw rows aliased `r`: the one
    definition of what a rollup row holds (served aggregates; the hourly tier also all rows);
    store/rollup_build.py computes the same in numpy."""
    f = f"FILTER (WHERE {_SERVED_R})"
    listing = ", count(*), min(r.ts), max(r.ts)" if name == "1h" else ""
    where = "" if name == "1h" else f" WHERE {_SERVED_R}"  # the 1-min tier keeps served buckets only
    return (f"SELECT r.series_id, r.ts - (((r.ts % {width}) + {width}) % {width}) AS b, "
            f"count(*) {f}, min(r.v) {f}, max(r.v) {f}, (sum(r.v) {f})::DOUBLE, max(r.ts) {f}, arg_max(r.v, r.ts) {f}"
            f"{listing} FROM {source}{where} GROUP BY 1, 2")
