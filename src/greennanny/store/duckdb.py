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

import errno
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from greennanny.errors import DiskFull, SchemaVersionError, StoreError, StoreUnavailable
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
    split_not_finite,
    take_rows,
)
from greennanny.store.cold import DAY_NS, ColdTier
from greennanny.store.cold_rollups import RollupMonths
from greennanny.store.duckdb_node import NodeTables
from greennanny.store.duckdb_rewrite import FileRewrite
from greennanny.store.duckdb_sql import first_line, scalar
from greennanny.store.points import HI, LO, PointTables, scale_of

log = logging.getLogger("greennanny.store")

SCHEMA_VERSION = 2  # 2: points as integers at storage resolution in tiers, rollups (design 003)

_META = "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
  id INTEGER PRIMARY KEY, site VARCHAR, zone VARCHAR, device VARCHAR, quantity VARCHAR,
  unit VARCHAR, created_ns BIGINT, UNIQUE (site, zone, device, quantity));
CREATE TABLE IF NOT EXISTS point_notes (series_id INTEGER, ts BIGINT, reason VARCHAR);
CREATE TABLE IF NOT EXISTS deadletters (
  received_ns BIGINT, topic VARCHAR, payload BLOB, reason VARCHAR, detail VARCHAR, source VARCHAR,
  device VARCHAR DEFAULT '');
CREATE TABLE IF NOT EXISTS ledger (
  received_ns BIGINT, topic VARCHAR, outcome VARCHAR, kind VARCHAR, dedup_key VARCHAR, points INTEGER);
