"""Small DuckDB helpers shared by the store's modules."""

from __future__ import annotations

from typing import Any

import duckdb


def scalar(con: duckdb.DuckDBPyConnection, sql: str, args: list[Any] | None = None) -> Any:
    """The single value of an aggregate query (which always returns one row).

    `fetchall`, not `fetchone`: a result read only in part keeps its cursor's transaction open,
    and an open reader makes `maintain`'s CHECKPOINT fail (tests/unit/test_store_reader_cursors.py).
    """
    rows = con.execute(sql, args or []).fetchall()
    assert len(rows) == 1, sql
    return rows[0][0]


def first_row(con: duckdb.DuckDBPyConnection, sql: str, args: list[Any] | None = None) -> tuple[Any, ...] | None:
    """The first row of a query, or None; read to its end for the same reason as `scalar`, and
    because DuckDB 2 refuses `register` and `sql` on a connection whose last result was read only
    in part ('connection has an unfinished result from execute()')."""
    rows = con.execute(sql, args or []).fetchall()
    return rows[0] if rows else None


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# The store's own tables (points and rollups are created by store/points.py and store/rollups.py).
META = "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);"
SCHEMA = """
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
CREATE TABLE IF NOT EXISTS model_versions (
  series_id INTEGER, version INTEGER, run_id BIGINT, created_ns BIGINT, model VARCHAR, params VARCHAR,
  step_ns BIGINT, horizon INTEGER, data_start_ns BIGINT, data_end_ns BIGINT, data_points INTEGER,
  data_sha256 VARCHAR, code_version VARCHAR, backtest_mae DOUBLE, backtest_mase DOUBLE, runner_up VARCHAR,
  runner_up_mase DOUBLE, trained_by VARCHAR, reason VARCHAR, artifact VARCHAR);
CREATE TABLE IF NOT EXISTS model_artifacts (
  artifact VARCHAR, run_id BIGINT, sha256 VARCHAR, bytes BIGINT, created_ns BIGINT);
CREATE TABLE IF NOT EXISTS model_aliases (series_id INTEGER, alias VARCHAR, version INTEGER, since_ns BIGINT);
CREATE TABLE IF NOT EXISTS model_alias_history (
  at_ns BIGINT, series_id INTEGER, alias VARCHAR, version INTEGER, previous_version INTEGER, actor VARCHAR,
  reason VARCHAR);
CREATE TABLE IF NOT EXISTS model_gate_decisions (
  run_id BIGINT, at_ns BIGINT, series_id INTEGER, candidate_version INTEGER, production_version INTEGER,
  candidate_mase DOUBLE, production_mase DOUBLE, coverage80 DOUBLE, cells INTEGER, promoted BOOLEAN,
  reason VARCHAR);
CREATE TABLE IF NOT EXISTS mlops_events (
  event_id BIGINT, at_ns BIGINT, series_id INTEGER, category VARCHAR, kind VARCHAR, start_ns BIGINT,
  status VARCHAR, calibration DOUBLE, resolved_ns BIGINT, resolved_by VARCHAR, note VARCHAR, evidence VARCHAR);
CREATE TABLE IF NOT EXISTS forecast_scores (
  series_id INTEGER, day_ns BIGINT, bucket VARCHAR, model VARCHAR, n BIGINT, abs_err DOUBLE, sq_err DOUBLE,
  naive_abs_err DOUBLE, naive_n BIGINT, in80 BIGINT, in95 BIGINT);
CREATE TABLE IF NOT EXISTS alert_tracks (
  rule VARCHAR, series_id INTEGER, state VARCHAR, since_ns BIGINT, last_ts BIGINT, alert_id BIGINT,
  value DOUBLE, peak DOUBLE);
CREATE TABLE IF NOT EXISTS alerts (
  alert_id BIGINT, rule VARCHAR, kind VARCHAR, series_id INTEGER, severity VARCHAR, state VARCHAR,
  started_ns BIGINT, fired_ns BIGINT, resolved_ns BIGINT, value DOUBLE, peak DOUBLE, threshold DOUBLE,
  clear_level DOUBLE, op VARCHAR, acked_by VARCHAR, acked_ns BIGINT, ack_note VARCHAR, detail VARCHAR);
CREATE TABLE IF NOT EXISTS alert_events (
  seq BIGINT, event_id VARCHAR, alert_id BIGINT, at_ns BIGINT, kind VARCHAR, payload VARCHAR);
CREATE TABLE IF NOT EXISTS alert_deliveries (
  event_id VARCHAR, notifier VARCHAR, status VARCHAR, attempts INTEGER, next_ns BIGINT, last_error VARCHAR,
  delivered_ns BIGINT, created_ns BIGINT);
CREATE TABLE IF NOT EXISTS alert_rules (name VARCHAR, body VARCHAR, created_ns BIGINT, actor VARCHAR);
CREATE TABLE IF NOT EXISTS alert_silences (
  silence_id BIGINT, rule VARCHAR, series_id INTEGER, until_ns BIGINT, created_ns BIGINT, actor VARCHAR,
  reason VARCHAR);
CREATE TABLE IF NOT EXISTS audit_log (
  seq BIGINT, at_ns BIGINT, actor VARCHAR, action VARCHAR, subject VARCHAR, detail VARCHAR);
"""
