"""Compaction, retention and statistics of the DuckDB store (part of `DuckDBStore`).

The scheduled job's side of the store (`maintain`, run by the node's maintenance thread and by
`greennanny db maintain`): days move to the cold tier and get their rollups, each tier and the
node's own tables are cut to their retention, and the file is rewritten when it is mostly free
space (design 003, docs/operations.md).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import duckdb

from greennanny.store.cold import DAY_NS
from greennanny.store.cold_rollups import RollupMonths
from greennanny.store.duckdb_sql import scalar


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
    model_versions_kept: int = 3  # per series, besides production (mlops.registry.Registry.prune)
    forecasts_thin_after_h: int = 48  # scored runs older than this: only each series' latest and first of a day stay
    events_days: int = 365  # resolved alerts, their events and deliveries, closed health events, gate decisions


def retention_from(cfg: Any) -> Retention:
    """The store's policy from a `config.RetentionConfig` (kept apart so the store needs no config)."""
    return Retention(cfg.raw_days, cfg.rollup_1m_days, cfg.rollup_1h_days, cfg.forecasts_days, cfg.ledger_days,
                     cfg.deadletters_days, cfg.compact_after_h, cfg.model_versions_kept, cfg.forecasts_thin_after_h,
                     cfg.events_days)


class Maintenance:
    """Compaction, retention, checkpoints and `stats` (a mixin of `DuckDBStore`)."""

    _con: duckdb.DuckDBPyConnection
    _lock: threading.RLock
    path: Path
    retention_policy: Retention

    if TYPE_CHECKING:
        from greennanny.store.points import PointTables

        tiers: PointTables

        def _cur(self) -> duckdb.DuckDBPyConnection: ...  # type: ignore[empty-body]
        def _transaction(self, fn: Any, doing: str = "writing") -> Any: ...
        def _checkpoint(self) -> None: ...
        def _ensure_open(self) -> None: ...
        def _rewrite_if_sparse(self) -> int: ...  # type: ignore[empty-body]
        def file_space(self, cur: duckdb.DuckDBPyConnection) -> tuple[int, int]: ...  # type: ignore[empty-body]
        def free_bytes(self) -> int: ...  # type: ignore[empty-body]

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
        self.tiers._day_rows.clear()  # read in the transaction that rolled back: read them again
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
            if p.forecasts_thin_after_h:
                out["forecast_runs_thinned"] = self._thin_forecasts(now_ns - p.forecasts_thin_after_h * 3600 * 10**9)
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
                ("alerts_removed", p.events_days, "DELETE FROM alerts WHERE state = 'resolved' AND resolved_ns < ?"),
                ("alert_deliveries_removed", p.events_days,
                 "DELETE FROM alert_deliveries WHERE status <> 'pending' AND created_ns < ?"),
                ("alert_events_removed", p.events_days, ("DELETE FROM alert_events WHERE at_ns < ? AND event_id NOT IN "
                 "(SELECT event_id FROM alert_deliveries) AND alert_id NOT IN (SELECT alert_id FROM alerts)")),
                ("alert_silences_removed", p.events_days, "DELETE FROM alert_silences WHERE until_ns < ?"),
                ("mlops_events_removed", p.events_days, "DELETE FROM mlops_events WHERE status <> 'open' AND at_ns < ?"),
                ("gate_decisions_removed", p.events_days, "DELETE FROM model_gate_decisions WHERE at_ns < ?"),
            ):
                if (c := cut(days)) is not None:
                    out[name] = int(scalar(self._con, sql.replace("DELETE FROM", "SELECT count(*) FROM", 1), [c]))
                    self._con.execute(sql, [c])

        from greennanny.mlops.registry import Registry  # the registry's tables live here; its code in mlops

        with self._lock:
            self._transaction(run, "applying retention")
            out["model_artifacts_removed"] = Registry(cast(Any, self)).prune(p.model_versions_kept, now_ns)
            self._checkpoint()  # hand freed blocks back for reuse, so the file stops growing
            out["file_rewritten_bytes_freed"] = self._rewrite_if_sparse()
        return out

    def _thin_forecasts(self, before_ns: int) -> int:
        """Remove the forecast runs made before `before_ns` whose every step has been scored
        (mlops.scoring's watermark), except each series' latest run and its first run of each UTC
        day: a refresh every 15 min stores ~100 runs a day, and once scored their accuracy lives in
        the score sums. Returns the (run, series) rows removed."""
        rows = self._con.execute("SELECT value FROM meta WHERE key = 'scored_through_ns'").fetchall()
        if not rows:
            return 0
        self._con.execute(
            "CREATE OR REPLACE TEMP TABLE _thin AS SELECT run_id, series_id FROM (SELECT run_id, series_id, made_ns, "
            "start_ns + horizon * step_ns AS ends, row_number() OVER (PARTITION BY series_id ORDER BY made_ns DESC, "
            "run_id DESC) AS newest, row_number() OVER (PARTITION BY series_id, made_ns // 86400000000000 ORDER BY "
            "made_ns, run_id) AS of_day FROM forecast_runs) WHERE made_ns < ? AND ends <= ? AND newest > 1 AND of_day > 1",
            [before_ns, int(rows[0][0])])
        n = int(scalar(self._con, "SELECT count(*) FROM _thin"))
        if n:
            self._con.execute("DELETE FROM forecast_points p USING _thin t WHERE p.run_id = t.run_id "
                              "AND p.series_id = t.series_id")
            self._con.execute("DELETE FROM forecast_runs r USING _thin t WHERE r.run_id = t.run_id "
                              "AND r.series_id = t.series_id")
        self._con.execute("DROP TABLE _thin")
        return n

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
        # hot rows share the DuckDB file with every other table: their bytes are estimated at the
        # cold tier's rate, and not at all before the first compaction (None, not a false 0)
        out["raw_bytes"] = None if hot and not cold else \
            cold_bytes + (round(hot * out["cold_bytes_per_point"]) if cold and hot else 0)
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
