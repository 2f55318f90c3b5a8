"""The embedded default store: one DuckDB file in the data directory, owned by the node.

Why DuckDB: columnar and compressed on disk, appends whole Arrow/pandas columns without a row
loop, and answers range and downsampling queries in SQL. Layout: `points` is long-form
(series_id, ts ns, value, quality); a row that is not OK has its reason in `point_notes`.
Writes are last-wins per (series_id, ts): rows of the batch replace stored rows at the same
instant (counted), which makes redelivery after a crash harmless.

Concurrency: one connection writes under a lock; readers (API threads) use their own cursors.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from greennanny.errors import SchemaVersionError, StoreUnavailable
from greennanny.model import QUANTITIES, Batch, SeriesKey, round_to_resolution
from greennanny.store.base import DeviceRecord, IngestCommit, SeriesInfo, WriteResult

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS series (
  id INTEGER PRIMARY KEY, site VARCHAR, zone VARCHAR, device VARCHAR, quantity VARCHAR,
  unit VARCHAR, created_ns BIGINT, UNIQUE (site, zone, device, quantity));
CREATE TABLE IF NOT EXISTS points (series_id INTEGER, ts BIGINT, value DOUBLE, quality UTINYINT);
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


def _one(con: duckdb.DuckDBPyConnection, sql: str, args: list[Any] | None = None) -> Any:
    """The single value of an aggregate query (which always returns one row)."""
    row = con.execute(sql, args or []).fetchone()
    assert row is not None, sql
    return row[0]


class DuckDBStore:
    """DuckDB backend of the store contract (see store/base.py)."""

    capabilities = frozenset({"write", "query", "downsample", "deadletters", "devices", "forecasts"})

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            raise StoreUnavailable(f"cannot open store {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._local = threading.local()
        if not read_only:
            self._con.execute(_SCHEMA)
        self._check_version(read_only)
        self._ids: dict[SeriesKey, int] = {}
        for sid, site, zone, dev, q in self._con.execute(
            "SELECT id, site, zone, device, quantity FROM series"
        ).fetchall():
            self._ids[SeriesKey(site, zone, dev, q)] = sid

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
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cur = cur
        return cur

    def close(self) -> None:
        with self._lock:
            self._con.close()

    # -- writes ------------------------------------------------------------------------------
    def _series_ids(self, keys: list[SeriesKey]) -> np.ndarray:
        new = [k for k in keys if k not in self._ids]
        if new:
            start = int(_one(self._con, "SELECT coalesce(max(id), 0) + 1 FROM series"))
            now = time.time_ns()
            rows = []
            for i, k in enumerate(new):
                sid = start + i
                rows.append((sid, k.site, k.zone, k.device, k.quantity, QUANTITIES[k.quantity].unit, now))
            self._con.executemany("INSERT INTO series VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            for i, k in enumerate(new):
                self._ids[k] = start + i
        return np.array([self._ids[k] for k in keys], dtype=np.int32)

    def _write_points(self, batch: Batch) -> WriteResult:
        if not len(batch):
            return WriteResult(0, 0)
        sid = self._series_ids(batch.keys)[batch.key_index]
        # Values are kept at their quantity's storage resolution (model.QUANTITIES), here, once.
        value = round_to_resolution(batch.value, [k.quantity for k in batch.keys], batch.key_index)
        df = pd.DataFrame({"series_id": sid, "ts": batch.ts_ns, "value": value, "quality": batch.quality})
        # Last wins inside the batch too: keep the final row of each (series, ts).
        dup_in_batch = df.duplicated(["series_id", "ts"], keep="last")
        replaced = int(dup_in_batch.sum())
        keep_rows = np.flatnonzero(~dup_in_batch.to_numpy())
        df = df.iloc[keep_rows]
        self._con.register("_incoming", df)
        try:
            lo, hi = int(df.ts.min()), int(df.ts.max())
            n_before = _one(self._con, "SELECT count(*) FROM points WHERE ts BETWEEN ? AND ?", [lo, hi])
            if n_before:
                self._con.execute(
                    "DELETE FROM points p USING _incoming i WHERE p.ts BETWEEN ? AND ? "
                    "AND p.series_id = i.series_id AND p.ts = i.ts",
                    [lo, hi],
                )
                n_after = _one(self._con, "SELECT count(*) FROM points WHERE ts BETWEEN ? AND ?", [lo, hi])
                replaced += int(n_before - n_after)
                self._con.execute(
                    "DELETE FROM point_notes n USING _incoming i WHERE n.series_id = i.series_id AND n.ts = i.ts"
                )
            self._con.execute(
                "INSERT INTO points SELECT series_id::INTEGER, ts::BIGINT, value::DOUBLE, quality::UTINYINT FROM _incoming"
            )
        finally:
            self._con.unregister("_incoming")
        if batch.reasons:
            kept = set(keep_rows.tolist())
            notes = [(int(sid[r]), int(batch.ts_ns[r]), reason) for r, reason in batch.reasons.items() if r in kept]
            if notes:
                self._con.executemany("INSERT INTO point_notes VALUES (?, ?, ?)", notes)
        return WriteResult(len(df), replaced)

    def write(self, batch: Batch) -> WriteResult:
        with self._lock:
            return self._transaction(lambda: self._write_points(batch))

    def _transaction(self, fn: Any) -> Any:
        self._con.execute("BEGIN TRANSACTION")
        try:
            out = fn()
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        try:
            self._con.execute("COMMIT")
        except duckdb.Error as exc:
            raise StoreUnavailable(f"commit failed on {self.path}: {exc}") from exc
        return out

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
                led = pd.DataFrame(
                    {
                        "received_ns": [e.received_ns for e in commit.ledger],
                        "topic": [e.topic for e in commit.ledger],
                        "outcome": [e.outcome for e in commit.ledger],
                        "kind": [e.kind for e in commit.ledger],
                        "dedup_key": [e.dedup_key for e in commit.ledger],
                        "points": [e.points for e in commit.ledger],
                    }
                )
                self._con.register("_ledger", led)
                self._con.execute("INSERT INTO ledger SELECT * FROM _ledger")
                self._con.unregister("_ledger")
            if commit.device_events:
                self._con.executemany("INSERT INTO device_events VALUES (?, ?, ?, ?)", commit.device_events)
            return res

        with self._lock:
            return self._transaction(run)

    # -- devices -----------------------------------------------------------------------------
    def upsert_device(self, d: DeviceRecord) -> DeviceRecord | None:
        """Insert or replace a device; returns the previous record when it differed."""
        with self._lock:
            prev = self.device(d.dev_eui)
            self._con.execute(
                "INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [d.dev_eui, d.codec, d.model, d.field_map, d.site, d.zone, d.name, d.source, time.time_ns(),
                 d.interval_s],
            )
            return prev if prev is not None and prev != d else None

    def device(self, dev_eui: str) -> DeviceRecord | None:
        row = self._cur().execute(
            "SELECT dev_eui, codec, model, field_map, site, zone, name, source, interval_s FROM devices WHERE dev_eui = ?",
            [dev_eui],
        ).fetchone()
        return DeviceRecord(*row) if row else None

    def devices(self) -> list[DeviceRecord]:
        rows = self._cur().execute(
            "SELECT dev_eui, codec, model, field_map, site, zone, name, source, interval_s FROM devices ORDER BY dev_eui"
        ).fetchall()
        return [DeviceRecord(*r) for r in rows]

    # -- reads -------------------------------------------------------------------------------
    def series(
        self, *, site: str | None = None, zone: str | None = None, quantity: str | None = None
    ) -> list[SeriesInfo]:
        where, args = [], []
        for col, val in (("site", site), ("zone", zone), ("quantity", quantity)):
            if val:
                where.append(f"s.{col} = ?")
                args.append(val)
        sql = (
            "SELECT s.id, s.site, s.zone, s.device, s.quantity, s.unit, count(p.ts), min(p.ts), max(p.ts), "
            "arg_max(p.value, p.ts) FILTER (WHERE p.quality IN (0, 2)) "
            "FROM series s LEFT JOIN points p ON p.series_id = s.id "
            + ("WHERE " + " AND ".join(where) if where else "")
            + " GROUP BY ALL ORDER BY s.site, s.zone, s.device, s.quantity"
        )
        out = []
        for sid, site_, zone_, dev, q, unit, n, lo, hi, last in self._cur().execute(sql, args).fetchall():
            out.append(SeriesInfo(sid, SeriesKey(site_, zone_, dev, q), unit, n, lo, hi, last))
        return out

    def series_by_id(self, series_id: int) -> SeriesInfo | None:
        row = self._cur().execute(
            "SELECT s.id, s.site, s.zone, s.device, s.quantity, s.unit, count(p.ts), min(p.ts), max(p.ts), "
            "arg_max(p.value, p.ts) FILTER (WHERE p.quality IN (0, 2)) "
            "FROM series s LEFT JOIN points p ON p.series_id = s.id WHERE s.id = ? GROUP BY ALL",
            [series_id],
        ).fetchone()
        if row is None:
            return None
        sid, site_, zone_, dev, q, unit, n, lo, hi, last = row
        return SeriesInfo(sid, SeriesKey(site_, zone_, dev, q), unit, n, lo, hi, last)

    def query(
        self, series_id: int, start_ns: int | None, end_ns: int | None, every_ns: int | None = None
    ) -> pd.DataFrame:
        """Points of one series in [start, end); with `every`, mean/min/max/count per bucket.

        Served data excludes missing and quarantined rows (quality 1 and 3); flagged rows (2) are
        returned with their quality so a plot can mark them.
        """
        lo = -(2**63) if start_ns is None else int(start_ns)
        hi = 2**63 - 1 if end_ns is None else int(end_ns)
        cur = self._cur()
        if every_ns:
            return cur.execute(
                "SELECT (ts // ?) * ? AS ts, avg(value) AS value, min(value) AS min, max(value) AS max, "
                "count(*) AS count FROM points WHERE series_id = ? AND ts >= ? AND ts < ? "
                "AND quality IN (0, 2) GROUP BY 1 ORDER BY 1",
                [every_ns, every_ns, series_id, lo, hi],
            ).df()
        return cur.execute(
            "SELECT ts, value, quality FROM points WHERE series_id = ? AND ts >= ? AND ts < ? "
            "AND quality IN (0, 2) ORDER BY ts",
            [series_id, lo, hi],
        ).df()

    def query_long(self, series_ids: list[int], start_ns: int, end_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Long columns (series_id, ts, value) of usable points for many series, for forecasting."""
        cur = self._cur()
        ids = pd.DataFrame({"sid": np.asarray(series_ids, dtype=np.int32)})
        cur.register("_ids", ids)
        try:
            tbl = cur.execute(
                "SELECT p.series_id, p.ts, p.value FROM points p JOIN _ids ON p.series_id = _ids.sid "
                "WHERE p.ts >= ? AND p.ts < ? AND p.quality = 0",
                [start_ns, end_ns],
            ).fetchnumpy()
        finally:
            cur.unregister("_ids")
        return (
            np.asarray(tbl["series_id"], np.int64),
            np.asarray(tbl["ts"], np.int64),
            np.asarray(tbl["value"], np.float64),
        )

    def count_points(self) -> int:
        return int(_one(self._cur(), "SELECT count(*) FROM points"))

    def deadletters(self, *, reason: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        sql = "SELECT received_ns, topic, payload, reason, detail, source, device FROM deadletters"
        args: list[Any] = []
        if reason:
            sql += " WHERE reason = ?"
            args.append(reason)
        sql += " ORDER BY received_ns DESC LIMIT ?"
        args.append(limit)
        cols = ("received_ns", "topic", "payload", "reason", "detail", "source", "device")
        return [dict(zip(cols, r)) for r in self._cur().execute(sql, args).fetchall()]

    def unknown_devices(self, samples: int = 3) -> list[dict[str, Any]]:
        """Devices whose messages were kept as `unknown_device`, with counts and sample payloads."""
        rows = self._cur().execute(
            "SELECT device, count(*), min(received_ns), max(received_ns), "
            "list(payload ORDER BY received_ns DESC)[1:?], list(DISTINCT topic)[1:3] FROM deadletters "
            "WHERE reason = 'unknown_device' GROUP BY device ORDER BY 2 DESC", [samples]).fetchall()
        return [{"device": d, "messages": int(n), "first_ns": int(lo), "last_ns": int(hi),
                 "samples": [bytes(p) for p in ps], "topics": list(ts)} for d, n, lo, hi, ps, ts in rows]

    def replay_deadletters(self, process: Any, *, reason: str | None = None) -> dict[str, int]:
        """Run kept dead letters through `process` (the current pipeline) again.

        Those that now succeed leave the dead-letter table, their points are stored, and their
        ledger row takes the new outcome, all in one transaction, so a message still has
        exactly one outcome. Those that fail again stay, with their newest reason.
        """
        from greennanny.model import Uplink

        with self._lock:
            sql = "SELECT rowid, received_ns, topic, payload, source FROM deadletters WHERE source <> 'quarantine'"
            args: list[Any] = []
            if reason:
                sql += " AND reason = ?"
                args.append(reason)
            rows = self._con.execute(sql + " ORDER BY received_ns", args).fetchall()
            if not rows:
                return {"replayed": 0}
            ups = [Uplink(topic, bytes(payload), int(t)) for _, t, topic, payload, _ in rows]
            commit = process(ups)
            fixed = [(r, e) for r, e in zip(rows, commit.ledger, strict=True) if e.outcome != "dead_letter"]
            counts: dict[str, int] = {"replayed": len(rows)}
            for _, e in fixed:
                counts[e.outcome] = counts.get(e.outcome, 0) + 1
            counts["still_dead"] = len(rows) - len(fixed)
            commit.deadletters = []  # the failures are already kept; do not keep them twice
            commit.ledger = []

            def run() -> None:
                self._write_points(commit.batch)
                for (rowid, t, topic, _, _), e in fixed:
                    self._con.execute("DELETE FROM deadletters WHERE rowid = ?", [rowid])
                    self._con.execute(
                        "UPDATE ledger SET outcome = ?, kind = ?, dedup_key = ?, points = ? WHERE received_ns = ? "
                        "AND topic = ? AND outcome = 'dead_letter'", [e.outcome, e.kind, e.dedup_key, e.points, t, topic])
                if commit.device_events:
                    self._con.executemany("INSERT INTO device_events VALUES (?, ?, ?, ?)", commit.device_events)

            self._transaction(run)
            return counts

    def deadletter_counts(self) -> dict[str, int]:
        rows = self._cur().execute("SELECT reason, count(*) FROM deadletters GROUP BY 1 ORDER BY 2 DESC").fetchall()
        return {r: int(n) for r, n in rows}

    def outcome_counts(self) -> dict[str, int]:
        rows = self._cur().execute("SELECT outcome, count(*) FROM ledger GROUP BY 1 ORDER BY 1").fetchall()
        return {r: int(n) for r, n in rows}

    def outcome_detail(self) -> dict[str, int]:
        """Counts by outcome and kind (`non_uplink:status`, `dead_letter:unknown_device`)."""
        rows = self._cur().execute(
            "SELECT outcome || ':' || kind, count(*) FROM ledger GROUP BY 1 ORDER BY 1"
        ).fetchall()
        return {r: int(n) for r, n in rows}

    def first_seen_by_device(self) -> dict[str, int]:
        """Earliest stored reading per device (the live time-sanity rule's anchor)."""
        rows = self._cur().execute(
            "SELECT s.device, min(p.ts) FROM points p JOIN series s ON s.id = p.series_id GROUP BY 1").fetchall()
        return {d: int(t) for d, t in rows}

    def recent_dedup_keys(self, since_ns: int) -> list[tuple[str, int]]:
        return [
            (k, int(t))
            for k, t in self._cur().execute(
                "SELECT dedup_key, received_ns FROM ledger WHERE received_ns >= ? AND dedup_key <> '' "
                "AND outcome <> 'dead_letter'",
                [since_ns],
            ).fetchall()
        ]

    def device_events(self) -> list[tuple[int, str, str, str]]:
        return self._cur().execute("SELECT * FROM device_events ORDER BY ts").fetchall()

    # -- forecasts ---------------------------------------------------------------------------
    def write_forecasts(self, runs: pd.DataFrame, points: pd.DataFrame) -> None:
        """Store one forecast run (one row per series in `runs`, the steps in `points`)."""

        def run() -> None:
            self._con.register("_runs", runs)
            self._con.register("_fpoints", points)
            self._con.execute("INSERT INTO forecast_runs SELECT * FROM _runs")
            self._con.execute("INSERT INTO forecast_points SELECT * FROM _fpoints")
            self._con.unregister("_runs")
            self._con.unregister("_fpoints")

        with self._lock:
            self._transaction(run)

    def next_run_id(self) -> int:
        return int(_one(self._cur(), "SELECT coalesce(max(run_id), 0) + 1 FROM forecast_runs"))

    def latest_forecast(self, series_id: int) -> tuple[dict[str, Any], pd.DataFrame] | None:
        cur = self._cur()
        row = cur.execute(
            "SELECT run_id, made_ns, start_ns, step_ns, horizon, model, backtest_mae, backtest_mase, "
            "runner_up, runner_up_mase, fallback_reason FROM forecast_runs WHERE series_id = ? "
            "ORDER BY made_ns DESC, run_id DESC LIMIT 1",
            [series_id],
        ).fetchone()
        if row is None:
            return None
        cols = ("run_id", "made_ns", "start_ns", "step_ns", "horizon", "model", "backtest_mae",
                "backtest_mase", "runner_up", "runner_up_mase", "fallback_reason")
        meta = dict(zip(cols, row))
        pts = cur.execute(
            "SELECT ts, mean, lo80, hi80, lo95, hi95 FROM forecast_points WHERE run_id = ? AND series_id = ? ORDER BY ts",
            [meta["run_id"], series_id],
        ).df()
        return meta, pts

    def forecast_count(self) -> int:
        return int(_one(self._cur(), "SELECT count(*) FROM forecast_runs"))
