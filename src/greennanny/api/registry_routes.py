"""Device registry and dead-letter routes: onboard devices, list unknown ones, replay dead letters.

Onboarding writes the registry (the store owner does it), clears the pipeline's registry cache,
and `POST /deadletters/replay` then turns the kept messages of those devices into points.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from greennanny.config import Config
from greennanny.ingest.device_check import device_problem
from greennanny.runtime.clock import SystemClock
from greennanny.store.base import DeviceRecord
from greennanny.store.duckdb import DuckDBStore


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dev_eui: str = Field(description="16 hex digits")
    codec: str = ""
    model: str = ""
    field_map: str = ""
    site: str = ""
    zone: str
    name: str = ""
    interval_s: int = Field(0, ge=0)

    @field_validator("dev_eui")
    @classmethod
    def _eui(cls, v: str) -> str:
        e = v.strip().lower()
        if len(e) != 16 or any(c not in "0123456789abcdef" for c in e):
            raise ValueError(f"{v!r} is not a 16-hex-digit devEUI")
        return e


def _check(d: DeviceIn) -> None:
    problem = device_problem(d.codec, d.model, d.field_map)
    if problem:
        raise HTTPException(400, f"device {d.dev_eui}: {problem}")


def registry_router(cfg: Config, store: DuckDBStore, node: Any = None) -> APIRouter:
    r = APIRouter()
    pipelines: dict[str, Any] = {}

    def pipeline() -> Any:
        if node is not None:
            return node.pipeline
        if "p" not in pipelines:
            from greennanny.runtime.node import build_pipeline

            pipelines["p"] = build_pipeline(cfg, store, SystemClock())
        return pipelines["p"]

    @r.get("/devices")
    def devices() -> list[dict[str, Any]]:
        return [asdict(d) for d in store.devices()]

    @r.get("/devices/unknown")
    def unknown(samples: int = 3) -> list[dict[str, Any]]:
        from greennanny.api.app import iso

        out = []
        for u in store.unknown_devices(samples):
            out.append({"device": u["device"], "messages": u["messages"], "first": iso(u["first_ns"]),
                        "last": iso(u["last_ns"]), "topics": u["topics"],
                        "samples": [p.decode("utf-8", "replace") for p in u["samples"]]})
        return out

    @r.get("/devices/{dev_eui}")
    def device(dev_eui: str) -> dict[str, Any]:
        d = store.device(dev_eui.lower())
        if d is None:
            raise HTTPException(404, f"device {dev_eui} is not in the registry")
        series = [s for s in store.series() if s.key.device == d.dev_eui or s.key.device.startswith(d.dev_eui + "-")]
        events = [e for e in store.device_events() if e[1] == d.dev_eui][-20:]
        from greennanny.api.app import iso, series_json

        return {**asdict(d), "series": [series_json(s) for s in series],
                "events": [{"ts": iso(t), "kind": k, "detail": det} for t, _, k, det in events]}

    @r.post("/devices")
    def onboard(items: list[DeviceIn]) -> dict[str, Any]:
        for d in items:
            _check(d)
        changed = 0
        for d in items:
            rec = DeviceRecord(d.dev_eui, d.codec, d.model, d.field_map, d.site or cfg.node.site, d.zone, d.name,
                               "api", d.interval_s)
            store.upsert_device(rec)
            changed += 1
        pipeline().refresh_devices()
        return {"onboarded": changed, "at": time.time_ns()}

    @r.post("/deadletters/replay")
    def replay(reason: str | None = None) -> dict[str, int]:
        return store.replay_deadletters(pipeline().process, reason=reason)

    return r
