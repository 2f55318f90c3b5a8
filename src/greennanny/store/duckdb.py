"""The embedded default store: one DuckDB file in the data directory, owned by the node.

Why DuckDB: columnar and compressed on disk, appends whole Arrow/pandas columns without a row
loop, and answers range and downsampling queries in SQL. Points live in tiers (store/points.py,
docs/design/003-store-tiers.md): hot rows in DuckDB, closed days as Parquet files beside the
file, rollups at 1 min and 1 h; values are integers at their quantity's storage resolution; a row
that is not OK has its reason in `point_notes`. Writes are last-wins per (series_id, ts): rows of
the batch replace stored rows at the same instant (counted), which makes redelivery after a
crash harmless.

Concurrency: one connection writes under a lock; readers (API threads) use their own cursors.

A full disk (docs/operations.md): a write that cannot get space raises `DiskFull` naming the file
and the bytes free, and rolls back whole; nothing committed is touched. A CHECKPOINT that fails
for want of space makes DuckDB invalidate the connection; the store then opens the file again at
once (every commit is in the file or its WAL), so reads go on and writes resume once space is freed.

Free space inside the file: DuckDB reuses free blocks but truncates only those at the file's end,
so the file stays at its high-water mark (the open month's 1-min rollups leave the table when the
month closes into its Parquet file). Maintenance rewrites the file compactly when much of it is
free (`rewrite`): a fresh copy next to it, fsynced and renamed over it with the connection closed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from greennanny.errors import DiskFull, SchemaVersionError, StoreUnavailable
from greennanny.model import QUANTITIES, Batch, SeriesKey
from greennanny.store.base import (
    CAP_COUNTS_OVERWRITES,
    CAP_DEADLETTERS,
    CAP_DELETE_RANGE,
    CAP_DEVICES,
    CAP_DOWNSAMPLE,
    CAP_FORECASTS,
    CAP_INGEST_COMMIT,
    CAP_LATEST,
    CAP_QUERY,
    CAP_QUERY_MANY,
    CAP_RETENTION,
    CAP_SERIES,
    CAP_UNSERVED_ROWS,
    CAP_WRITE,
    Aggregate,
    IngestCommit,
    SeriesInfo,
    WriteResult,
    check_aggregate,
    concat_batches,
    split_not_finite,
    take_rows,
)
from greennanny.store.cold import ColdTier
from greennanny.store.duckdb_failures import Failures
from greennanny.store.duckdb_maintain import Maintenance, Retention, retention_from
from greennanny.store.duckdb_node import NodeTables
from greennanny.store.duckdb_rewrite import FileRewrite
from greennanny.store.duckdb_sql import META, SCHEMA, first_line, first_row, scalar
from greennanny.store.points import HI, LO, PointTables, scale_of

log = logging.getLogger("greennanny.store")

T = TypeVar("T")

SCHEMA_VERSION = 2  # 2: points as integers at storage resolution in tiers, rollups (design 003)

_AGG_SQL = {
    "min": "min(value)",
    "mean": "avg(value)",
    "max": "max(value)",
    "last": "arg_max(value, ts)",
    "count": "count(*)::DOUBLE",
}


class DuckDBStore(Failures, FileRewrite, NodeTables, Maintenance):
    """DuckDB backend of the store contract (see store/base.py)."""

    capabilities = frozenset({
        CAP_WRITE, CAP_QUERY, CAP_QUERY_MANY, CAP_DOWNSAMPLE, CAP_LATEST, CAP_SERIES, CAP_DELETE_RANGE,
        CAP_RETENTION, CAP_COUNTS_OVERWRITES, CAP_UNSERVED_ROWS, CAP_INGEST_COMMIT, CAP_DEADLETTERS, CAP_DEVICES,
        CAP_FORECASTS,
    })

    def __init__(self, path: str | Path, *, read_only: bool = False, retention: Retention | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._read_only = read_only
        self._lock = threading.RLock()
        self.retention_policy = retention or Retention()
        self._invalid = False  # DuckDB invalidated the connection (a failed CHECKPOINT): open it again
        self.fast_one_series = True  # `query` with `every`: numpy over one series' rows (tests turn it off)
        self._open()

    def _open(self) -> None:
        """Connect to the file and load what the store keeps in memory (series ids, tier state)."""
        read_only = self._read_only
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            full = self._failure(exc, "opening the file")
            raise full if isinstance(full, DiskFull) else StoreUnavailable(
                f"cannot open store {self.path}: {exc}") from exc
        self._local = threading.local()
        if not read_only:  # we hold DuckDB's lock on the file: no rewrite of ours is under way
            self._remove_rewrite_leftovers()
            self._con.execute(META)
        self._check_version(read_only)  # before any other table is made: never touch a newer file
        if not read_only:
            self._con.execute(SCHEMA)
        if hasattr(self, "tiers"):  # opened again: the month files the last one kept open go
            self.tiers.rollups.months.close()
        self.tiers = PointTables(self._con, ColdTier(self.path.with_name(self.path.name + ".cold")),
                                 create=not read_only)
        self._ids: dict[SeriesKey, int] = {}
        self._factor = np.ones(1, np.float64)  # by series id: value = v / factor (divide) or v * factor
        self._divide = np.zeros(1, bool)
        for sid, site, zone, dev, q in self._con.execute(
            "SELECT id, site, zone, device, quantity FROM series"
        ).fetchall():
            self._remember(SeriesKey(site, zone, dev, q), sid)
        self._invalid = False

    def _remember(self, key: SeriesKey, sid: int) -> None:
        self._ids[key] = sid
        if sid >= len(self._factor):
            grow = max(sid + 1, 2 * len(self._factor))
            self._factor = np.concatenate([self._factor, np.ones(grow - len(self._factor))])
            self._divide = np.concatenate([self._divide, np.zeros(grow - len(self._divide), bool)])
        self._factor[sid], self._divide[sid] = scale_of(QUANTITIES[key.quantity].resolution)

    def _values(self, sid: np.ndarray, v: Any) -> np.ndarray:
        """Stored integers of the series `sid` back to values in the quantity's unit (NULL -> NaN)."""
        vv = v.to_numpy(dtype=np.float64, na_value=np.nan) if isinstance(v, pd.Series) else np.asarray(v, np.float64)
        sid = np.asarray(sid, np.int64)
        f = self._factor[sid]
        return np.where(self._divide[sid], vv / f, vv * f)

    # -- housekeeping -------------------------------------------------------------------------
    def _check_version(self, read_only: bool) -> None:
        row = first_row(self._con, "SELECT value FROM meta WHERE key='schema_version'")
        if row is None:
            if not read_only:
                self._con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            return
        found = int(row[0])
        if found != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"store {self.path} has schema version {found}; this greennanny reads version "
                f"{SCHEMA_VERSION}. Use a greennanny that matches, or export and re-import."
            )

    def _cur(self) -> duckdb.DuckDBPyConnection:
        """A cursor per reading thread (DuckDB connections are not shared across threads)."""
        if self._invalid:
            with self._lock:
                self._ensure_open()
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cur = cur
        return cur

    def close(self) -> None:
        with self._lock:
            self.tiers.rollups.months.close()  # the month files kept open for one-series reads
            try:
                self._con.close()
            except duckdb.Error as exc:  # DuckDB checkpoints on close; a full disk must not fail a shutdown
                log.warning("store %s closed without its final checkpoint (%s); the next open replays "
                            "its write-ahead log", self.path, first_line(exc))

    def _forget_ids(self, known: int) -> None:
        """Drop series ids handed out in a transaction that rolled back (their rows went with it)."""
        for key in list(self._ids)[known:]:
            del self._ids[key]

    # -- writes ------------------------------------------------------------------------------
    def _series_ids(self, keys: list[SeriesKey]) -> np.ndarray:
        ids = self._ids
        try:  # the common case, every key known: one hash per key (a quarter of a write's time was two)
            return np.array(list(map(ids.__getitem__, keys)), np.int32)
        except KeyError:
            pass
        new = [k for k in keys if k not in ids]
        if new:
            start = int(scalar(self._con, "SELECT coalesce(max(id), 0) + 1 FROM series"))
            now = time.time_ns()
            rows = []
            for i, k in enumerate(new):
                sid = start + i
                rows.append((sid, k.site, k.zone, k.device, k.quantity, QUANTITIES[k.quantity].unit, now))
            self._con.executemany("INSERT INTO series VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            for i, k in enumerate(new):
                self._remember(k, start + i)
        return np.array([self._ids[k] for k in keys], dtype=np.int32)

    def _write_points(self, batch: Batch) -> WriteResult:
        batch, rejected = split_not_finite(batch)  # an OK or flagged NaN/inf is set aside, with why
        if not len(batch):
            return WriteResult(0, 0, rejected)
        sid = self._series_ids(batch.keys)[batch.key_index]
        # Values become integers at their quantity's storage resolution (model.QUANTITIES), here, once.
        res = np.array([QUANTITIES[k.quantity].resolution for k in batch.keys], np.float64)[batch.key_index]
        finite = np.isfinite(batch.value)
        scaled = np.where(finite, np.rint(np.where(finite, batch.value, 0.0) / res), 0.0)
        too_big = np.abs(scaled) >= 2.0**62
        if too_big.any():  # a flagged value so far out that no int64 holds it at this resolution
            rows = np.flatnonzero(too_big)
            reasons = {int(r): f"not_representable: {batch.keys[batch.key_index[r]].quantity}={float(batch.value[r])!r} "
                               f"exceeds what the store holds at resolution {res[r]:g}" for r in rows}
            rejected = concat_batches(rejected, take_rows(batch, rows, reasons))
            keep = np.flatnonzero(~too_big)
            batch, sid, scaled, finite = take_rows(batch, keep), sid[keep], scaled[keep], finite[keep]
            if not len(batch):
                return WriteResult(0, 0, rejected)
        w = self.tiers.write(sid, batch.ts_ns, scaled.astype(np.int64), finite, batch.quality)
        if w.replaced:
            notes_df = pd.DataFrame({"series_id": sid, "ts": batch.ts_ns})
            self._con.register("_renoted", notes_df)
            self._con.execute("DELETE FROM point_notes n USING _renoted i WHERE n.series_id = i.series_id AND n.ts = i.ts")
            self._con.unregister("_renoted")
        if batch.reasons:
            last = {}
            for r, reason in batch.reasons.items():  # last wins inside the batch, as for the points
                last[(int(sid[r]), int(batch.ts_ns[r]))] = reason
            self._con.executemany("INSERT INTO point_notes VALUES (?, ?, ?)", [(a, b, c) for (a, b), c in last.items()])
        return WriteResult(w.written, w.replaced, rejected)

    def transaction(self, fn: Callable[[duckdb.DuckDBPyConnection], T], doing: str = "writing") -> T:
        """`fn(connection)` in one transaction under the store's lock, with the store's handling
        of a full disk and failed commits: for the node's other tables (the model registry)."""
        with self._lock:
            return cast(T, self._transaction(lambda: fn(self._con), doing))

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A cursor for reads (each read sees the last committed state)."""
        return self._cur()

    def write(self, batch: Batch) -> WriteResult:
        with self._lock:
            return self._transaction(lambda: self._write_points(batch))

    def _transaction(self, fn: Any, doing: str = "writing") -> Any:
        """Run `fn` in one transaction. On a full disk or an I/O failure, anywhere in it or at the
        commit, it rolls back whole and raises `DiskFull` / `StoreUnavailable`; in-memory state
        it had changed (new series ids) is undone with it."""
        self._ensure_open()
        known = len(self._ids)
        try:
            self._con.execute("BEGIN TRANSACTION")
            try:
                out = fn()
            except BaseException:
                self._rollback()
                raise
            try:
                self._con.execute("COMMIT")
            except duckdb.Error:
                self._rollback()  # DuckDB has rolled back a failed commit; make sure of it
                raise
        except BaseException as exc:
            self._forget_ids(known)
            err = self._failure(exc, doing) if isinstance(exc, (duckdb.Error, OSError)) else None
            if self._invalid:
                self._reopen_quietly()
            if err is None:
                raise
            raise err from exc
        return out

    def _rollback(self) -> None:
        try:
            self._con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # nothing open any more (a failed commit already rolled back) or the connection is gone

    def commit_ingest(self, commit: IngestCommit) -> WriteResult:
        """Points, dead letters, ledger and device events of one batch in one transaction."""

        def run() -> WriteResult:
            res = self._write_points(commit.batch)
            if commit.deadletters:
                self._con.executemany(
                    "INSERT INTO deadletters VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(d.received_ns, d.topic, d.payload, d.reason, d.detail, d.source, d.device)
                     for d in commit.deadletters],
                )
            if commit.ledger:
                # Arrow columns, not a pandas frame: half the cost per message (1.4 vs 3.0 us), as
                # pandas keeps strings as Python objects that DuckDB converts one by one.
                led = pa.table({
                    "received_ns": pa.array([e.received_ns for e in commit.ledger], pa.int64()),
                    "topic": pa.array([e.topic for e in commit.ledger], pa.string()),
                    "outcome": pa.array([e.outcome for e in commit.ledger], pa.string()),
                    "kind": pa.array([e.kind for e in commit.ledger], pa.string()),
                    "dedup_key": pa.array([e.dedup_key for e in commit.ledger], pa.string()),
                    "points": pa.array([e.points for e in commit.ledger], pa.int32()),
                })
                self._con.register("_ledger", led)
                self._con.execute("INSERT INTO ledger SELECT * FROM _ledger")
                self._con.unregister("_ledger")
            if commit.device_events:
                self._con.executemany("INSERT INTO device_events VALUES (?, ?, ?, ?)", commit.device_events)
            return res

        with self._lock:
            return self._transaction(run)

    # -- reads -------------------------------------------------------------------------------
    def series(
        self,
        *,
        site: str | None = None,
        zone: str | None = None,
        quantity: str | None = None,
        device: str | None = None,
    ) -> list[SeriesInfo]:
        where, args = [], []
        for col, val in (("site", site), ("zone", zone), ("quantity", quantity), ("device", device)):
            if val:
                where.append(f"s.{col} = ?")
                args.append(val)
        return self._series_info(" AND ".join(where), args)

    def series_by_id(self, series_id: int) -> SeriesInfo | None:
        found = self._series_info("s.id = ?", [series_id])
        return found[0] if found else None

    def _series_info(self, where: str, args: list[Any]) -> list[SeriesInfo]:
        """Series with their row count, first and last instant (every stored row, served or not)
        and last served value: hourly rollups behind the watermark, raw rows of the hot window."""
        summary, s_args = self.tiers.summary_sql()
        sql = (
            "SELECT s.id, s.site, s.zone, s.device, s.quantity, s.unit, coalesce(r.rows, 0), r.first_any, "
            f"r.last_any, CASE WHEN r.n > 0 THEN r.last_v END FROM series s LEFT JOIN ({summary}) r ON r.series_id = s.id "
            + ("WHERE " + where if where else "")
            + " ORDER BY s.site, s.zone, s.device, s.quantity"
        )
        out = []
        for sid, site_, zone_, dev, q, unit, n, lo, hi, last in self._cur().execute(sql, s_args + args).fetchall():
            value = None if last is None else float(self._values(np.array([sid]), np.array([last], np.float64))[0])
            out.append(SeriesInfo(sid, SeriesKey(site_, zone_, dev, q), unit, int(n), lo, hi, value))
        return out

    def query(
        self, series_id: int, start_ns: int | None, end_ns: int | None, every_ns: int | None = None
    ) -> pd.DataFrame:
        """Points of one series in [start, end); with `every`, mean/min/max/count per bucket.

        Served data excludes missing and quarantined rows (quality 1 and 3); flagged rows (2) are
        returned with their quality so a plot can mark them. Buckets come from the rollups where
        whole ones fit, so a year at 1 h does not scan raw points.
        """
        lo = LO if start_ns is None else int(start_ns)
        hi = HI if end_ns is None else int(end_ns)
        cur = self._cur()
        if every_ns:
            # numpy over the rows of one series (no aggregate SQL to plan), else the general SQL path
            b = self.tiers.bucketed_one(lo, hi, int(every_ns), series_id, last=False, con=cur) if self.fast_one_series else None
            if b is None:
                frame = self.tiers.bucketed(lo, hi, int(every_ns), series_id=series_id, con=cur)
                b = {"bucket": frame["bucket"].to_numpy(np.int64), "n": frame["n"].to_numpy(np.int64),
                     "vmin": frame["vmin"].to_numpy(np.float64), "vmax": frame["vmax"].to_numpy(np.float64),
                     "vsum": frame["vsum"].to_numpy(np.float64)}
            sid = np.full(len(b["bucket"]), series_id)
            n = b["n"].astype(np.float64)
            return pd.DataFrame({"ts": b["bucket"].astype(np.int64, copy=False),
                                 "value": self._values(sid, b["vsum"].astype(np.float64) / np.maximum(n, 1)),
                                 "min": self._values(sid, b["vmin"]), "max": self._values(sid, b["vmax"]),
                                 "count": b["n"].astype(np.int64, copy=False)})
        raw, args = self.tiers.raw_sql(lo, hi, series_id=series_id)
        df = cur.execute(f"SELECT ts, v, quality FROM ({raw}) WHERE quality IN (0, 2) ORDER BY ts", args).df()
        return pd.DataFrame({"ts": df["ts"].to_numpy(np.int64), "value": self._values(np.full(len(df), series_id), df["v"]),
                             "quality": df["quality"].to_numpy(np.uint8)})

    def query_many(
        self,
        series_ids: Sequence[int],
        start_ns: int | None,
        end_ns: int | None,
        *,
        every_ns: int | None = None,
        agg: Aggregate = "mean",
    ) -> pd.DataFrame:
        """Served rows of many series in [start, end), raw or one `agg` per epoch-aligned bucket."""
        lo = LO if start_ns is None else int(start_ns)
        hi = HI if end_ns is None else int(end_ns)
        cur = self._cur()
        cur.register("_ids", pd.DataFrame({"sid": np.asarray(list(series_ids), dtype=np.int32)}))
        try:
            if every_ns:
                check_aggregate(agg)
                b = self.tiers.bucketed(lo, hi, int(every_ns), ids_table="_ids", con=cur)
                sid = b["series_id"].to_numpy(np.int64)
                if agg == "count":
                    value = b["n"].to_numpy(np.float64)
                elif agg == "mean":
                    value = self._values(sid, b["vsum"].to_numpy(np.float64) / np.maximum(b["n"].to_numpy(np.float64), 1))
                else:
                    value = self._values(sid, b[{"min": "vmin", "max": "vmax", "last": "last_v"}[agg]])
                return pd.DataFrame({"series_id": sid.astype(np.int32), "ts": b["bucket"].to_numpy(np.int64),
                                     "value": value})
            raw, args = self.tiers.raw_sql(lo, hi, ids_table="_ids")
            df = cur.execute(f"SELECT series_id, ts, v, quality FROM ({raw}) WHERE quality IN (0, 2) ORDER BY 1, 2",
                             args).df()
        finally:
            cur.unregister("_ids")
        sid = df["series_id"].to_numpy(np.int64)
        return pd.DataFrame({"series_id": sid.astype(np.int32), "ts": df["ts"].to_numpy(np.int64),
                             "value": self._values(sid, df["v"]), "quality": df["quality"].to_numpy(np.uint8)})

    def latest(self, series_ids: Sequence[int] | None = None) -> pd.DataFrame:
        """The newest served point per series: columns series_id, ts, value."""
        summary, args = self.tiers.summary_sql()
        sql = f"SELECT series_id, last_ts AS ts, last_v AS v FROM ({summary}) WHERE n > 0"
        if series_ids is not None:
            sql += " AND list_contains(?, series_id)"
            args.append([int(s) for s in series_ids])
        df = self._cur().execute(sql + " ORDER BY 1", args).df()
        sid = df["series_id"].to_numpy(np.int64)
        return pd.DataFrame({"series_id": sid.astype(np.int32), "ts": df["ts"].to_numpy(np.int64),
                             "value": self._values(sid, df["v"])})

    def notes(self, series_ids: Sequence[int], start_ns: int | None, end_ns: int | None) -> pd.DataFrame:
        """Rows in [start, end) that are not OK (flagged, missing, quarantined), hot and cold, with
        their reason from `point_notes` ("" if none): series_id, ts, quality, reason (exports)."""
        lo = LO if start_ns is None else int(start_ns)
        hi = HI if end_ns is None else int(end_ns)
        cur = self._cur()
        cur.register("_ids", pd.DataFrame({"sid": np.asarray(list(series_ids), dtype=np.int32)}))
        try:
            raw, args = self.tiers.raw_sql(lo, hi, ids_table="_ids")
            df = cur.execute(
                f"SELECT r.series_id, r.ts, r.quality, coalesce(n.reason, '') AS reason FROM ({raw}) r "
                "LEFT JOIN (SELECT series_id, ts, arg_max(reason, rowid) AS reason FROM point_notes "
                "WHERE ts >= ? AND ts < ? GROUP BY 1, 2) n ON n.series_id = r.series_id AND n.ts = r.ts "
                "WHERE r.quality <> 0 ORDER BY 1, 2", [*args, lo, hi]).df()
        finally:
            cur.unregister("_ids")
        return pd.DataFrame({"series_id": df["series_id"].to_numpy(np.int32), "ts": df["ts"].to_numpy(np.int64),
                             "quality": df["quality"].to_numpy(np.uint8), "reason": df["reason"].astype(object)})

    def delete_range(
        self, start_ns: int | None, end_ns: int | None, *, series_ids: Sequence[int] | None = None
    ) -> int:
        """Delete points (and their notes) in [start, end), hot and cold; rollups follow. The
        series stay listed."""
        lo = LO if start_ns is None else int(start_ns)
        hi = HI if end_ns is None else int(end_ns)
        ids = None if series_ids is None else [int(s) for s in series_ids]

        def run() -> int:
            n = self.tiers.delete(lo, hi, ids)
            self._con.execute("DELETE FROM point_notes WHERE ts >= ? AND ts < ?"
                              + ("" if ids is None else " AND list_contains(?, series_id)"),
                              [lo, hi] + ([] if ids is None else [ids]))
            return n

        with self._lock:
            return int(self._transaction(run))

    def query_long(self, series_ids: list[int], start_ns: int, end_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Long columns (series_id, ts, value) of usable points for many series, for forecasting."""
        cur = self._cur()
        ids = pd.DataFrame({"sid": np.asarray(series_ids, dtype=np.int32)})
        cur.register("_ids", ids)
        try:
            raw, args = self.tiers.raw_sql(int(start_ns), int(end_ns), ids_table="_ids")
            tbl = cur.execute(f"SELECT series_id, ts, v FROM ({raw}) WHERE quality = 0 AND v IS NOT NULL", args).df()
        finally:
            cur.unregister("_ids")
        sid = tbl["series_id"].to_numpy(np.int64)
        return sid, tbl["ts"].to_numpy(np.int64), self._values(sid, tbl["v"])

    def rows(self, series_ids: Sequence[int] | None = None) -> pd.DataFrame:
        """Every stored row, served or not, hot and cold: series_id, ts, value, quality, in order.

        For audits and tests (a crash test counts (series, ts) pairs here); plots and the API use
        `query`, which serves only usable rows.
        """
        raw, args = self.tiers.raw_sql(LO, HI)
        sql = f"SELECT series_id, ts, v, quality FROM ({raw})"
        if series_ids is not None:
            sql += " WHERE list_contains(?, series_id)"
            args = [*args, [int(s) for s in series_ids]]
        df = self._cur().execute(sql + " ORDER BY 1, 2", args).df()
        sid = df["series_id"].to_numpy(np.int64)
        return pd.DataFrame({"series_id": sid.astype(np.int32), "ts": df["ts"].to_numpy(np.int64),
                             "value": self._values(sid, df["v"]), "quality": df["quality"].to_numpy(np.uint8)})

    def count_points(self) -> int:
        raw, args = self.tiers.raw_sql(LO, HI)
        return int(scalar(self._cur(), f"SELECT count(*) FROM ({raw})", args))



__all__ = ["DuckDBStore", "Retention", "retention_from"]