CREATE TABLE IF NOT EXISTS device_events (ts BIGINT, dev_eui VARCHAR, kind VARCHAR, detail VARCHAR);
CREATE TABLE IF NOT EXISTS devices (
  dev_eui VARCHAR PRIMARY KEY, codec VARCHAR, model VARCHAR, field_map VARCHAR, site VARCHAR,
  zone VARCHAR, name VARCHAR, source VARCHAR, updated_ns BIGINT, interval_s INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS forecast_runs (
  run_id BIGINT, series_id INTEGER, made_ns BIGINT, start_ns BIGINT, step_ns BIGINT, horizon INTEGER,
  model VARCHAR, backtest_mae DOUBLE, backtest_mase DOUBLE, runner_up VARCHAR,
  runner_up_mase DOUBLE, fallback_reason VARCHAR);
CREATE TABLE IF NOT EXISTS forecast_points (
  run_id BIGINT, series_id INTEGER, ts BIGINT, mean DOUBLE, lo80 DOUBLE, hi80 DOUBLE,
  lo95 DOUBLE, hi95 DOUBLE);
"""


_AGG_SQL = {
    "min": "min(value)",
    "mean": "avg(value)",
    "max": "max(value)",
    "last": "arg_max(value, ts)",
    "count": "count(*)::DOUBLE",
}


class DuckDBStore(FileRewrite, NodeTables):
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
            self._con.execute(_META)
        self._check_version(read_only)  # before any other table is made: never touch a newer file
        if not read_only:
            self._con.execute(_SCHEMA)
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
        row = self._con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
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

    # -- failures: a full disk, an invalidated connection ------------------------------------
    def free_bytes(self) -> int:
        """Bytes free (to this user) on the filesystem that holds the store file."""
        st = os.statvfs(self.path.parent)
        return int(st.f_bavail * st.f_frsize)

    def _failure(self, exc: BaseException, doing: str) -> StoreUnavailable | None:
        """Our error for a DuckDB or file error met while `doing`, or None when it is neither a
        full disk nor an I/O failure (a bug: the caller re-raises it as it is).

        DuckDB words ENOSPC as 'Could not write file ...: No space left on device', sometimes only
        in the context of a later error ('Current transaction is aborted'), so the whole chain is read.
        """
        chain: list[BaseException] = []
        e: BaseException | None = exc
        while e is not None and e not in chain:
            chain.append(e)
            e = e.__cause__ or e.__context__
        text = " | ".join(str(c) for c in chain).lower()
        if any(isinstance(c, duckdb.FatalException) for c in chain) or "has been invalidated" in text:
            self._invalid = True
        if "no space left on device" in text or any(getattr(c, "errno", None) == errno.ENOSPC for c in chain):
            free = self.free_bytes()
            detail = next((first_line(c) for c in chain if "no space left" in str(c).lower()), first_line(exc))
            return DiskFull(f"store {self.path}: no space left on device while {doing} ({free:,} bytes free "
                            f"on {self.path.parent}); the change was rolled back, nothing committed is damaged, "
                            f"and writes resume once space is freed ({detail})", path=str(self.path), free_bytes=free)
        if self._invalid or any(isinstance(c, (duckdb.IOException, OSError)) for c in chain):
            return StoreUnavailable(f"store {self.path}: {doing} failed: {first_line(exc)}")
        return None

    def _ensure_open(self) -> None:
        """Open the file again if DuckDB invalidated the connection (a CHECKPOINT that failed, on
        a full disk for one): every committed transaction is in the file or its WAL and comes back."""
        if not self._invalid:
            return
        try:
            self._con.close()
        except duckdb.Error:
            pass  # an invalidated connection may refuse even this
        self._open()
        log.warning("store %s opened again after DuckDB invalidated its connection", self.path)

    def _reopen_quietly(self) -> None:
        try:
            self._ensure_open()
        except StoreError as exc:  # still impossible (the disk may still be full); the next call tries again
            log.warning("store %s could not be opened again yet: %s", self.path, exc)

    def _checkpoint(self) -> None:
        try:
            self._con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            err = self._failure(exc, "checkpointing")
            self._reopen_quietly()
            if err is None:
                raise
            raise err from exc

    def _forget_ids(self, known: int) -> None:
        """Drop series ids handed out in a transaction that rolled back (their rows went with it)."""
        for key in list(self._ids)[known:]:
            del self._ids[key]

    # -- writes ------------------------------------------------------------------------------
    def _series_ids(self, keys: list[SeriesKey]) -> np.ndarray:
        new = [k for k in keys if k not in self._ids]
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
            rejected = _concat(rejected, take_rows(batch, rows, reasons))
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

    def retention(self) -> int | None:
        """How long raw points are kept, in ns (None: forever)."""
        days = self.retention_policy.raw_days
        return None if not days else days * DAY_NS

    def set_retention(self, keep_ns: int | None) -> None:
        """Keep raw points for `keep_ns` (None: forever); applied by the next `maintain`."""
        days = 0 if keep_ns is None else max(1, -(-int(keep_ns) // DAY_NS))
        self.retention_policy = replace(self.retention_policy, raw_days=days)

    def compact(self, now_ns: int) -> int:
        """Move closed days older than the policy's `compact_after_h` to the cold tier, and roll
        up every day closed by `now_ns` (the hot window's reads then aggregate today's raw rows
        only; a late point for an earlier day recomputes its buckets)."""
        before = now_ns - self.retention_policy.compact_after_h * 3600 * 10**9
        with self._lock:
            until = self.tiers.until
            try:
                return int(self._transaction(lambda: self.tiers.compact(before, now_ns), "compacting"))
            except BaseException:
                self._undo_compaction(until)
                raise

    def _undo_compaction(self, until: int) -> None:
        """A compaction that rolled back (a full disk while writing a day or month file, or
        committing) leaves no trace: the rollups watermark goes back with its rollups, the day and
        month files are listed from disk again (a file already renamed into place holds the same
        rows as the tables, which reads resolve) and half-written temporary files go (they hold
        space the disk lacks). The next run does the whole move again."""
        self.tiers.rollups.until = until  # the table row went back with the transaction
        self.tiers._cold_days = set(self.tiers.cold.days())
        for tmp in self.tiers.cold.root.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        self.tiers.rollups.months.close()
        self.tiers.rollups.months = RollupMonths(self.tiers.cold.root)  # re-lists, drops its .tmp files

    def maintain(self, now_ns: int) -> dict[str, int]:
        """The scheduled job: compaction, then retention of every tier and of the node's own
        tables (forecasts, ledger, dead letters). Returns what each step removed or moved."""
        p = self.retention_policy
        out = {"days_compacted": self.compact(now_ns)}

        def cut(days: int) -> int | None:
            return None if not days else now_ns - days * DAY_NS

        def run() -> None:
            if (c := cut(p.raw_days)) is not None:
                out["raw_removed"] = self.tiers.drop_raw_before(c)
                self._con.execute("DELETE FROM point_notes WHERE ts < ?", [c])
            for tier, days in (("1m", p.rollup_1m_days), ("1h", p.rollup_1h_days)):
                if (c := cut(days)) is not None:
                    out[f"rollup_{tier}_removed"] = self.tiers.drop_rollups_before(tier, c)
            for name, days, sql in (
                ("forecasts_removed", p.forecasts_days, ("DELETE FROM forecast_points WHERE run_id IN (SELECT run_id "
                 "FROM forecast_runs WHERE made_ns < ?)")),
                ("forecast_runs_removed", p.forecasts_days, "DELETE FROM forecast_runs WHERE made_ns < ?"),
                ("ledger_removed", p.ledger_days, "DELETE FROM ledger WHERE received_ns < ?"),
                ("deadletters_removed", p.deadletters_days, "DELETE FROM deadletters WHERE received_ns < ?"),
                ("device_events_removed", p.deadletters_days, "DELETE FROM device_events WHERE ts < ?"),
            ):
                if (c := cut(days)) is not None:
                    out[name] = int(scalar(self._con, sql.replace("DELETE FROM", "SELECT count(*) FROM", 1), [c]))
                    self._con.execute(sql, [c])

        with self._lock:
            self._transaction(run, "applying retention")
            self._checkpoint()  # hand freed blocks back for reuse, so the file stops growing
            out["file_rewritten_bytes_freed"] = self._rewrite_if_sparse()
        return out

    def checkpoint(self) -> None:
        with self._lock:
            self._ensure_open()
            self._checkpoint()

    def stats(self) -> dict[str, Any]:
        """Points, series and bytes per tier (`greennanny db stats`)."""
        cur = self._cur()
        hot = int(scalar(cur, "SELECT count(*) FROM points"))
        cold_files = self.tiers.cold.files()
        cold = int(scalar(cur, f"SELECT count(*) FROM read_parquet([{', '.join(repr(f) for f in cold_files)}])")) \
            if cold_files else 0
        cold -= self._cold_shadowed(cur) if cold and hot else 0
        cold_bytes = self.tiers.cold.bytes()
        db_bytes = self.path.stat().st_size if self.path.exists() else 0
        wal = self.path.with_name(self.path.name + ".wal")
        out: dict[str, Any] = {
            "series": int(scalar(cur, "SELECT count(*) FROM series")),
            "raw_points": hot + cold, "hot_points": hot, "cold_points": cold, "cold_days": len(cold_files),
            "cold_bytes": cold_bytes, "cold_bytes_per_point": round(cold_bytes / cold, 3) if cold else None,
            "file_bytes": db_bytes, "file_free_bytes": self.file_space(cur)[1],
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
            **self.tiers.rollups.stats(cur),
            "forecast_runs": int(scalar(cur, "SELECT count(*) FROM forecast_runs")),
            "ledger_rows": int(scalar(cur, "SELECT count(*) FROM ledger")),
            "deadletters": int(scalar(cur, "SELECT count(*) FROM deadletters")),
            "free_bytes": self.free_bytes(),
        }
        all_bytes = db_bytes + cold_bytes + out["rollup_1m_file_bytes"] + out["rollup_1h_file_bytes"]
        out["bytes_per_point"] = round(all_bytes / out["raw_points"], 3) if out["raw_points"] else None
        out["raw_bytes"] = cold_bytes + (round(hot * out["cold_bytes_per_point"]) if cold and hot else 0)
        return out

    def _cold_shadowed(self, cur: duckdb.DuckDBPyConnection) -> int:
        """Cold rows that a hot row at the same (series, ts) shadows: a late point, or a day whose
        compaction wrote its file but rolled back (a crash, a full disk) before its hot rows went.
        Only the day files the hot rows reach are read."""
        lo, hi = cur.execute("SELECT min(ts), max(ts) FROM points").fetchall()[0]
        files = self.tiers.cold.files(int(lo), int(hi) + 1)
        if not files:
            return 0
        return int(scalar(cur, f"SELECT count(*) FROM read_parquet([{', '.join(repr(f) for f in files)}]) c "
                             "SEMI JOIN points h ON h.series_id = c.series_id AND h.ts = c.ts"))

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



@dataclass(frozen=True, slots=True)
class Retention:
    """How long each tier and the node's own tables are kept, in days (0: forever); see
    config.RetentionConfig, whose validated values this carries into the store."""

    raw_days: int = 90
    rollup_1m_days: int = 365
    rollup_1h_days: int = 0
    forecasts_days: int = 30
    ledger_days: int = 30
    deadletters_days: int = 90
    compact_after_h: int = 48


def _concat(a: Batch, b: Batch) -> Batch:
    """Two batches over the same keys as one (rejected rows of two checks)."""
    if not len(a):
        return b
    if not len(b):
        return a
    keys = list(dict.fromkeys([*a.keys, *b.keys]))
    pos = {k: i for i, k in enumerate(keys)}
    ai = np.array([pos[k] for k in a.keys], np.int32)[a.key_index]
    bi = np.array([pos[k] for k in b.keys], np.int32)[b.key_index]
    reasons = dict(a.reasons) | {len(a) + r: why for r, why in b.reasons.items()}
    return Batch(keys, np.concatenate([ai, bi]), np.concatenate([a.ts_ns, b.ts_ns]),
                 np.concatenate([a.value, b.value]), np.concatenate([a.quality, b.quality]), reasons)


def retention_from(cfg: Any) -> Retention:
    """The store's policy from a `config.RetentionConfig` (kept apart so the store needs no config)."""
    return Retention(cfg.raw_days, cfg.rollup_1m_days, cfg.rollup_1h_days, cfg.forecasts_days, cfg.ledger_days,
                     cfg.deadletters_days, cfg.compact_after_h)
