"""InfluxDB 1.x compatible `/write`, `/ping` and `/query`, so Telegraf's `influxdb` output (and any
1.x client) can write to the node's API port.

These routes answer the way InfluxDB 1.x does, not with the API's own error envelope, because
clients parse the answers: 204 when every line was stored; 400 `{"error": "partial write: unable to
parse '<line>': <problem> dropped=N"}` when some lines were bad and the good ones were stored (the
1.x wording, with `dropped` counting the bad lines where 1.x always says 0), 400 `unable to parse
...` when none was good; a line stamped before 2000-01-01 (most often a ms/s epoch sent without
`precision`, which 1.x stores in 1970: field fault BR-15) is kept as a `quarantined` dead letter
and named the same way, never stored; 401 `{"error": "authorization failed"}`; 503 when the store is busy, so
the client retries. Telegraf drops a batch on a 4xx and retries on a 5xx, which is what we want.

A request's points, one dead letter per bad line and one ledger row commit in one transaction.
Lines map to series as on MQTT (ingest/line_protocol_topic.py). Auth: with v1 credentials
configured ([influx_write] username/password_file) a request must carry them (u/p query
parameters, HTTP Basic, or `Authorization: Token user:pass`); otherwise the API's own rule
applies (no token on loopback, `Bearer <api token>` elsewhere), and the API token is accepted in
both cases. `/ping` is open like `/health`: it tells only that the node is there and its version.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
import zlib
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from greennanny import __version__
from greennanny.api.app import LOOPBACK
from greennanny.config import Config
from greennanny.decoders.line_protocol import parse, precision_ns
from greennanny.errors import ConfigError, StoreError, StoreUnavailable
from greennanny.ingest.line_protocol_topic import keep_aside_unset_clock, no_point_error, points_from_lines
from greennanny.model import BatchBuilder, Outcome
from greennanny.store.base import DeadLetter, IngestCommit, LedgerEntry
from greennanny.store.duckdb import DuckDBStore

VERSION = f"1.8.10-greennanny.{__version__}"  # a 1.x version, so clients that read it pick the 1.x API
HEADERS = {"X-Influxdb-Version": VERSION, "X-Influxdb-Build": "OSS"}
MAX_BODY = 25 * 1024 * 1024  # InfluxDB 1.x's default max-body-size, after decompression
MAX_NAMED_LINES = 100  # bad lines quoted in one answer; every one is kept as a dead letter
CREATE_DATABASE = re.compile(r'\s*CREATE\s+DATABASE\s+(?:"(?:[^"\\]|\\.)+"|[A-Za-z_][\w]*)(?:\s+WITH\s+.*)?;?\s*',
                             re.IGNORECASE | re.DOTALL)


def influx_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error as InfluxDB 1.x sends it: `{"error": ...}` plus the X-Influxdb-Error header."""
    first = message.splitlines()[0] if message else ""
    extra = {**HEADERS, "X-Influxdb-Error": first.encode("latin-1", "replace").decode("latin-1")[:1000]}
    return JSONResponse({"error": message}, status_code=status, headers={**extra, **(headers or {})})


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _v1_credentials(request: Request) -> tuple[str, str] | None:
    """(user, password) as a 1.x client sends them: u/p parameters, Basic auth or `Token user:pass`."""
    q = request.query_params
    if "u" in q or "p" in q:
        return q.get("u", ""), q.get("p", "")
    scheme, _, rest = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, sep, password = base64.b64decode(rest.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return (user, password) if sep else None
    if scheme.lower() == "token":
        user, sep, password = rest.strip().partition(":")
        return (user, password) if sep else None
    return None


def _body(raw: bytes, encoding: str) -> bytes:
    """The request body, gunzipped when sent with `Content-Encoding: gzip`; ValueError if unusable."""
    if len(raw) > MAX_BODY:
        raise OverflowError
    if encoding.strip().lower() in ("", "identity"):
        return raw
    if encoding.strip().lower() != "gzip":
        raise ValueError(f"unsupported Content-Encoding {encoding!r} (send gzip or nothing)")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, MAX_BODY + 1)
    except zlib.error as exc:
        raise ValueError(f"body is not valid gzip: {exc}") from None
    if len(out) > MAX_BODY:
        raise OverflowError
    if not d.eof:
        raise ValueError("gzip body is truncated")
    return out


