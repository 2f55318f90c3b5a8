"""The InfluxDB 1.x compatible write path, served by uvicorn on a free loopback port over a real
DuckDB file, driven the way Telegraf's `influxdb` output drives a server: CREATE DATABASE through
a form POST to /query, then gzip line protocol to /write with HTTP Basic credentials.

Where Debian's `influxd` (1.x) is installed, the same bad batch also goes to a real InfluxDB and
both answers must have the same shape; where a `telegraf` binary is installed, the real Telegraf
writes to the node. Each of those skips, saying why, when its binary is absent.
"""

from __future__ import annotations

import gzip
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from greennanny.api.app import create_app
from greennanny.config import config_from_dict
from greennanny.model import SeriesKey
from greennanny.store.duckdb import DuckDBStore

pytestmark = pytest.mark.integration

USER, PASSWORD = "telegraf", "s3cret-pass"
TELEGRAF_HEADERS = {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip",
                    "User-Agent": "Telegraf/1.30.0"}
GOOD = (b"climate,zone=bay-1,device=probe-7 air_temperature=21.53,relative_humidity=63.25 1700000000123456789\n"
        b"co2,zone=bay-1,device=probe-7 value=612i 1700000000123456790\n")
BAD_LINE = b"climate,zone=bay-1,device=probe-7 air_temperature=warm 1700000000123456791"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    url: str
    store: DuckDBStore


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    """The real app (v1 credentials from a password file) on uvicorn, on its own thread."""
    (tmp_path / "influx_password").write_text(PASSWORD + "\n")
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path / "data"), "site": "farm"}, "api": {"token_file": ""},
                            "influx_write": {"username": USER, "password_file": "influx_password"}}, base_dir=tmp_path)
    cfg.data_dir.mkdir()
    store = DuckDBStore(cfg.store_path)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(cfg, store), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Node(f"http://127.0.0.1:{sock.getsockname()[1]}", store)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        store.close()


def telegraf_write(url: str, body: bytes, auth: tuple[str, str] = (USER, PASSWORD)) -> httpx.Response:
    return httpx.post(f"{url}/write", params={"db": "telegraf"}, content=gzip.compress(body),
                      headers=TELEGRAF_HEADERS, auth=auth, timeout=10)


def stored(store: DuckDBStore) -> dict[str, list[tuple[int, float]]]:
    out = {}
    for s in store.series():
        df = store.query(s.id, None, None)
        out[str(s.key)] = [(int(t), float(v)) for t, v in zip(df["ts"], df["value"], strict=True)]
    return out


def test_telegraf_like_write_stores_exact_points(node: Node) -> None:
    created = httpx.post(f"{node.url}/query", data={"q": 'CREATE DATABASE "telegraf"'}, auth=(USER, PASSWORD))
    assert (created.status_code, created.json()) == (200, {"results": [{"statement_id": 0}]})
    r = telegraf_write(node.url, GOOD)
    assert (r.status_code, r.content) == (204, b"")
    assert stored(node.store) == {
        "farm/bay-1/probe-7/air_temperature": [(1700000000123456789, 21.53)],
        "farm/bay-1/probe-7/co2": [(1700000000123456790, 612.0)],
        "farm/bay-1/probe-7/relative_humidity": [(1700000000123456789, 63.25)],
    }
    assert node.store.outcome_counts() == {"stored": 1}


def test_a_bad_line_is_a_partial_write_and_a_dead_letter(node: Node) -> None:
    r = telegraf_write(node.url, GOOD + BAD_LINE + b"\n")
    assert r.status_code == 400
    assert r.json() == {"error": f"partial write: unable to parse '{BAD_LINE.decode()}': at line 3:51: "
                                 f"field value has unrecognized type dropped=1"}
    assert r.headers["X-Influxdb-Error"] == r.json()["error"]
    assert stored(node.store)["farm/bay-1/probe-7/air_temperature"] == [(1700000000123456789, 21.53)]
    [dead] = node.store.deadletters()
    assert (dead["payload"], dead["reason"], dead["source"], dead["topic"]) == (
        BAD_LINE, "line_protocol", "http_write", "/write")
    assert dead["detail"] == "line 3: field value has unrecognized type (column 51)"
    assert node.store.outcome_counts() == {"stored": 1}


def test_only_bad_lines_or_unknown_fields_store_nothing(node: Node) -> None:
    r = telegraf_write(node.url, b"cpu value=\nmem,host=a used=\n")
    assert r.status_code == 400 and r.json()["error"].startswith("unable to parse 'cpu value=': at line 1:11:")
    assert "\nunable to parse 'mem,host=a used=': at line 2:" in r.json()["error"]
    r = telegraf_write(node.url, b"cpu,host=gw usage_idle=99.5 1700000000000000000\n")
    assert r.status_code == 400 and r.json()["error"].startswith("partial write: no field of line(s) 1 maps")
    assert r.json()["error"].endswith(" dropped=1")
    assert node.store.series() == [] and node.store.outcome_counts() == {"dead_letter": 2}
    assert sorted(d["reason"] for d in node.store.deadletters()) == ["line_protocol", "line_protocol",
                                                                     "no_known_quantity"]


