"""How a CLI command reaches the store: through the running node's API, or the file itself.

One owner of the store: when a node answers at the configured URL, every command goes through
its API (with the token). Only when none answers does the CLI open the DuckDB file, and then it
serves the very same API in-process (an in-process ASGI transport), so both ways print identical JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from greennanny.api.batch_codec import batch_to_ipc
from greennanny.config import Config
from greennanny.errors import GreennannyError, NodeNotRunning, StoreUnavailable
from greennanny.model import Batch


class ApiError(GreennannyError):
    """An error answer of the API; through the node's socket it names the HTTP status, on the
    file (the same API served in-process) only the error code, since no HTTP was involved."""

    def __init__(self, status: int, code: str, message: str, via: str = "api") -> None:
        super().__init__(f"{message} (HTTP {status}, {code})" if via == "api" else f"{message} ({code})")
        self.status = status
        self.code = code


class Backend:
    def __init__(self, client: httpx.Client, via: str, store: Any = None) -> None:
        self.client = client
        self.via = via  # "api" or "file"
        self.store = store  # the opened file when via == "file" (a long export streams from it directly)

    def get(self, path: str, **params: Any) -> Any:
        r = self.client.get(path, params={k: v for k, v in params.items() if v is not None})
        return self.json_of(r)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self.json_of(self.client.post(path, json=body, params={k: v for k, v in params.items() if v is not None}))

    def delete(self, path: str, **params: Any) -> Any:
        return self.json_of(self.client.delete(path, params={k: v for k, v in params.items() if v is not None}))

    def write_batch(self, batch: Batch) -> dict[str, Any]:
        r = self.client.post("/ingest/batch", content=batch_to_ipc(batch),
                             headers={"content-type": "application/vnd.apache.arrow.stream"})
        return self.json_of(r)

    def json_of(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise ApiError(r.status_code, err["code"], err["message"], self.via)
            except (ValueError, KeyError, TypeError):
                raise ApiError(r.status_code, "http_error", r.text[:200], self.via) from None
        return r.json()


class InProcessTransport(httpx.BaseTransport):
    """Serve requests by calling the ASGI app in this process (no socket), synchronously.

    httpx ships only an async ASGI transport; each request here runs it to completion on a
    short-lived event loop, which is plenty for one CLI command.
    """

    def __init__(self, app: Any) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            body = await request.aread()
            req = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            resp = await self._asgi.handle_async_request(req)
            content = await resp.aread()
            return httpx.Response(resp.status_code, headers=resp.headers, content=content)

        return asyncio.run(call())


def node_running(cfg: Config, timeout: float = 1.0) -> bool:
    try:
        r = httpx.get(cfg.api_url + "/health", timeout=timeout)
        return r.status_code == 200 and r.json().get("status") == "ok"
    except (httpx.HTTPError, ValueError):
        return False


@contextmanager
def open_backend(cfg: Config, *, prefer: str = "auto") -> Iterator[Backend]:
    """`prefer`: auto (API when a node runs), api (fail without a node), file (never the API)."""
    if prefer in ("auto", "api") and node_running(cfg):
        token = cfg.api_token()
        headers = {"authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=cfg.api_url, headers=headers, timeout=120) as c:
            yield Backend(c, "api")
        return
    if prefer == "api":
        raise NodeNotRunning(f"no greennanny node answers at {cfg.api_url}")
    from greennanny.api.app import create_app
    from greennanny.store.duckdb import DuckDBStore, retention_from

    if not cfg.store_path.exists():  # a new user's first trap: the CLI's default config is not the demo's
        from greennanny.cli.common import err

        err.print(f"note: no store at {cfg.store_path} yet, so a new empty one is used (is -c your node's "
                      "config? the demo's is demo-data/greennanny.toml)", highlight=False)
    try:
        store = DuckDBStore(cfg.store_path, retention=retention_from(cfg.store.retention))
    except StoreUnavailable as exc:
        raise StoreUnavailable(f"{exc}\nIs a node running with this data directory but its API at "
                               f"{cfg.api_url} unreachable?") from None
    local = cfg.model_copy(update={"api": cfg.api.model_copy(update={"host": "127.0.0.1"})})
    try:
        with httpx.Client(transport=InProcessTransport(create_app(local, store)), base_url="http://local",
                          timeout=120) as c:
            yield Backend(c, "file", store)
    finally:
        store.close()