def influx_router(cfg: Config, store: DuckDBStore, node: Any = None) -> APIRouter:
    """The 1.x routes for `create_app`, bound to this node's store, site and credentials."""
    try:
        creds = cfg.influx_write.credentials(cfg)
    except OSError as exc:
        raise ConfigError(f"influx_write.password_file: cannot read {cfg.influx_write.password_file!r}: {exc}") from exc
    token = cfg.api_token()
    need_token = cfg.api.host not in LOOPBACK
    site, zone = cfg.node.site, cfg.influx_write.default_zone
    router = APIRouter(include_in_schema=False)

    def denied(request: Request) -> JSONResponse | None:
        got = request.headers.get("authorization", "")
        bearer = got[7:].strip() if got.lower().startswith("bearer ") else request.cookies.get("gn_token", "")
        if token and bearer and _same(bearer, token):
            return None
        if creds is not None:
            given = _v1_credentials(request)
            if given is not None and _same(given[0], creds[0]) and _same(given[1], creds[1]):
                return None
            return influx_error(401, "authorization failed", {"WWW-Authenticate": 'Basic realm="InfluxDB"'})
        if need_token:
            return influx_error(401, "authorization failed: missing or wrong API token (Authorization: Bearer <token>)")
        return None

    def now_ns() -> int:
        clock = getattr(node, "clock", None)
        return int(clock.now_ns()) if clock is not None else time.time_ns()

    def write(body: bytes, precision: str) -> Response:
        """Parse, map and commit one request; runs on a worker thread (CPU and the store's lock)."""
        received = now_ns()
        result, aside = keep_aside_unset_clock(parse(body, precision=precision, default_time_ns=received), body)
        points, unmapped, _ = points_from_lines(result, site, zone)
        dead = [DeadLetter(received, "/write", e.raw, "line_protocol", f"line {e.line}: {e.message} (column {e.column})",
                           "http_write") for e in result.errors]
        dead += [DeadLetter(received, "/write", raw, reason, detail, "http_write") for raw, reason, detail in aside]
        problem = no_point_error(result, unmapped) if not points and result.points else None
        if problem is not None:
            dead.append(DeadLetter(received, "/write", body, problem.reason, str(problem), "http_write"))
        builder = BatchBuilder()
        for p in points:
            builder.add(p.key, p.ts_ns, p.value, int(p.quality), p.reason)
        outcome = (Outcome.STORED if points else Outcome.QUARANTINED if aside and len(dead) == len(aside)
                   else Outcome.DEAD_LETTER if dead else Outcome.STORED_EMPTY)
        ledger = LedgerEntry(received, "/write", outcome.value, "line_protocol", "", len(points))
        try:
            store.commit_ingest(IngestCommit(builder.build(), dead, [ledger]))
        except StoreUnavailable as exc:
            return influx_error(503, f"store unavailable, retry later: {exc}")
        except StoreError as exc:
            return influx_error(500, f"store error: {exc}")
        if not dead:
            return Response(status_code=204, headers=HEADERS)
        bad = [f"unable to parse '{e.raw.decode('utf-8', 'replace')}': {e}" for e in result.errors]
        bad += [f"quarantined '{raw.decode('utf-8', 'replace')}': {detail}" for raw, _, detail in aside]
        named = "\n".join(bad[:MAX_NAMED_LINES])
        if len(bad) > MAX_NAMED_LINES:
            named += f"\n... and {len(bad) - MAX_NAMED_LINES} more bad lines (see /deadletters)"
        if problem is not None:
            dropped = len(result.points) + len(bad)
            return influx_error(400, f"partial write: {problem} dropped={dropped}")
        if not points:
            return influx_error(400, named)  # 1.x: nothing parsed, no partial-write prefix
        return influx_error(400, f"partial write: {named} dropped={len(bad)}")

    @router.post("/write")
    async def write_route(request: Request) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        precision = request.query_params.get("precision", "") or "ns"
        try:
            precision_ns(precision)
            body = _body(await request.body(), request.headers.get("content-encoding", ""))
        except OverflowError:
            return influx_error(413, "http: request body too large")
        except ValueError as exc:
            return influx_error(400, str(exc))
        return await run_in_threadpool(write, body, precision)

    @router.api_route("/ping", methods=["GET", "HEAD"])
    def ping(verbose: str = "") -> Response:
        if verbose not in ("", "0", "false"):
            return JSONResponse({"version": VERSION}, headers=HEADERS)
        return Response(status_code=204, headers=HEADERS)

    @router.api_route("/query", methods=["GET", "POST"])
    async def query(request: Request) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        q = request.query_params.get("q")
        if q is None and "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
            q = next(iter(parse_qs((await request.body()).decode("utf-8", "replace")).get("q", [])), None)
        if q is not None and CREATE_DATABASE.fullmatch(q):
            return JSONResponse({"results": [{"statement_id": 0}]}, headers=HEADERS)
        return influx_error(400, f"greennanny answers only CREATE DATABASE on /query (got {q!r}); points go "
                                 f"to /write and are read through the greennanny API (/series)")

    return router