def test_auth_ping_and_query(node: Node) -> None:
    assert telegraf_write(node.url, GOOD, auth=(USER, "wrong")).status_code == 401
    missing = httpx.post(f"{node.url}/write", content=GOOD)
    assert (missing.status_code, missing.json()) == (401, {"error": "authorization failed"})
    assert httpx.post(f"{node.url}/write", params={"u": USER, "p": PASSWORD}, content=GOOD).status_code == 204
    token = httpx.post(f"{node.url}/write", content=GOOD, headers={"Authorization": f"Token {USER}:{PASSWORD}"})
    assert token.status_code == 204
    for method in ("GET", "HEAD"):
        ping = httpx.request(method, f"{node.url}/ping")
        assert ping.status_code == 204 and ping.headers["X-Influxdb-Version"].startswith("1.")
    show = httpx.get(f"{node.url}/query", params={"q": "SHOW DATABASES", "u": USER, "p": PASSWORD})
    assert show.status_code == 400 and "only CREATE DATABASE" in show.json()["error"]
    assert httpx.get(f"{node.url}/query", params={"q": "CREATE DATABASE x"}).status_code == 401
    bad_gzip = httpx.post(f"{node.url}/write", content=b"not gzip", auth=(USER, PASSWORD),
                          headers={"Content-Encoding": "gzip"})
    assert bad_gzip.status_code == 400 and "gzip" in bad_gzip.json()["error"]


@pytest.fixture
def influxd(tmp_path: Path) -> Iterator[str]:
    """A real InfluxDB 1.x on free loopback ports (Debian's `influxdb` package), auth off."""
    binary = shutil.which("influxd")
    if binary is None:
        pytest.skip("influxd (Debian package influxdb) is not installed")
    http_port, rpc_port = free_port(), free_port()
    conf = tmp_path / "influxd.conf"
    conf.write_text(f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc_port}"\n'
                    f'[meta]\ndir = "{tmp_path}/meta"\n[data]\ndir = "{tmp_path}/data"\nwal-dir = "{tmp_path}/wal"\n'
                    f'[http]\nbind-address = "127.0.0.1:{http_port}"\nlog-enabled = false\n'
                    f'[monitor]\nstore-enabled = false\n')
    with open(tmp_path / "influxd.log", "wb") as log:
        proc = subprocess.Popen([binary, "-config", str(conf)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/ping", timeout=0.5).status_code == 204:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "influxd.log").read_text()[-2000:]
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_partial_write_answer_has_the_shape_of_a_real_influxdb(node: Node, influxd: str) -> None:
    httpx.post(f"{influxd}/query", data={"q": 'CREATE DATABASE "telegraf"'})
    theirs = telegraf_write(influxd, GOOD + BAD_LINE + b"\n")
    ours = telegraf_write(node.url, GOOD + BAD_LINE + b"\n")
    assert theirs.status_code == ours.status_code == 400
    for r in (theirs, ours):
        error = r.json()["error"]
        assert error.startswith(f"partial write: unable to parse '{BAD_LINE.decode()}': ")
        assert error.rsplit(" ", 1)[1].startswith("dropped=")  # 1.x always says dropped=0 here; we count
        assert r.headers["X-Influxdb-Error"] == error and r.headers["Content-Type"] == "application/json"


def test_real_telegraf_writes_to_the_node(node: Node, tmp_path: Path) -> None:
    binary = shutil.which("telegraf")
    if binary is None:
        pytest.skip("telegraf is not installed (Debian has no telegraf package)")
    metrics = tmp_path / "metrics.lp"
    metrics.write_bytes(GOOD)
    conf = tmp_path / "telegraf.conf"
    conf.write_text(
        '[agent]\nomit_hostname = true\nflush_interval = "1s"\n'
        f'[[inputs.file]]\nfiles = [{json.dumps(str(metrics))}]\ndata_format = "influx"\n'
        f'[[outputs.influxdb]]\nurls = ["{node.url}"]\ndatabase = "telegraf"\ncontent_encoding = "gzip"\n'
        f'username = "{USER}"\npassword = "{PASSWORD}"\n')
    run = subprocess.run([binary, "--config", str(conf), "--once"], check=False, capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert stored(node.store)[str(SeriesKey("farm", "bay-1", "probe-7", "co2"))] == [(1700000000123456790, 612.0)]
