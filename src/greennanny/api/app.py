"""The node's REST API and dashboard, served by the process that owns the store.

Security by default: bound to loopback, no token is needed; bound to any other address, every
route but /health needs `Authorization: Bearer <token>` (or the dashboard cookie set from
`/?token=`), and the node refuses to start without a token file.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse

from greennanny import __version__
from greennanny.api import errors
from greennanny.api.alert_routes import alert_router
from greennanny.api.batch_codec import batch_from_arrow
from greennanny.api.forecast_routes import forecast_router
from greennanny.api.model_routes import model_router
from greennanny.api.registry_routes import registry_router
from greennanny.config import Config
from greennanny.errors import ConfigError, StoreError
from greennanny.ingest.timeparse import any_to_ns
from greennanny.store.base import SeriesInfo
from greennanny.store.duckdb import DuckDBStore
from greennanny.store.export import (
    DEFAULT_CHUNK_ROWS,
    MEDIA_TYPES,
    SUFFIXES,
    ExportRequest,
    export_bytes,
    parse_duration,
    parse_time,
    plan_export,
)

SIGN_IN = """<!doctype html><html><head><meta charset="utf-8"><title>greennanny: sign in</title></head>
<body style="font-family:sans-serif;max-width:36em;margin:4em auto">
<h1>greennanny</h1><p>This node's API is reachable from the network, so it needs its API token.</p>
<form method="get" action="/"><label>API token <input name="token" type="password" autofocus></label>
<button>Open dashboard</button></form>
<p>The token is in the file named by <code>api.token_file</code> next to the node's config.</p></body></html>"""
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WEB = Path(__file__).resolve().parent.parent / "web"


