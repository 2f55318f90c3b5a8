"""Fixtures shared by every test tier: a private broker, a private InfluxDB and the shared data folder."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from greennanny.runtime.broker import Mosquitto, MosquittoConfig, free_port
from tests.shared_paths import SHARED_DIR


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh broker on a free loopback port with its state in this test's tmp_path.

    Function scope, so no test sees another's retained messages or persistent sessions.
    """
    broker = Mosquitto(MosquittoConfig(data_dir=tmp_path / "mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def shared_dir() -> Path:
    """The shared folder; skips the test where it is absent (e.g. a bare clone of this repo)."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared folder not found at {SHARED_DIR}")
    return SHARED_DIR


@dataclass
class InfluxServer:
    """A private `influxd` (InfluxDB 1.x): its HTTP URL, version and directory."""

    url: str
    version: str
    data_dir: Path
    process: subprocess.Popen[bytes]


def _start_influxd(data_dir: Path, timeout: float = 30) -> InfluxServer:
    """Write an influxd.conf with every port on loopback and every directory in `data_dir`, start
    Debian's `influxd` and return once it answers /ping (which also gives its version)."""
    binary = shutil.which("influxd") or ("/usr/bin/influxd" if Path("/usr/bin/influxd").exists() else None)
    if binary is None:
        pytest.skip("influxd not found (Debian/Ubuntu: apt-get install influxdb)")
    http_port, rpc_port = free_port(), free_port()
    conf = data_dir / "influxd.conf"
    conf.write_text(
        "reporting-disabled = true\n"
        f'bind-address = "127.0.0.1:{rpc_port}"\n'
        f'[meta]\ndir = "{data_dir / "meta"}"\n'
        f'[data]\ndir = "{data_dir / "data"}"\nwal-dir = "{data_dir / "wal"}"\nquery-log-enabled = false\n'
        f'[http]\nbind-address = "127.0.0.1:{http_port}"\nlog-enabled = false\n'
        "[monitor]\nstore-enabled = false\n"
        "[continuous_queries]\nenabled = false\n"
    )
    log_path = data_dir / "influxd.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen([binary, "-config", str(conf)], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"influxd exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
        try:
            resp = httpx.get(f"{url}/ping", timeout=0.5)
            if resp.status_code == 204:
                return InfluxServer(url, resp.headers.get("X-Influxdb-Version", "?"), data_dir, proc)
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=10)
            raise RuntimeError(f"influxd did not answer /ping on {url} within {timeout:g} s:\n"
                               f"{log_path.read_text()[-2000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """One real InfluxDB 1.x for the session, on free loopback ports (HTTP, and the RPC bind
    address that would otherwise take 8088), with meta, data and WAL in a temporary directory;
    auth off, reporting disabled.

    Tests share the server and isolate by database (`influx_database`). Skips where Debian's
    `influxdb` package is not installed.
    """
    server = _start_influxd(tmp_path_factory.mktemp("influxd"))
    try:
        yield server
    finally:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)


_database_numbers = itertools.count(1)


@pytest.fixture
def influx_database(influxd: InfluxServer) -> Iterator[str]:
    """A fresh database name on the session's influxd (created by the store), dropped afterwards."""
    name = f"test_{next(_database_numbers)}"
    yield name
    httpx.post(f"{influxd.url}/query", data={"q": f'DROP DATABASE "{name}"'}, timeout=30)
