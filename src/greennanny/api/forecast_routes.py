"""`POST /forecasts/run` and `GET /forecasts/backtest`: a forecasting run now, and the selection
backtest on stored history (`greennanny forecast run|backtest`).

On a node they use the node's forecast service, so a run asked for here and the scheduled
refresh never run at the same time (the service serialises them); with the CLI on the store file
(no node), a service of its own.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from greennanny.config import Config
from greennanny.ingest.timeparse import any_to_ns
from greennanny.runtime.clock import SystemClock
from greennanny.store.duckdb import DuckDBStore


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    series: list[int] = Field(default_factory=list, description="Series ids to retrain.")
    site: str | None = Field(None, description="Select every forecast series of this site ...")
    zone: str | None = Field(None, description="... of this zone ...")
    quantity: str | None = Field(None, description="... of this quantity.")
    degraded: bool = Field(False, description="Select the series whose model health is degraded (7 days).")
    reason: str = Field(..., min_length=1, description="Why: kept with each new version and in the audit log.")
    actor: str = Field("api", min_length=1, description="Who asks (the CLI sends the user's login name).")
    at: str | None = Field(None, description="Train as of this instant (ISO 8601 or epoch; default now): for imported history.")


def forecast_router(cfg: Config, store: DuckDBStore, node: Any = None) -> APIRouter:
    from greennanny.forecast.service import ForecastService

    r = APIRouter()
    own: dict[str, ForecastService] = {}

    def service() -> ForecastService:
        svc = getattr(node, "forecaster", None)
        if isinstance(svc, ForecastService):
            return svc
        if node is not None:  # a node with its schedule off: its service, made here, resumes from the registry
            node.forecaster = ForecastService(store, cfg.forecast, node.clock, resume=True)
            return node.forecaster
        if "svc" not in own:
            own["svc"] = ForecastService(store, cfg.forecast, SystemClock())
        return own["svc"]

    def ids(series: list[int] | None) -> list[int] | None:
        if not series:
            return None
        missing = [s for s in series if store.series_by_id(s) is None]
        if missing:
            raise HTTPException(404, f"series {missing} do not exist")
        return series

    def when(at: str | None) -> int | None:
        return None if at is None else any_to_ns(at, field="at")

    @r.post("/forecasts/run")
    def run(series: list[int] | None = Query(None, description="Only these series (default: every "
                                                                 "series of the configured quantities)."),
            at: str | None = Query(None, description="Forecast as of this instant (ISO 8601 or epoch; default "
                                                     "now): for imported history.")) -> dict[str, Any]:
        """Forecast and store the result; returns the run's summary."""
        return service().run_once(when(at), series_ids=ids(series), trained_by="manual (api)").as_dict()

    @r.get("/forecasts/backtest")
    def backtest(series: list[int] | None = Query(None), at: str | None = Query(None), models: str | None = Query(
            None, description="Comma-separated model names (default: the automatic choice's candidates).")) -> dict[str, Any]:
        """Each model's rolling-origin backtest error per series, the choice and the runner-up (nothing stored)."""
        names = [m.strip() for m in models.split(",") if m.strip()] if models else None
        rows = service().backtest(when(at), series_ids=ids(series), models=names)  # an unknown model: 400 naming the known
        return {"origins": cfg.forecast.backtest_origins, "horizon_h": cfg.forecast.horizon_h,
                "step_min": cfg.forecast.step_min, "series": rows}

    @r.post("/models/retrain")
    def retrain(req: RetrainRequest) -> dict[str, Any]:
        """Refit the selected series now, the full way (choice by backtest, then the promotion
        gate), up to `[forecast] retrain_max_series` in this run; the rest wait for the next runs."""
        chosen = set(ids(req.series) or [])
        if req.site or req.zone or req.quantity:
            pool = [x for q in ([req.quantity] if req.quantity else cfg.forecast.quantities)
                    for x in store.series(site=req.site, zone=req.zone, quantity=q)]
            chosen |= {x.id for x in pool}
        if req.degraded:
            from greennanny.mlops.health import health

            svc0 = service()
            chosen |= {row["series_id"] for row in health(store, svc0.clock.now_ns())["series"]
                       if row["status"] == "degraded"}
        if not chosen:
            raise HTTPException(400, "nothing selected: give series ids, --site/--zone/--quantity or --degraded")
        svc = service()
        svc.request_retrain(sorted(chosen), actor=req.actor, reason=f"manual: {req.reason}")
        summary = svc.run_once(when(req.at), series_ids=sorted(chosen), trained_by=req.actor).as_dict()
        if not summary["series_considered"]:
            svc.cancel_retrain(sorted(chosen))
            raise HTTPException(409, f"none of the {len(chosen)} selected series has readings in the "
                                     f"{cfg.forecast.history_days}-day window before "
                                     f"{req.at or 'now'}: nothing to train on (for imported history give --at a time "
                                     "inside it)")
        return {"selected": len(chosen), **summary}

    return r