def iso(ns: int | None) -> str | None:
    """UTC RFC 3339 with as many fractional digits as the instant needs (up to nanoseconds)."""
    if ns is None:
        return None
    secs, frac = divmod(int(ns), 1_000_000_000)
    base = datetime.fromtimestamp(secs, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac == 0:
        return base + "Z"
    digits = f"{frac:09d}"
    if frac % 1000 == 0:
        digits = digits[:6]  # microseconds suffice (keeps ms/us data short and readable)
    return f"{base}.{digits}Z"


def series_json(s: SeriesInfo) -> dict[str, Any]:
    return {
        "id": s.id, "key": str(s.key), "site": s.key.site, "zone": s.key.zone, "device": s.key.device,
        "quantity": s.key.quantity, "unit": s.unit, "points": s.points, "first": iso(s.first_ns),
        "last": iso(s.last_ns), "last_value": s.last_value,
    }


def _ns_param(v: str | None, name: str, now_ns: int | None = None) -> int | None:
    """ISO 8601 or epoch; with `now_ns`, also `now` and times before it (`-7d`), as the CLI and
    /db/export take them."""
    if v is None or v == "":
        return None
    if now_ns is not None and (v.strip().startswith("-") or v.strip().lower() == "now"):
        return parse_time(v, option=name, now_ns=now_ns)
    return any_to_ns(v, field=name)


def create_app(cfg: Config, store: DuckDBStore, node: Any = None) -> FastAPI:
    token = cfg.api_token()
    need_token = cfg.api.host not in LOOPBACK

    def auth(request: Request) -> None:
        if not need_token:
            return
        got = request.headers.get("authorization", "")
        given = got[7:] if got.lower().startswith("bearer ") else request.cookies.get("gn_token", "")
        if not token or not given or not hmac.compare_digest(given, token):
            raise HTTPException(401, "missing or wrong API token (Authorization: Bearer <token>)")

    app = FastAPI(title="greennanny", version=__version__,
                  description="Edge node API: series, points, forecasts, dead letters.")
    errors.install(app)
    guarded = [Depends(auth)]

    @app.get("/health")
    def health() -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "version": __version__}
        if node is not None:
            st = node.stats
            out.update(mqtt_connected=node.mqtt.connected.is_set(), messages=st.messages, points_ingested=st.points,
                       store_error=st.store_error,
                       ingest={"first_commit_ns": st.first_commit_ns, "first_batch_messages": st.first_batch,
                               "last_commit_ns": st.last_commit_ns})
        try:
            out["points_stored"] = store.count_points()
        except StoreError as exc:  # the node is up; say why the store is not (its commits retry)
            out["points_stored"] = None
            out["store_error"] = str(exc)
        return out

    @app.get("/series", dependencies=guarded)
    def list_series(site: str | None = None, zone: str | None = None, quantity: str | None = None) -> list[dict[str, Any]]:
        return [series_json(s) for s in store.series(site=site, zone=zone, quantity=quantity)]

    def one(series_id: int) -> SeriesInfo:
        s = store.series_by_id(series_id)
        if s is None:
            raise HTTPException(404, f"series {series_id} does not exist")
        return s

    def node_now() -> int:
        clock = getattr(node, "clock", None)
        return int(clock.now_ns()) if clock is not None else time.time_ns()

    @app.get("/series/{series_id}/points", dependencies=guarded)
    def points(series_id: int, start: str | None = Query(None, description="ISO 8601, epoch, now or -7d"),
               end: str | None = Query(None, description="ISO 8601, epoch, now or -1h (exclusive)"),
               every: str | None = Query(None, description="bucket: 300, 5m, 1h, 1d (mean per bucket)")) -> dict[str, Any]:
        s = one(series_id)
        now = node_now()
        every_ns = None if every in (None, "") else parse_duration(str(every), option="every")
        if every_ns is not None and every_ns % 1_000_000_000:
            raise ConfigError(f"every {every!r} is not a whole number of seconds")
        df = store.query(series_id, _ns_param(start, "start", now), _ns_param(end, "end", now), every_ns)
        every_s = None if every_ns is None else every_ns // 1_000_000_000  # seconds in the answer, as before
        ts = df["ts"].to_numpy(np.int64)
        body: dict[str, Any] = {"series": series_json(s), "every": every_s,
                                "ts": [iso(int(t)) for t in ts], "value": df["value"].round(6).tolist()}
        if every_s:
            body.update(min=df["min"].tolist(), max=df["max"].tolist(), count=df["count"].tolist())
        return body

    @app.get("/series/{series_id}/forecast", dependencies=guarded)
    def forecast(series_id: int) -> dict[str, Any]:
        s = one(series_id)
        got = store.latest_forecast(series_id)
        if got is None:
            if s.key.quantity not in cfg.forecast.quantities:
                raise HTTPException(404, f"series {series_id} has no forecast: its quantity {s.key.quantity} is not "
                                         "in [forecast] quantities")
            raise HTTPException(404, f"series {series_id} has no forecast yet")
        meta, pts = got
        out = {"series": series_json(s), "model": meta["model"], "made_at": iso(meta["made_ns"]),
               "backtest_mae": meta["backtest_mae"], "backtest_mase": meta["backtest_mase"],
               "runner_up": meta["runner_up"], "runner_up_mase": meta["runner_up_mase"],
               "fallback_reason": meta["fallback_reason"], "step_s": meta["step_ns"] // 1_000_000_000,
               "ts": [iso(int(t)) for t in pts["ts"].to_numpy(np.int64)]}
        for c in ("mean", "lo80", "hi80", "lo95", "hi95"):
            out[c] = [None if np.isnan(v) else round(float(v), 6) for v in pts[c]]
        return out

    @app.get("/deadletters", dependencies=guarded)
    def deadletters(reason: str | None = None, limit: int = Query(100, ge=1, le=10000)) -> dict[str, Any]:
        rows = store.deadletters(reason=reason, limit=limit)
        for r in rows:
            raw: bytes = r.pop("payload")
            r["received"] = iso(r["received_ns"])
            r["payload_hex"] = raw.hex()
            r["payload_text"] = raw.decode("utf-8", "replace")
        return {"counts": store.deadletter_counts(), "items": rows}

    @app.get("/db/stats", dependencies=guarded)
    def db_stats() -> dict[str, Any]:
        """Points per tier, series, bytes on disk and bytes per point (`greennanny db stats`)."""
        return dict(store.stats())

    @app.post("/db/maintain", dependencies=guarded)
    def db_maintain() -> dict[str, Any]:
        """Run compaction and retention now (the node also runs them on store.retention.interval_min)."""
        return dict(store.maintain(time.time_ns()))

    @app.get("/db/export", dependencies=guarded)
    def db_export(
        fmt: str = Query(..., alias="format", description="parquet, csv or line-protocol"),
        series: list[str] = Query([], description="series id or site/zone/device/quantity (* for any part); repeat"),
        site: str | None = None, zone: str | None = None, device: str | None = None, quantity: str | None = None,
        start: str | None = Query(None, description="ISO 8601 with offset, now, or relative such as -7d"),
        end: str | None = Query(None, description="ISO 8601 with offset, now, or relative (exclusive)"),
        every: str | None = Query(None, description="bucket width such as 1h; one row per bucket"),
        agg: str | None = Query(None, description="min, mean, max, last or count (with every; default mean)"),
        include_missing: bool = Query(False, description="also missing and quarantined rows (csv, parquet)"),
        chunk_rows: int = Query(DEFAULT_CHUNK_ROWS, description="rows read per chunk (memory bound)"),
    ) -> StreamingResponse:
        """Points as Parquet, CSV or line protocol, streamed chunk by chunk (`greennanny db export`).

        Arguments are checked before the first byte (400 naming the argument); a failure while
        streaming cuts the response short, so a client sees an incomplete body, never a short file."""
        req = ExportRequest(fmt, tuple(series), site, zone, device, quantity, start, end, every, agg, include_missing,
                            chunk_rows)
        plan = plan_export(store, req, now_ns=node_now())
        return StreamingResponse(export_bytes(store, plan), media_type=MEDIA_TYPES[fmt], headers={
            "content-disposition": f'attachment; filename="greennanny-export{SUFFIXES[fmt]}"',
            "x-export-series": str(len(plan.series)), "x-export-chunks": str(len(plan.chunks))})

    @app.get("/outcomes", dependencies=guarded)
    def outcomes() -> dict[str, Any]:
        return {"outcomes": store.outcome_counts(), "detail": store.outcome_detail()}

    app.include_router(registry_router(cfg, store, node), dependencies=guarded)
    app.include_router(forecast_router(cfg, store, node), dependencies=guarded)
    app.include_router(model_router(store, node), dependencies=guarded)
    app.include_router(alert_router(cfg, store, node), dependencies=guarded)
    if cfg.influx_write.enabled:  # InfluxDB 1.x answers and its own auth rule: see influx_compat
        from greennanny.api.influx_compat import influx_router
        app.include_router(influx_router(cfg, store, node))

    @app.post("/ingest/batch", dependencies=guarded)
    async def ingest_batch(request: Request) -> dict[str, Any]:
        """A columnar batch as an Arrow IPC stream (what `greennanny import` sends)."""
        body = await request.body()
        try:
            table = pa.ipc.open_stream(body).read_all()
        except pa.ArrowInvalid as exc:
            raise HTTPException(400, f"body is not an Arrow IPC stream: {exc}") from None
        batch = batch_from_arrow(table)
        res = store.write(batch)
        return {"written": res.written, "replaced": res.replaced}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard(request: Request, token_q: str | None = Query(None, alias="token")) -> Response:
        if token_q and token and hmac.compare_digest(token_q, token):
            resp = HTMLResponse((WEB / "templates" / "dashboard.html").read_text())
            resp.set_cookie("gn_token", token_q, httponly=True, samesite="strict")
            return resp
        try:
            auth(request)
        except HTTPException:
            return HTMLResponse(SIGN_IN, status_code=401)
        return HTMLResponse((WEB / "templates" / "dashboard.html").read_text())

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        import plotly

        return FileResponse(Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
                            media_type="application/javascript")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        p = (WEB / "static" / name).resolve()
        if p.parent != (WEB / "static").resolve() or not p.is_file():
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(p)

    _ = JSONResponse
    return app
