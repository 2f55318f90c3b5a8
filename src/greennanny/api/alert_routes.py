"""`/alerts`: open and past alerts, acknowledgement, silences, rules and deliveries.

Operators act here at night: the routes answer with the alert as it now stands (who
acknowledged it, when it fired, the forecast's expected crossing time), and every operator action
is an audit row. Rules added here live in the store beside the config file's, under unique names.
"""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from greennanny.alerts import tables
from greennanny.alerts.engine import AlertEngine, add_rule, delete_rule, rule_rows
from greennanny.config import Config
from greennanny.errors import InputError
from greennanny.store.duckdb import DuckDBStore


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str = Field(..., min_length=1, description="Who takes the alert (kept on the alert and in the audit log).")
    note: str = Field("", description="What is being done about it.")


class SilenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rule: str = Field(..., min_length=1, description="Rule name, or * for every rule.")
    series_id: int | None = Field(None, description="Only this series (empty: every series of the rule).")
    minutes: float = Field(..., gt=0, le=60 * 24 * 30, description="How long notifications are held.")
    actor: str = Field(..., min_length=1, description="Who silences.")
    reason: str = Field(..., min_length=1, description="Why (kept in the audit log).")


def _times(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k.endswith("_ns") and (v is None or isinstance(v, int)):
            out[k[:-3]] = tables.iso(v)
        elif k == "detail" and isinstance(v, dict):
            out[k] = {(dk.removesuffix("_ns")): (tables.iso(dv) if dk.endswith("_ns") and isinstance(dv, int)
                                                                else dv) for dk, dv in v.items()}
        elif isinstance(v, float) and math.isnan(v):  # NaN is not JSON
            out[k] = None
        else:
            out[k] = v
    return out


def alert_router(cfg: Config, store: DuckDBStore, node: Any = None) -> APIRouter:
    r = APIRouter()

    def now() -> int:
        return node.clock.now_ns() if node is not None else time.time_ns()

    def engine() -> AlertEngine:
        eng = getattr(node, "alerts", None)
        return eng if eng is not None else AlertEngine(store, cfg.alerts)

    def series(sid: int) -> dict[str, Any]:
        s = store.series_by_id(sid)
        if s is None:
            return {"id": sid}
        return {"id": s.id, "site": s.key.site, "zone": s.key.zone, "device": s.key.device, "quantity": s.key.quantity,
                "unit": s.unit}

    @r.get("/alerts")
    def list_alerts(state: str | None = Query(None, description="open | unacked | firing | resolved (empty: all)."),
                    rule: str | None = Query(None, description="Only this rule."),
                    limit: int = Query(200, ge=1, le=10_000)) -> dict[str, Any]:
        """Alerts newest first, with the conditions still pending and the active silences."""
        t = now()
        return {"alerts": [_times(a) for a in tables.list_alerts(store, state=state, rule=rule, limit=limit)],
                "pending": [_times(p) for p in tables.pending_tracks(store)],
                "silences": [_times(s) for s in tables.silences(store, t)], "now": tables.iso(t)}

    @r.get("/alerts/rules")
    def rules() -> dict[str, Any]:
        """Every rule (config file, crop profiles and API), with how many series it watches."""
        eng = engine()
        return {"rules": rule_rows(eng.all_rules(), store),
                "notifiers": [n.model_dump() for n in cfg.alerts.notifiers]}

    @r.post("/alerts/rules")
    def create_rule(body: dict[str, Any], actor: str = Query("api", min_length=1)) -> dict[str, Any]:
        """Add a rule (the keys of [[alerts.rules]]); refused naming the field, a taken name, or
        a selector that matches no series."""
        rule = add_rule(store, cfg.alerts, body, actor=actor, now_ns=now())
        return {"rule": rule.model_dump()}

    @r.delete("/alerts/rules/{name}")
    def remove_rule(name: str, actor: str = Query("api", min_length=1)) -> dict[str, Any]:
        delete_rule(store, name, actor=actor, now_ns=now())
        return {"deleted": name}

    @r.get("/alerts/deliveries")
    def deliveries(status: str | None = Query(None, description="pending | delivered | silenced | failed"),
                   limit: int = Query(500, ge=1, le=10_000)) -> dict[str, Any]:
        """Each event x notifier: attempts, the last error, when it was delivered."""
        return {"deliveries": [_times(d) for d in tables.deliveries(store, status=status, limit=limit)]}

    @r.post("/alerts/evaluate")
    def evaluate() -> dict[str, Any]:
        """Run a round of derivation and rules now (a running node does it every interval_s)."""
        if node is None:
            raise InputError("no running node: rounds run in the node")
        return node.alerts_round()  # type: ignore[no-any-return]

    @r.post("/alerts/silence")
    def silence(req: SilenceRequest) -> dict[str, Any]:
        names = {x.name for x in engine().all_rules()}
        if req.rule != "*" and req.rule not in names:
            raise InputError(f"rule: no rule {req.rule!r} (rules: {', '.join(sorted(names)) or 'none'}; * for all)")
        t = now()
        return tables.silence(store, t, rule=req.rule, series_id=req.series_id, until_ns=t + int(req.minutes * 60e9),
                              actor=req.actor, reason=req.reason)

    @r.get("/alerts/{alert_id}")
    def one(alert_id: int) -> dict[str, Any]:
        return _times(tables.get_alert(store, alert_id))

    @r.post("/alerts/{alert_id}/ack")
    def ack(alert_id: int, req: AckRequest) -> dict[str, Any]:
        eng = engine()
        rules = {x.name: x for x in eng.all_rules()}
        a = tables.ack(store, now(), alert_id, actor=req.actor, note=req.note,
                       notifiers=lambda name: eng.targets(rules[name]) if name in rules else eng.notifiers,
                       series=series)
        if node is not None:
            node._wake_notifiers()
        return _times(a)

    return r
