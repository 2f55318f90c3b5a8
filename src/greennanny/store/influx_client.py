"""The InfluxDB 1.x HTTP API (`/write`, `/query`, `/ping`) over httpx, with our errors.

This module is the one place that touches httpx for the InfluxDB store (house rule 4): transport
errors and server answers become `StoreUnavailable` (try again later) or `StoreError` (fix the
config), and a partial write comes back as a `WriteAnswer` for the store to sort out.

Retries: a connection error, a timeout, any 5xx and a 429 (1.x's "too many writes") are retried
with exponential backoff and jitter, `max_retries` times, then raised as `StoreUnavailable`. Any
other 4xx is never retried: the same body would be refused again. A 5xx whose message says
"points beyond retention policy dropped=N" (InfluxDB 2 answers that with 500, BR-14) is not a
server fault but a partial write, so it is returned at once instead of retried.

Credentials (Basic user/password, or a v2-style `Token`) go in the Authorization header only:
never in a URL, a log line or an error message.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from greennanny.errors import ConfigError, StoreError, StoreUnavailable

log = logging.getLogger("greennanny.store.influxdb")

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_BEYOND_RETENTION = "points beyond retention policy"


@dataclass(frozen=True, slots=True)
class WriteAnswer:
    """What the server said to one write request that it did not fail outright."""

    status: int
    message: str = ""  # the server's error text ("" for 204)

    @property
    def ok(self) -> bool:
        return self.status == 204 or (200 <= self.status < 300 and not self.message)

    @property
    def partial(self) -> bool:
        return "partial write" in self.message or _BEYOND_RETENTION in self.message

    @property
    def beyond_retention(self) -> bool:
        return _BEYOND_RETENTION in self.message

    @property
    def dropped(self) -> int | None:
        found = re.findall(r"dropped=(\d+)", self.message)
        return int(found[-1]) if found else None


def ident(name: str) -> str:
    """An InfluxQL identifier, double-quoted."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """An InfluxQL string literal, single-quoted."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def error_text(resp: httpx.Response) -> str:
    """The server's error message: 1.x `{"error": ...}`, 2.x `{"message": ...}`, else the body."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return resp.headers.get("X-Influxdb-Error") or resp.text.strip()[:500]


class InfluxClient:
    """One InfluxDB server and database; thread-safe (httpx's pool)."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str = "",
        username: str = "",
        password: str = "",
        token: str = "",
        timeout_s: float = 10.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self.requests = 0  # requests sent, retries included (self-metrics and tests)
        headers = {"User-Agent": "greennanny"}
        auth: httpx.Auth | None = None
        if token:
            headers["Authorization"] = f"Token {token}"
        elif username or password:
            auth = httpx.BasicAuth(username, password)
        try:
            self._http = httpx.Client(base_url=self.url, headers=headers, auth=auth, timeout=timeout_s,
                                      transport=transport)
        except (httpx.InvalidURL, ValueError) as exc:
            raise ConfigError(f"store.influxdb.url: {url!r} is not a usable URL: {exc}") from exc

    def __repr__(self) -> str:  # no credentials
        return f"InfluxClient({self.url!r}, database={self.database!r})"

    def close(self) -> None:
        self._http.close()

    # -- requests ------------------------------------------------------------------------------
    def _send(self, what: str, build: Callable[[], httpx.Request], *, retry_beyond_retention: bool = False) -> httpx.Response:
        """Send with retries; returns any answer that is not to be retried."""
        attempt = 0
        while True:
            self.requests += 1
            try:
                resp = self._http.send(build())
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            except httpx.HTTPError as exc:  # not a network fault: retrying would not help
                raise StoreError(f"influxdb at {self.url}: {what} failed: {exc}") from exc
            else:
                if resp.status_code not in _RETRY_STATUS:
                    return resp
                text = error_text(resp)
                if _BEYOND_RETENTION in text and not retry_beyond_retention:
                    return resp  # BR-14: a partial write, not a server fault
                problem = f"HTTP {resp.status_code}: {text}"
            if attempt >= self.max_retries:
                raise StoreUnavailable(
                    f"influxdb at {self.url}: {what} failed after {attempt + 1} attempts; last: {problem}")
            delay = min(self.backoff_max_s, self.backoff_s * 2**attempt) * (0.5 + random.random() / 2)
            log.warning("influxdb %s failed (%s); retry %d/%d in %.2f s",
                        what, problem, attempt + 1, self.max_retries, delay)
            self._sleep(delay)
            attempt += 1

    def ping(self) -> None:
        resp = self._send("ping", lambda: self._http.build_request("GET", "/ping"))
        if resp.status_code != 204:
            raise StoreUnavailable(f"influxdb at {self.url}: /ping answered {resp.status_code}")

    def write(self, lines: list[str]) -> WriteAnswer:
        """POST the lines (gzip, precision=ns); a 2xx, a partial write or a 4xx as a WriteAnswer.

        401/403/404 raise StoreError (credentials or database: nothing to retry or set aside).
        """
        body = gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), compresslevel=6)
        params = {"db": self.database, "precision": "ns"}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"}
        resp = self._send(
            f"write of {len(lines)} lines",
            lambda: self._http.build_request("POST", "/write", params=params, content=body, headers=headers),
        )
        if resp.status_code in (401, 403):
            raise StoreError(f"influxdb at {self.url} refused the credentials for writes "
                             f"({resp.status_code}: {error_text(resp)}); check store.influxdb")
        if resp.status_code == 404:
            raise StoreError(f"influxdb at {self.url}: {error_text(resp)} (create it, or set "
                             "store.influxdb.create_database; on 2.x map a DBRP)")
        return WriteAnswer(resp.status_code, "" if resp.status_code == 204 else error_text(resp))

    def query(self, q: str, *, chunk_size: int = 10_000) -> list[list[dict[str, Any]]]:
        """Run InfluxQL statement(s) (`;`-separated) against the database, timestamps as ns.

        Returns one list of series ({name, tags, columns, values}) per statement; the answer is
        read chunked and merged, so a server's `max-row-limit` never truncates it. A statement
        error raises StoreError naming the statement.
        """
        form = {"q": q, "db": self.database, "epoch": "ns", "chunked": "true", "chunk_size": str(chunk_size)}
        if self.retention_policy:
            form["rp"] = self.retention_policy
        resp = self._send("query", lambda: self._http.build_request("POST", "/query", data=form))
        if resp.status_code in (401, 403):
            raise StoreError(f"influxdb at {self.url} refused the credentials for queries "
                             f"({resp.status_code}: {error_text(resp)}); check store.influxdb")
        if resp.status_code != 200:
            raise StoreError(f"influxdb at {self.url}: query {q[:200]!r} answered {resp.status_code}: "
                             f"{error_text(resp)}")
        return _merge_chunks(resp.text, q)


def _merge_chunks(text: str, q: str) -> list[list[dict[str, Any]]]:
    """Join the chunks of a chunked /query answer into whole series per statement."""
    statements: dict[int, dict[tuple[str, str], dict[str, Any]]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            chunk = json.loads(line)
        except ValueError as exc:
            raise StoreError(f"influxdb answered a query with text that is not JSON: {line[:200]!r}") from exc
        if "error" in chunk:
            raise StoreError(f"influxdb: query {q[:200]!r} failed: {chunk['error']}")
        for result in chunk.get("results", []):
            if "error" in result:
                raise StoreError(f"influxdb: query {q[:200]!r} failed: {result['error']}")
            merged = statements.setdefault(int(result.get("statement_id", 0)), {})
            for s in result.get("series", []):
                ident = (s.get("name", ""), json.dumps(s.get("tags") or {}, sort_keys=True))
                if ident in merged:
                    merged[ident]["values"].extend(s.get("values") or [])
                else:
                    merged[ident] = {"name": s.get("name", ""), "tags": s.get("tags") or {},
                                     "columns": s.get("columns", []), "values": list(s.get("values") or [])}
    n = max(statements, default=-1) + 1
    return [list(statements.get(i, {}).values()) for i in range(n)]
