"""Health events of the models and their data: sensor faults, drift, accuracy decay, fallbacks.

Why one table for all of them: an operator's question is "what happened to series 42 and what
did the node do about it", and the answer mixes a stuck probe, a drift alarm, the retrain it
triggered and the fallback that served meanwhile. Each event carries its evidence (the numbers
that raised it, as JSON) and, for a sensor fault, a status an operator moves:

- `open`: the fault stands; the series' readings from `start_ns` on are kept out of training and
  scoring (`FaultMask`) and the series is not retrained;
- `accepted`: the operator says the change is real (a moved probe, a new setpoint): the readings
  count again and the series may retrain;
- `calibrated`: the operator gives an offset; readings from `start_ns` on count with it added;
- `closed`: a fault that ended by itself (a silent sensor that reports again, a stuck one that
  moves) or a finding that needs no operator (drift, decay: `closed` once its retrain is asked).

Every opening and every operator action is also an audit row, so the audit log alone tells the
story in order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from greennanny.errors import InputError, UnknownVersion
from greennanny.mlops.registry import _audit, _dicts
from greennanny.store.duckdb import DuckDBStore
from greennanny.store.duckdb_sql import scalar

SENSOR_FAULT = "sensor_fault"
OPEN, ACCEPTED, CALIBRATED, CLOSED = "open", "accepted", "calibrated", "closed"


@dataclass(slots=True)
class Finding:
    """Something a check found, before it is an event."""

    series_id: int
    category: str  # sensor_fault | drift | decay | fallback
    kind: str  # step | stuck | silent | residual | accuracy | ...
    start_ns: int
    evidence: dict[str, Any] = field(default_factory=dict)
    status: str = OPEN


class Events:
    def __init__(self, store: DuckDBStore) -> None:
        self.store = store

    def raise_(self, now_ns: int, findings: Sequence[Finding], actor: str = "monitor", *, audit: bool = True) -> list[int]:
        """Record each finding as an event unless the same one is known: an open event of that
        series, category and kind, or any event of it starting at the same instant (a step
        already judged is not raised again). Returns the new event ids. `audit=False` where the
        caller has written the audit row of the same fact (a refused artifact)."""
        if not findings:
            return []
        cur = self.store.reader()
        known = {(int(s), c, k) for s, c, k in cur.execute(
            "SELECT series_id, category, kind FROM mlops_events WHERE status = ?", [OPEN]).fetchall()}
        seen = {(int(s), c, k, int(t)) for s, c, k, t in cur.execute(
            "SELECT series_id, category, kind, start_ns FROM mlops_events").fetchall()}
        new = [f for f in findings if (f.series_id, f.category, f.kind) not in known
               and (f.series_id, f.category, f.kind, f.start_ns) not in seen]
        if not new:
            return []

        def tx(con: duckdb.DuckDBPyConnection) -> list[int]:
            first = int(scalar(con, "SELECT coalesce(max(event_id), 0) + 1 FROM mlops_events"))
            ids = list(range(first, first + len(new)))
            for eid, f in zip(ids, new):
                body = json.dumps(f.evidence, sort_keys=True, default=_plain)
                con.execute("INSERT INTO mlops_events VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, NULL, ?)",
                            [eid, now_ns, f.series_id, f.category, f.kind, f.start_ns, f.status,
                             now_ns if f.status != OPEN else None, actor if f.status != OPEN else None, body])
                if audit:
                    _audit(con, now_ns, actor, f.category, f"series {f.series_id}",
                           {"event": eid, "kind": f.kind, "start_ns": f.start_ns, **f.evidence})
            return ids

        return self.store.transaction(tx)

    def close(self, now_ns: int, series_kinds: Sequence[tuple[int, str, str]], note: str, actor: str = "monitor") -> int:
        """Close the open events of these (series, category, kind) that ended by themselves."""
        if not series_kinds:
            return 0
        want = {(int(s), c, k) for s, c, k in series_kinds}
        ids = [int(e) for e, s, c, k in self.store.reader().execute(
            "SELECT event_id, series_id, category, kind FROM mlops_events WHERE status = ?", [OPEN]).fetchall()
            if (int(s), c, k) in want]
        if ids:
            self._resolve(now_ns, ids, CLOSED, None, actor, note)
        return len(ids)

    def accept(self, now_ns: int, event_id: int, *, actor: str, reason: str) -> dict[str, Any]:
        """The operator says the change is real: the readings count again."""
        self._check_open(event_id)
        self._resolve(now_ns, [event_id], ACCEPTED, None, actor, reason)
        return self.get(event_id)

    def calibrate(self, now_ns: int, event_id: int, offset: float, *, actor: str, reason: str) -> dict[str, Any]:
        """The operator gives an offset: readings from the event's start count with it added."""
        if not np.isfinite(offset):
            raise InputError(f"offset: {offset!r} is not a finite number")
        self._check_open(event_id)
        self._resolve(now_ns, [event_id], CALIBRATED, float(offset), actor, reason)
        return self.get(event_id)

    def _check_open(self, event_id: int) -> None:
        ev = self.get(event_id)
        if ev["category"] != SENSOR_FAULT or ev["status"] != OPEN:
            raise InputError(f"event {event_id} is a {ev['status']} {ev['category']} ({ev['kind']}): only an open "
                             "sensor fault can be accepted or calibrated")

    def _resolve(self, now_ns: int, ids: Sequence[int], status: str, calibration: float | None, actor: str,
                 note: str) -> None:
        def tx(con: duckdb.DuckDBPyConnection) -> None:
            marks = ",".join("?" * len(ids))
            con.execute(f"UPDATE mlops_events SET status = ?, calibration = ?, resolved_ns = ?, resolved_by = ?, note = ? "
                        f"WHERE event_id IN ({marks})", [status, calibration, now_ns, actor, note, *ids])
            rows = con.execute(f"SELECT event_id, series_id, category, kind FROM mlops_events WHERE event_id IN ({marks})",
                               list(ids)).fetchall()
            for eid, sid, category, kind in rows:
                detail: dict[str, Any] = {"event": int(eid), "kind": kind, "reason": note}
                if calibration is not None:
                    detail["offset"] = calibration
                _audit(con, now_ns, actor, {ACCEPTED: "fault_accepted", CALIBRATED: "fault_calibrated"}.get(
                    status, f"{category}_closed"), f"series {int(sid)}", detail)

        self.store.transaction(tx)

    def get(self, event_id: int) -> dict[str, Any]:
        rows = self.list(event_id=event_id)
        if not rows:
            raise UnknownVersion(f"no event {event_id}")
        return rows[0]

    def list(self, *, status: str | None = None, series_id: int | None = None, category: str | None = None,
             event_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Events, newest first, with their evidence decoded."""
        where, args = [], []
        for col, v in (("status", status), ("series_id", series_id), ("category", category), ("event_id", event_id)):
            if v is not None:
                where.append(f"{col} = ?")
                args.append(v)
        sql = "SELECT * FROM mlops_events" + (" WHERE " + " AND ".join(where) if where else "")
        rows = _dicts(self.store.reader().execute(sql + " ORDER BY event_id DESC LIMIT ?", [*args, int(limit)]))
        for r in rows:
            r["evidence"] = json.loads(r["evidence"]) if r["evidence"] else {}
        return rows

    def last_at(self, categories: Sequence[str]) -> dict[int, int]:
        """Per series, when the newest event of these categories was raised."""
        marks = ",".join("?" * len(categories))
        return {int(s): int(t) for s, t in self.store.reader().execute(
            f"SELECT series_id, max(at_ns) FROM mlops_events WHERE category IN ({marks}) GROUP BY 1",
            list(categories)).fetchall()}


class FaultMask:
    """What the step faults say about readings: an open one hides them from `start_ns` on, a
    calibrated one adds its offset from `start_ns` on (stuck readings are already masked by the
    data-quality step; a silent sensor has none). One place, used by training (the
    forecast service) and by scoring, so neither learns from nor judges by a faulty sensor."""

    def __init__(self, spans: Mapping[int, list[tuple[int, float | None]]]) -> None:
        self.spans = spans  # series -> [(start_ns, None = hidden | offset)]

    @classmethod
    def load(cls, store: DuckDBStore) -> FaultMask:
        spans: dict[int, list[tuple[int, float | None]]] = {}
        for sid, start, status, cal in store.reader().execute(
                "SELECT series_id, start_ns, status, calibration FROM mlops_events WHERE category = ? AND kind = 'step' "
                "AND status IN (?, ?) ORDER BY start_ns", [SENSOR_FAULT, OPEN, CALIBRATED]).fetchall():
            spans.setdefault(int(sid), []).append((int(start), None if status == OPEN else float(cal)))
        return cls(spans)

    def hidden(self) -> set[int]:
        """Series with an open fault (not retrained until it is resolved)."""
        return {s for s, sp in self.spans.items() if any(o is None for _, o in sp)}

    def apply(self, sid: np.ndarray, ts: np.ndarray, val: np.ndarray) -> np.ndarray:
        """`val` with hidden readings NaN and calibrated ones offset (a copy when anything changes)."""
        if not self.spans or not len(sid):
            return val
        out = val
        for s, spans in self.spans.items():
            rows = sid == s
            if not rows.any():
                continue
            if out is val:
                out = val.astype(np.float64, copy=True)
            for start, offset in spans:
                hit = rows & (ts >= start)
                out[hit] = np.nan if offset is None else out[hit] + offset
        return out


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    return str(x)
