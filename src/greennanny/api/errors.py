"""One JSON error shape for every route: {"error": {"code", "message"}}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from greennanny.errors import (
    ArtifactRefused,
    ConfigError,
    ExportFailed,
    GreennannyError,
    InputError,
    NotSupported,
    StoreUnavailable,
    UnknownVersion,
)


def error_body(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_body(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"])
            parts.append(f"{loc}: {e['msg']} (got {e.get('input')!r})")
        return error_body(422, "invalid_request", "; ".join(parts))

    @app.exception_handler(GreennannyError)
    async def _ours(_: Request, exc: GreennannyError) -> JSONResponse:
        if isinstance(exc, (InputError, ConfigError)):
            return error_body(400, "invalid_input", str(exc))
        if isinstance(exc, NotSupported):
            return error_body(501, "not_supported", str(exc))
        if isinstance(exc, UnknownVersion):
            return error_body(404, "unknown_version", str(exc))
        if isinstance(exc, ExportFailed):
            return error_body(502, "export_failed", str(exc))
        if isinstance(exc, ArtifactRefused):
            return error_body(409, "artifact_refused", str(exc))
        if isinstance(exc, StoreUnavailable):
            return error_body(503, "store_unavailable", str(exc))
        return error_body(500, "internal_error", str(exc))
