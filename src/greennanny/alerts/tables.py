"""Alerts in the store: the machines' memory, the episodes, the outbox and its deliveries.

Why an outbox in the same transaction as the state: an alert that fires and its notification
are one fact. The round that moves a track to firing writes the alert row, the event and one
delivery row per notifier together, so a crash either loses the whole round (it is evaluated
again from the persisted `last_ts`) or keeps the event for delivery; the notifiers read the
outbox on their own threads, and an event is retried until it is delivered, after restarts too.

Tables (store/duckdb_sql.py): `alert_tracks` (rule, series: state, since, last sample),
`alerts` (one row per episode that fired; acknowledgement on it), `alert_events` (firing,
resolved, acknowledged; the payload as sent), `alert_deliveries` (event x notifier: pending,
delivered, silenced, failed; attempts and the next try), `alert_silences`.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from greennanny.alerts.machine import FIRING, RESOLVED, Track, Transition
from greennanny.errors import InputError
from greennanny.mlops.registry import _audit, _dicts
from greennanny.store.duckdb import DuckDBStore
from greennanny.store.duckdb_sql import scalar

PENDING_DELIVERY, DELIVERED, SILENCED, FAILED = "pending", "delivered", "silenced", "failed"


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat().replace("+00:00", "Z")


def load_tracks(store: DuckDBStore) -> dict[tuple[str, int], Track]:
    rows = store.reader().execute(
        "SELECT rule, series_id, state, since_ns, last_ts, alert_id, value, peak FROM alert_tracks").fetchall()
    return {(r, int(s)): Track(r, int(s), st, int(since or 0), int(last), None if aid is None else int(aid),
                               float("nan") if v is None else float(v), float("nan") if pk is None else float(pk))
            for r, s, st, since, last, aid, v, pk in rows}


@dataclass(slots=True)
class Change:
    """One transition with what the outbox needs to describe it."""

    track: Track
    transition: Transition
    rule: Any  # RuleConfig
    series: Mapping[str, Any]  # id, site, zone, device, quantity, unit
    notifiers: Sequence[str]


def _silenced(con: duckdb.DuckDBPyConnection, rule: str, series_id: int, at_ns: int) -> bool:
    return bool(scalar(con, "SELECT count(*) FROM alert_silences WHERE (rule = ? OR rule = '*') "
                       "AND (series_id IS NULL OR series_id = ?) AND until_ns > ?", [rule, series_id, at_ns]))


def _event(con: duckdb.DuckDBPyConnection, now_ns: int, alert_id: int, kind: str, payload: dict[str, Any],
           notifiers: Sequence[str], silenced: bool) -> str:
    event_id = uuid.uuid4().hex
    seq = int(scalar(con, "SELECT coalesce(max(seq), 0) + 1 FROM alert_events"))
    payload = {"event_id": event_id, "seq": seq, "event": kind, **payload}
    con.execute("INSERT INTO alert_events VALUES (?, ?, ?, ?, ?, ?)",
                [seq, event_id, alert_id, now_ns, kind, json.dumps(payload, sort_keys=True, default=str)])
    for n in notifiers:
        con.execute("INSERT INTO alert_deliveries VALUES (?, ?, ?, 0, ?, NULL, NULL, ?)",
                    [event_id, n, SILENCED if silenced else PENDING_DELIVERY, now_ns, now_ns])
    return event_id


def _payload(alert: Mapping[str, Any], series: Mapping[str, Any]) -> dict[str, Any]:
    detail = alert.get("detail") or {}
    if isinstance(detail, str):
        detail = json.loads(detail)
    return {"alert_id": alert["alert_id"], "rule": alert["rule"], "kind": alert["kind"],
            "severity": alert["severity"], "state": alert["state"], "series": dict(series),
            "value": alert["value"], "peak": alert["peak"], "threshold": alert["threshold"],
            "clear_level": alert["clear_level"], "op": alert["op"], "started": iso(alert["started_ns"]),
            "fired": iso(alert["fired_ns"]), "resolved": iso(alert["resolved_ns"]), "acked_by": alert.get("acked_by"),
            "detail": {(k.removesuffix("_ns")): (iso(v) if k.endswith("_ns") else v)
                       for k, v in detail.items()}}


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def commit_round(store: DuckDBStore, now_ns: int, tracks: Sequence[Track], changes: Sequence[Change]) -> list[str]:
    """Persist one evaluation round: the tracks' memory, new and resolved alerts, their events and
    deliveries. Returns the new event ids (the dispatcher is woken for them)."""

    def tx(con: duckdb.DuckDBPyConnection) -> list[str]:
        events: list[str] = []
        next_id = int(scalar(con, "SELECT coalesce(max(alert_id), 0) + 1 FROM alerts"))
        for ch in changes:
            t, tr, rule = ch.track, ch.transition, ch.rule
            aid: int | None
            if tr.kind == "firing":
                aid = next_id
                next_id += 1
                t.alert_id = aid
                con.execute("INSERT INTO alerts VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?)",
                            [aid, rule.name, rule.kind, t.series_id, rule.severity, FIRING, tr.since_ns, tr.at_ns,
                             _num(tr.value), _num(tr.peak), rule.value, rule.clear_level, rule.op,
                             json.dumps(tr.detail)])
            elif tr.kind in ("resolved", "update"):
                aid = t.alert_id if tr.kind == "update" else _open_alert(con, rule.name, t.series_id)
                if aid is None:
                    continue
                if tr.kind == "resolved":
                    con.execute("UPDATE alerts SET state = ?, resolved_ns = ?, value = ?, peak = ?, detail = ? "
                                "WHERE alert_id = ?", [RESOLVED, tr.at_ns, _num(tr.value), _num(tr.peak),
                                                       json.dumps(tr.detail), aid])
                else:
                    con.execute("UPDATE alerts SET value = ?, peak = ?, detail = ? WHERE alert_id = ?",
                                [_num(tr.value), _num(tr.peak), json.dumps(tr.detail), aid])
                    continue
            else:
                continue
            row = _dicts(con.execute("SELECT * FROM alerts WHERE alert_id = ?", [aid]))[0]
            events.append(_event(con, now_ns, aid, tr.kind, _payload(row, ch.series), ch.notifiers,
                                 _silenced(con, rule.name, t.series_id, tr.at_ns)))
        if tracks:  # set-wise through a registered frame: a row at a time cost ~0.7 ms a track
            frame = pd.DataFrame({
                "rule": [t.rule for t in tracks], "series_id": np.array([t.series_id for t in tracks], np.int32),
                "state": [t.state for t in tracks], "since_ns": np.array([t.since_ns for t in tracks], np.int64),
                "last_ts": np.array([t.last_ts for t in tracks], np.int64),
                "alert_id": pd.array([t.alert_id for t in tracks], dtype="Int64"),
                "value": np.array([t.value for t in tracks], np.float64),
                "peak": np.array([t.peak for t in tracks], np.float64)})
            con.register("_tracks", frame)  # DuckDB reads a pandas float NaN as NULL (the test pins it)
            try:
                con.execute("DELETE FROM alert_tracks t USING _tracks n WHERE t.rule = n.rule AND t.series_id = n.series_id")
                con.execute("INSERT INTO alert_tracks SELECT rule, series_id, state, since_ns, last_ts, alert_id, value, peak "
                            "FROM _tracks")
                # a firing alert shows its latest value and the episode's extreme
                con.execute("UPDATE alerts SET value = n.value, peak = n.peak FROM _tracks n "
                            "WHERE alerts.alert_id = n.alert_id AND n.state = 'firing'")
            finally:
                con.unregister("_tracks")
        return events

    return store.transaction(tx)


def _open_alert(con: duckdb.DuckDBPyConnection, rule: str, series_id: int) -> int | None:
    aid = scalar(con, "SELECT max(alert_id) FROM alerts WHERE rule = ? AND series_id = ? AND state = ?",
                 [rule, series_id, FIRING])
    return None if aid is None else int(aid)


def get_alert(store: DuckDBStore, alert_id: int) -> dict[str, Any]:
    rows = _dicts(store.reader().execute(
        "SELECT a.*, s.site, s.zone, s.device, s.quantity, s.unit FROM alerts a LEFT JOIN series s ON s.id = a.series_id "
        "WHERE a.alert_id = ?", [alert_id]))
    if not rows:
        raise InputError(f"alert_id: no alert {alert_id}")
    row = rows[0]
    row["detail"] = json.loads(row["detail"] or "{}")
    return row


def ack(store: DuckDBStore, now_ns: int, alert_id: int, *, actor: str, note: str,
        notifiers: Callable[[str], Sequence[str]], series: Callable[[int], Mapping[str, Any]]) -> dict[str, Any]:
    """An operator takes the alert: it stays acknowledged (over restarts) until it resolves; an
    `acknowledged` event tells the other operators. Acknowledging twice is refused, naming who."""
    a = get_alert(store, alert_id)
    if a["acked_by"]:
        raise InputError(f"alert {alert_id}: already acknowledged by {a['acked_by']} at {iso(a['acked_ns'])}")
    if a["state"] != FIRING:
        raise InputError(f"alert {alert_id}: is {a['state']}; only a firing alert can be acknowledged")

    def tx(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("UPDATE alerts SET acked_by = ?, acked_ns = ?, ack_note = ? WHERE alert_id = ?",
                    [actor, now_ns, note, alert_id])
        _audit(con, now_ns, actor, "alert_ack", f"alert {alert_id}", {"rule": a["rule"], "series_id": a["series_id"],
                                                                         "note": note})
        row = _dicts(con.execute("SELECT * FROM alerts WHERE alert_id = ?", [alert_id]))[0]
        _event(con, now_ns, alert_id, "acknowledged", _payload(row, series(int(a["series_id"]))), notifiers(a["rule"]),
               _silenced(con, a["rule"], int(a["series_id"]), now_ns))

    store.transaction(tx)
    return get_alert(store, alert_id)


def silence(store: DuckDBStore, now_ns: int, *, rule: str, series_id: int | None, until_ns: int, actor: str,
            reason: str) -> dict[str, Any]:
    """Hold the notifications of a rule (or '*') on one series or all until `until_ns`: the alerts
    still fire and resolve and are listed; their deliveries are recorded as silenced."""
    if until_ns <= now_ns:
        raise InputError(f"until: {iso(until_ns)} is not in the future")
    if not reason.strip():
        raise InputError("reason: a silence needs a reason (it is audited)")

    def tx(con: duckdb.DuckDBPyConnection) -> int:
        sid = int(scalar(con, "SELECT coalesce(max(silence_id), 0) + 1 FROM alert_silences"))
        con.execute("INSERT INTO alert_silences VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [sid, rule, series_id, until_ns, now_ns, actor, reason])
        _audit(con, now_ns, actor, "alert_silence", f"rule {rule}",
               {"silence_id": sid, "series_id": series_id, "until": iso(until_ns), "reason": reason})
        return sid

    sid = store.transaction(tx)
    return {"silence_id": sid, "rule": rule, "series_id": series_id, "until": iso(until_ns), "actor": actor,
            "reason": reason}


def silences(store: DuckDBStore, now_ns: int) -> list[dict[str, Any]]:
    return _dicts(store.reader().execute(
        "SELECT * FROM alert_silences WHERE until_ns > ? ORDER BY silence_id", [now_ns]))


def list_alerts(store: DuckDBStore, *, state: str | None = None, rule: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first, with the series' key; `state` = firing | resolved | open (firing, acked or not)."""
    where, args = [], []
    if state in ("firing", "open"):
        where.append("a.state = 'firing'")
    elif state == "resolved":
        where.append("a.state = 'resolved'")
    elif state == "unacked":
        where.append("a.state = 'firing' AND a.acked_by IS NULL")
    elif state and state != "all":
        raise InputError(f"state: {state!r} is not one of open, firing, unacked, resolved, all")
    if rule:
        where.append("a.rule = ?")
        args.append(rule)
    sql = ("SELECT a.*, s.site, s.zone, s.device, s.quantity, s.unit FROM alerts a LEFT JOIN series s ON s.id = a.series_id"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY a.fired_ns DESC, a.alert_id DESC LIMIT ?")
    rows = _dicts(store.reader().execute(sql, args + [int(limit)]))
    for r in rows:
        r["detail"] = json.loads(r["detail"] or "{}")
    return rows


def pending_tracks(store: DuckDBStore) -> list[dict[str, Any]]:
    """Conditions that hold but have not lasted `for_s` yet (shown, not notified)."""
    return _dicts(store.reader().execute(
        "SELECT t.*, s.site, s.zone, s.device, s.quantity, s.unit FROM alert_tracks t LEFT JOIN series s ON s.id = t.series_id "
        "WHERE t.state = 'pending' ORDER BY t.since_ns"))


# -- the outbox, for the dispatcher -------------------------------------------------------------
def due(store: DuckDBStore, notifier: str, now_ns: int, limit: int = 100) -> list[tuple[str, dict[str, Any], int, int]]:
    """Deliveries of `notifier` whose time has come, oldest event first: (event_id, payload,
    attempts, created_ns)."""
    rows = store.reader().execute(
        "SELECT d.event_id, e.payload, d.attempts, d.created_ns FROM alert_deliveries d JOIN alert_events e "
        "ON e.event_id = d.event_id WHERE d.notifier = ? AND d.status = ? AND d.next_ns <= ? "
        "ORDER BY e.seq LIMIT ?", [notifier, PENDING_DELIVERY, now_ns, limit]).fetchall()
    return [(eid, json.loads(p), int(a), int(c)) for eid, p, a, c in rows]


def next_due_ns(store: DuckDBStore, notifier: str) -> int | None:
    due = scalar(store.reader(), "SELECT min(next_ns) FROM alert_deliveries WHERE notifier = ? AND status = ?",
                 [notifier, PENDING_DELIVERY])
    return None if due is None else int(due)


def mark(store: DuckDBStore, event_id: str, notifier: str, *, status: str, now_ns: int, next_ns: int | None = None,
         error: str | None = None, attempt: bool = True) -> None:
    """Record one attempt's outcome: delivered, a retry at `next_ns` (with the error), or failed;
    `attempt=False` when nothing was sent (given up before sending). A delivery keeps the last
    error of the attempts before it."""
    store.transaction(lambda con: con.execute(
        "UPDATE alert_deliveries SET status = ?, attempts = attempts + ?, next_ns = coalesce(?, next_ns), "
        "last_error = coalesce(?, last_error), delivered_ns = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_ns END "
        "WHERE event_id = ? AND notifier = ?",
        [status, int(attempt), next_ns, error, status, now_ns, event_id, notifier]))


def deliveries(store: DuckDBStore, *, status: str | None = None, notifier: str | None = None,
               limit: int = 500) -> list[dict[str, Any]]:
    where, args = [], []
    for col, val in (("d.status", status), ("d.notifier", notifier)):
        if val:
            where.append(f"{col} = ?")
            args.append(val)
    sql = ("SELECT d.*, e.alert_id, e.kind, e.at_ns, e.seq FROM alert_deliveries d JOIN alert_events e "
           "ON e.event_id = d.event_id" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY e.seq DESC LIMIT ?")
    return _dicts(store.reader().execute(sql, args + [int(limit)]))
