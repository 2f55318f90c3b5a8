"""A scripted stand-in for an InfluxDB server, for answers a real influxd 1.6 never gives.

Real influxd (the `influxd` fixture) is used for everything it can do. This small HTTP server on a
free loopback port answers what only other versions or bad days produce: InfluxDB 2's HTTP 500
"partial write: points beyond retention policy" (BR-14), a run of 5xx, a 413, a refused login. It
records every /write (query string, headers, the gunzipped lines) so tests can see what was sent.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# (status, body) for the lines of one /write request
Answer = Callable[[list[str]], tuple[int, bytes]]


@dataclass
class WriteRequest:
    params: dict[str, str]
    headers: dict[str, str]
    lines: list[str]


@dataclass
class FakeInflux:
    url: str
    writes: list[WriteRequest] = field(default_factory=list)


def always_204(_lines: list[str]) -> tuple[int, bytes]:
    return 204, b""


@contextmanager
def fake_influx(answer: Answer = always_204) -> Iterator[FakeInflux]:
    """Serve /ping, /query (empty results) and /write (answered by `answer`) until the block ends."""
    state: FakeInflux

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:  # quiet
            pass

        def _reply(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("X-Influxdb-Version", "fake")
            if body:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.startswith("/ping"):
                self._reply(204)
            else:
                self._reply(404, b'{"error":"not found"}')

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            parts = urlsplit(self.path)
            if parts.path == "/query":
                n = parse_qs(raw.decode()).get("q", [""])[0].count(";") + 1
                body = {"results": [{"statement_id": i} for i in range(n)]}
                self._reply(200, json.dumps(body).encode())
                return
            if parts.path != "/write":
                self._reply(404, b'{"error":"not found"}')
                return
            text = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
            lines = [ln for ln in text.decode().split("\n") if ln]
            state.writes.append(WriteRequest({k: v[0] for k, v in parse_qs(parts.query).items()},
                                             dict(self.headers.items()), lines))
            status, body = answer(lines)
            self._reply(status, body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = FakeInflux(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
