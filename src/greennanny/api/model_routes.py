"""`/models` and `/audit`: the model registry (design 005) for operators and data scientists.

Reads list each series' production version with its lineage, its versions and the history of its
`production` alias; `POST /models/rollback` moves the alias back and, on a running node, makes
its forecast service take the rolled-back versions at once (`ForecastService.reload`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from greennanny.mlops.registry import Registry
from greennanny.store.duckdb import DuckDBStore


class MlflowRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tracking_uri: str = Field(..., pattern=r"^https?://", description="The MLflow tracking server, http(s)://host:port.")
    experiment: str = Field("greennanny", min_length=1, description="MLflow experiment to log the run in.")
    version: int | None = Field(None, ge=1, description="The version to export (default: production).")
    actor: str = Field("api", min_length=1, description="Who asks (kept in the audit log).")


class AcceptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(..., min_length=1, description="Why the change is real (kept in the audit log).")
    actor: str = Field("api", min_length=1, description="Who decides.")


class CalibrateRequest(AcceptRequest):
    offset: float = Field(..., description="Added to the series' readings from the fault's start on, in its unit.")


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    series: list[int] = Field(default_factory=list, description="Series ids to roll back (or all=true).")
    all: bool = Field(False, description="Every series that has a production model.")
    to: int | str = Field("previous", description="A version number, or 'previous' (the version that held "
                                                  "production before the current one).")
    reason: str = Field(..., min_length=1, description="Why: kept in the alias history and the audit log.")
    actor: str = Field("api", min_length=1, description="Who asks (the CLI sends the user's login name).")


def _times(row: dict[str, Any]) -> dict[str, Any]:
    from greennanny.api.app import iso

    out = dict(row)
    for k in list(out):
        if k.endswith("_ns") and k != "step_ns" and (out[k] is None or isinstance(out[k], int)):
            v = out.pop(k)
            out[k[:-3]] = None if v is None else iso(v)
    return out


def model_router(store: DuckDBStore, node: Any = None) -> APIRouter:
    r = APIRouter()
    reg = Registry(store)

    def now() -> int:
        import time

        return node.clock.now_ns() if node is not None else time.time_ns()

    @r.get("/models")
    def production(series: list[int] | None = Query(None, description="Only these series.")) -> dict[str, Any]:
        """Each series' production model version: model, parameters, backtest, lineage, artifact."""
        return {"models": [_times(x) for x in reg.production(series or None)]}

    @r.get("/models/health")
    def model_health(days: int = Query(7, ge=1, le=366, description="Rolling window in UTC days."),
                     series: list[int] | None = Query(None, description="Only these series.")) -> dict[str, Any]:
        """Live accuracy per series (MAE, RMSE, MASE, 80/95 % coverage, by horizon bucket) and a status."""
        from greennanny.mlops.health import health

        body = health(store, now(), days=days, series_ids=series or None)
        return {**_times({k: v for k, v in body.items() if k != "series"}), "series": body["series"]}

    @r.get("/models/cards")
    def model_cards(model: str | None = Query(None, description="Only this model family."),
                    days: int = Query(7, ge=1, le=366, description="Window of the live figures, UTC days.")) -> dict[str, Any]:
        """A card per model family: intended use, training data, backtest and live metrics by site and
        quantity, known limits (generated from the registry and the live scores)."""
        from greennanny.mlops.cards import cards

        out = []
        for c in cards(store, now(), model=model, days=days):
            td = c["training_data"]
            out.append({**_times(c), "training_data": None if td is None else _times(td)})
        return {"cards": out}

    @r.post("/models/score")
    def score() -> dict[str, Any]:
        """Score the stored forecasts whose targets have arrived since the last round (the node does
        this after every forecast run)."""
        from dataclasses import asdict

        from greennanny.mlops.scoring import Scorer

        return _times(asdict(Scorer(store).score(now())))

    @r.get("/models/events")
    def list_events(status: str | None = Query(None, pattern="^(open|accepted|calibrated|closed)$",
                                               description="open, accepted, calibrated or closed."),
                    series: int | None = Query(None, description="Only this series."),
                    category: str | None = Query(None, description="sensor_fault, drift, decay, site ..."),
                    limit: int = Query(200, ge=1, le=100_000)) -> dict[str, Any]:
        """Health events (sensor faults, drift, decay, silent sites) with their evidence, newest first."""
        from greennanny.mlops.events import Events

        rows = Events(store).list(status=status, series_id=series, category=category, limit=limit)
        return {"events": [_times(e) for e in rows]}

    @r.post("/models/events/{event_id}/accept")
    def accept(event_id: int, req: AcceptRequest) -> dict[str, Any]:
        """The operator says a sensor fault's change is real: its readings count again."""
        from greennanny.mlops.events import Events

        return _times(Events(store).accept(now(), event_id, actor=req.actor, reason=req.reason))

    @r.post("/models/events/{event_id}/calibrate")
    def calibrate(event_id: int, req: CalibrateRequest) -> dict[str, Any]:
        """The operator sets an offset for a sensor fault: readings from its start count with it added."""
        from greennanny.mlops.events import Events

        return _times(Events(store).calibrate(now(), event_id, req.offset, actor=req.actor, reason=req.reason))

    @r.get("/models/{series_id}")
    def one(series_id: int) -> dict[str, Any]:
        """One series: its production and candidate versions, every version, the history of the
        aliases, and the promotion gate's newest decisions with their numbers."""
        from greennanny.api.app import series_json

        info = store.series_by_id(series_id)
        if info is None:
            raise HTTPException(404, f"series {series_id} does not exist")
        prod = reg.production([series_id])
        cand = reg.candidate(series_id)
        return {"series": series_json(info), "production": _times(prod[0]) if prod else None,
                "candidate": cand,
                "versions": [_times(v) for v in reg.versions(series_id)],
                "history": [_times(h) for h in reg.history(series_id)],
                "gate": [_times(g) for g in reg.gate_decisions(series_id, limit=20)]}

    @r.post("/models/rollback")
    def rollback(req: RollbackRequest) -> dict[str, Any]:
        """Move `production` back (to a version, or the previous one); recorded with actor and reason."""
        if req.all == bool(req.series):
            raise HTTPException(400, "give series ids or all=true (one of them)")
        if isinstance(req.to, str) and req.to != "previous" and not req.to.isdigit():
            raise HTTPException(400, f"to: {req.to!r} is neither a version number nor 'previous'")
        to = None if req.to == "previous" else int(req.to)
        moved = reg.rollback(None if req.all else req.series, to, actor=req.actor, reason=req.reason, now_ns=now())
        svc = getattr(node, "forecaster", None)
        reloaded = svc.reload() if svc is not None else None
        return {"moved": moved, "node_reloaded": reloaded}

    @r.post("/models/{series_id}/mlflow")
    def to_mlflow(series_id: int, req: MlflowRequest) -> dict[str, Any]:
        """Export a model version with its lineage and metrics to an MLflow tracking server."""
        from greennanny.mlops.health import health
        from greennanny.mlops.mlflow_export import MlflowExport

        row = health(store, now(), series_ids=[series_id])["series"][0]
        live = {k: row[k] for k in ("mae", "rmse", "mase", "coverage80") if row["n"] and row[k] is not None}
        ex = MlflowExport(req.tracking_uri, experiment=req.experiment)
        try:
            out = ex.export(reg, series_id, req.version, live=live)
        finally:
            ex.close()
        reg.record(now(), req.actor, "mlflow_export", f"series {series_id} v{out['version']}", out)
        return out

    @r.get("/audit")
    def audit(limit: int = Query(100, ge=1, le=10_000), action: str | None = Query(None)) -> dict[str, Any]:
        """The newest audit rows (registrations, rollbacks, fallbacks ...), oldest first."""
        return {"audit": [_times(a) for a in reg.audit(limit, action)]}

    return r
