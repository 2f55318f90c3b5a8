"""The node's own tables in the store: devices, dead letters, the message ledger, device events
and forecasts (part of `DuckDBStore`).

They live in the same DuckDB file as the points so that one transaction commits a batch's
points, dead letters and ledger rows together (`commit_ingest`): a message is acknowledged to
MQTT only once all of it is durable.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd

from greennanny.model import Batch, SeriesKey
from greennanny.store.base import DeviceRecord, WriteResult
from greennanny.store.duckdb_sql import first_row, scalar


class NodeTables:
    """Devices, dead letters, ledger, device events, forecasts (a mixin of `DuckDBStore`)."""

    _con: duckdb.DuckDBPyConnection
    _lock: threading.RLock
    _ids: dict[SeriesKey, int]

    if TYPE_CHECKING:
        from greennanny.store.points import PointTables

        tiers: PointTables

        def _cur(self) -> duckdb.DuckDBPyConnection: ...  # type: ignore[empty-body]
        def _transaction(self, fn: Any, doing: str = "writing") -> Any: ...
        def _write_points(self, batch: Batch) -> WriteResult: ...  # type: ignore[empty-body]

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
        rows = self._cur().execute(
            "SELECT dev_eui, codec, model, field_map, site, zone, name, source, interval_s FROM devices WHERE dev_eui = ?",
            [dev_eui],
        ).fetchall()  # all of it, so the cursor's transaction ends (see `_one`)
        return DeviceRecord(*rows[0]) if rows else None

    def devices(self) -> list[DeviceRecord]:
        rows = self._cur().execute(
            "SELECT dev_eui, codec, model, field_map, site, zone, name, source, interval_s FROM devices ORDER BY dev_eui"
        ).fetchall()
        return [DeviceRecord(*r) for r in rows]


    # -- dead letters, ledger, device events ------------------------------------------------
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
        summary, args = self.tiers.summary_sql()
        rows = self._cur().execute(
            f"SELECT s.device, min(r.first_any) FROM ({summary}) r JOIN series s ON s.id = r.series_id GROUP BY 1",
            args).fetchall()
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
        """Store one forecast run (one row per series in `runs`, the steps in `points`).

        The values are stored at their quantity's storage resolution, as readings are: a model's
        full-precision doubles are float noise below any sensor's resolution, and at that
        resolution DuckDB's ALP encoding stores them in ~2 B instead of 8 (bench/mlops.py)."""
        points = self._forecast_at_resolution(points)

        def run() -> None:
            self._con.register("_runs", runs)
            self._con.register("_fpoints", points)
            self._con.execute("INSERT INTO forecast_runs SELECT * FROM _runs")
            self._con.execute("INSERT INTO forecast_points SELECT * FROM _fpoints")
            self._con.unregister("_runs")
            self._con.unregister("_fpoints")

        with self._lock:
            self._transaction(run)

    def _forecast_at_resolution(self, points: pd.DataFrame) -> pd.DataFrame:
        from greennanny.model import QUANTITIES, round_to_resolution

        if not len(points):
            return points
        quantity = {sid: key.quantity for key, sid in self._ids.items()}
        uniq, inv = np.unique(points["series_id"].to_numpy(np.int64), return_inverse=True)
        names = [quantity.get(int(s), "") for s in uniq.tolist()]
        if not all(n in QUANTITIES for n in names):  # a series this process has not seen: leave it as it came
            return points
        out = points.copy()
        mean = out["mean"].to_numpy(np.float64)
        at = round_to_resolution(mean, names, inv)
        out["mean"] = at
        for lo, hi in (("lo80", "hi80"), ("lo95", "hi95")):  # widths rounded, then added: intervals stay whole steps
            below = round_to_resolution(mean - out[lo].to_numpy(np.float64), names, inv)
            above = round_to_resolution(out[hi].to_numpy(np.float64) - mean, names, inv)
            out[lo] = round_to_resolution(at - below, names, inv)
            out[hi] = round_to_resolution(at + above, names, inv)
        return out

    def next_run_id(self) -> int:
        return int(scalar(self._cur(), "SELECT coalesce(max(run_id), 0) + 1 FROM forecast_runs"))

    def latest_forecast(self, series_id: int) -> tuple[dict[str, Any], pd.DataFrame] | None:
        cur = self._cur()
        row = first_row(
            cur,
            "SELECT run_id, made_ns, start_ns, step_ns, horizon, model, backtest_mae, backtest_mase, "
            "runner_up, runner_up_mase, fallback_reason FROM forecast_runs WHERE series_id = ? "
            "ORDER BY made_ns DESC, run_id DESC LIMIT 1",
            [series_id],
        )
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
        return int(scalar(self._cur(), "SELECT count(*) FROM forecast_runs"))
