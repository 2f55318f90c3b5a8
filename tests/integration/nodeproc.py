"""Helpers that run a real node (`greennanny run`) as a separate process, for crash tests, and poll."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def wait(cond: Callable[[], object], timeout: float = 20.0) -> bool:
    """Poll `cond` every 50 ms until it is true (True) or `timeout` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def write_config(path: Path, *, broker_url: str, api_port: int, data_dir: Path, extra: str = "") -> Path:
    path.write_text(
        f'[node]\ndata_dir = "{data_dir}"\n[api]\nport = {api_port}\ntoken_file = ""\n'
        f'[mqtt]\nurl = "{broker_url}"\nclient_id = "gn-test-node"\n'
        f'[pipeline]\nmode = "backfill"\nbatch_max_wait_ms = 100\n[forecast]\nenabled = false\n{extra}'
    )
    return path


class NodeProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, api_url: str, timeout: float = 30) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "greennanny.cli.main", "run", "-c", str(self.config)],
                                         stdout=out, stderr=subprocess.STDOUT, env=env)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(api_url + "/health", timeout=0.5).json().get("mqtt_connected"):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"node did not come up: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
