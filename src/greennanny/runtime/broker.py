"""A private Eclipse Mosquitto broker for the demo and the integration tests.

The demo and the tests need a real broker whose durability settings we control (persistence on,
large offline queues), on a free loopback port, with its state in a directory we own, so they
never depend on, or disturb, a system broker on 1883. This module writes a `mosquitto.conf`,
runs the stock `mosquitto` binary and declares it started only once it answers an MQTT CONNECT.

Running as root: Mosquitto 2 started as root drops privileges to the user `mosquitto` unless the
config says `user root`. That user cannot write (or even reach: pytest's temporary root is mode
0700) a data directory that we created, so the log cannot be opened and persistence cannot be
saved. When our effective uid is 0 the config therefore says `user root` (Mosquitto only warns
about it); as any other user Mosquitto never switches users, so it runs as us and can write the
data directory we made. Either way the broker runs as a user that can write its data directory.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Self

import paho.mqtt.client as mqtt

from greennanny.errors import BrokerError, ConfigError

LOG_NAME = "mosquitto.log"
STDERR_NAME = "mosquitto.stderr.log"
CONF_NAME = "mosquitto.conf"
# Mosquitto logs this once every listener is bound; seeing it after our start proves that the
# broker answering on the port is ours and not whatever held the port before us.
_RUNNING_MARK = " running"
_FALLBACK_PATHS = (
    "/usr/sbin/mosquitto",
    "/usr/local/sbin/mosquitto",
    "/opt/homebrew/sbin/mosquitto",
)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that was free a moment ago.

    The kernel picks it (bind to port 0), which avoids guessing; another process can still take
    it before the broker binds, and `Mosquitto.start` then fails with the log saying so.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class MosquittoConfig:
    """What a private broker needs; the bounds keep store-and-forward durable.

    A gateway that is offline for hours queues tens of thousands of QoS 1 readings for each
    persistent session, so the queue limits may not shrink below what a night offline produces,
    and a short autosave interval bounds what a crash loses.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0  # 0: Mosquitto picks a free port when constructed
    persistence: bool = True
    autosave_interval_s: int = 5
    max_queued_messages: int = 200_000
    max_inflight_messages: int = 1_000
    password_file: Path | None = None
    extra_lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.password_file is not None:
            self.password_file = Path(self.password_file)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"broker.port: {self.port} is not a TCP port (0 picks a free one)")
        if not 1 <= self.autosave_interval_s <= 10:
            raise ConfigError(
                f"broker.autosave_interval_s: {self.autosave_interval_s} must be 1..10 seconds "
                "so a crash loses at most a few seconds of queued messages"
            )
        if self.max_queued_messages < 100_000:
            raise ConfigError(
                f"broker.max_queued_messages: {self.max_queued_messages} must be >= 100000 "
                "so an offline subscriber does not lose readings"
            )
        if self.max_inflight_messages < 1_000:
            raise ConfigError(
                f"broker.max_inflight_messages: {self.max_inflight_messages} must be >= 1000 "
                "so a reconnecting subscriber drains its queue quickly"
            )
        for name, value in (
            ("broker.host", self.host),
            ("broker.data_dir", str(self.data_dir)),
            ("broker.password_file", str(self.password_file or "")),
            *(("broker.extra_lines", line) for line in self.extra_lines),
        ):
            if "\n" in value or "\r" in value:
                raise ConfigError(f"{name}: a line break would inject config lines: {value!r}")


def render_config(cfg: MosquittoConfig) -> str:
    """Return the mosquitto.conf text for `cfg` (which must name a concrete port).

    Everything durable is spelled out rather than left to Mosquitto's defaults, so the file
    documents the guarantees the tests check; the log goes to the data directory so a failed
    start can show it.
    """
    if cfg.port == 0:
        raise ConfigError("broker.port: resolve port 0 to a free port before rendering the config")
    data_dir = cfg.data_dir.resolve()
    lines = ["# Written by greennanny.runtime.broker at every start; edits are overwritten."]
    if _effective_uid() == 0:
        # Without this Mosquitto drops to user `mosquitto`, who cannot write data_dir.
        lines.append("user root")
    lines += [
        f"listener {cfg.port} {cfg.host}",
        f"allow_anonymous {'false' if cfg.password_file else 'true'}",
    ]
    if cfg.password_file is not None:
        lines.append(f"password_file {cfg.password_file.resolve()}")
    lines += [
        f"persistence {'true' if cfg.persistence else 'false'}",
        # Mosquitto concatenates location and file name, so the trailing slash matters.
        f"persistence_location {data_dir}/",
        f"autosave_interval {cfg.autosave_interval_s}",
        "autosave_on_changes false",
        "persistent_client_expiration 30d",
        f"max_queued_messages {cfg.max_queued_messages}",
        "max_queued_bytes 0",
        f"max_inflight_messages {cfg.max_inflight_messages}",
        f"log_dest file {data_dir / LOG_NAME}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        *cfg.extra_lines,
    ]
    return "\n".join(lines) + "\n"


def find_mosquitto() -> str:
    """Return the path of the mosquitto binary.

    Debian installs it in /usr/sbin, which is not on a normal user's PATH, so the usual sbin
    directories are tried after PATH.
    """
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in _FALLBACK_PATHS:
        if os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError(
        "mosquitto not found on PATH or in "
        + ", ".join(_FALLBACK_PATHS)
        + "; install it (Debian/Ubuntu: apt-get install mosquitto; macOS: brew install mosquitto)"
    )


class Mosquitto:
    """One mosquitto process with its config, log and persistence in `cfg.data_dir`.

    The port is fixed when the object is made, so `url` can be handed to clients before `start`,
    and `restart` comes back on the same port with the same data directory, which is what a
    test of "survives a broker restart" needs.
    """

    def __init__(self, cfg: MosquittoConfig, binary: str | None = None) -> None:
        self.binary = binary or find_mosquitto()
        port = cfg.port or free_port(cfg.host)
        self.cfg = replace(cfg, port=port, extra_lines=list(cfg.extra_lines))
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[..., Mosquitto] | None = None

    @property
    def host(self) -> str:
        return self.cfg.host

    @property
    def port(self) -> int:
        return self.cfg.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs, else None."""
        return self._proc.pid if self.running else None  # type: ignore[union-attr]

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def conf_path(self) -> Path:
        return self.cfg.data_dir / CONF_NAME

    @property
    def log_path(self) -> Path:
        return self.cfg.data_dir / LOG_NAME

    def start(self, timeout: float = 10) -> None:
        """Write the config, start mosquitto and return once it answers an MQTT CONNECT.

        Raises BrokerError with the tail of the log if it exits or does not answer within
        `timeout` seconds (the process is killed in that case, so nothing is left behind).
        """
        if self.running:
            raise BrokerError(f"mosquitto already running at {self.url} (pid {self.pid})")
        data_dir = self.cfg.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(render_config(self.cfg), encoding="utf-8")
        # The log is appended to across restarts; only what this start writes counts.
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        stderr_path = data_dir / STDERR_NAME
        # Errors before the log file is open (a bad config line) go to stderr, so keep it.
        with stderr_path.open("ab") as stderr:
            stderr_offset = stderr.tell()
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
            )
        # Kill the broker if the interpreter exits without stop(), so none is left orphaned.
        self._finalizer = weakref.finalize(self, _kill_quietly, self._proc)
        deadline = time.monotonic() + timeout
        while True:
            status = self._proc.poll()
            if status is not None:
                self._forget_process()
                raise BrokerError(
                    f"mosquitto exited with status {status} while starting on {self.url}; "
                    f"log {self.log_path}:\n{self._tails(log_offset, stderr_offset)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop(graceful=False)
                raise BrokerError(
                    f"mosquitto did not answer MQTT on {self.url} within {timeout:g} s; "
                    f"log {self.log_path}:\n{self._tails(log_offset, stderr_offset)}"
                )
            if (
                _log_contains(self.log_path, log_offset, _RUNNING_MARK)
                and _accepts_tcp(self.host, self.port, min(remaining, 1.0))
                and _answers_mqtt(self.host, self.port, min(remaining, 2.0))
                and self._proc.poll() is None
            ):
                return
            time.sleep(0.05)

    def stop(self, graceful: bool = True, timeout: float = 10) -> None:
        """Stop the broker; graceful (SIGTERM) makes it save persistence first, else SIGKILL.

        A graceful stop that takes longer than `timeout` seconds is finished with SIGKILL so a
        test teardown never hangs. Stopping a broker that is not running does nothing.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self._forget_process()

    def restart(self, graceful: bool = True) -> None:
        """Stop and start again on the same port with the same data directory."""
        self.stop(graceful=graceful)
        self.start()

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _forget_process(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = None
        self._proc = None

    def _tails(self, log_offset: int, stderr_offset: int) -> str:
        parts = [_tail(self.log_path, log_offset)]
        stderr_tail = _tail(self.cfg.data_dir / STDERR_NAME, stderr_offset)
        if stderr_tail:
            parts.append(f"stderr:\n{stderr_tail}")
        return "\n".join(part for part in parts if part) or "(log is empty)"


def _effective_uid() -> int:
    geteuid = getattr(os, "geteuid", None)  # absent on Windows, where there is no root
    return geteuid() if geteuid is not None else -1


def _tail(path: Path, offset: int = 0, lines: int = 20) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _log_contains(path: Path, offset: int, mark: str) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return mark.encode() in handle.read()
    except OSError:
        return False


def _accepts_tcp(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _answers_mqtt(host: str, port: int, timeout: float) -> bool:
    """True once the broker sends any CONNACK.

    A refusal (bad or missing credentials when a password file is set) still proves a working
    broker, so the reason code is not checked.
    """
    answered: list[bool] = []
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"greennanny-probe-{os.getpid()}-{time.monotonic_ns()}",
        clean_session=True,
    )
    client.on_connect = lambda *_args: answered.append(True)
    client.connect_timeout = timeout
    deadline = time.monotonic() + timeout
    try:
        client.connect(host, port, keepalive=10)
        while not answered and time.monotonic() < deadline:
            if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
        return bool(answered)
    except OSError:
        return False
    finally:
        client.disconnect()
        client.loop(timeout=0.01)


def _kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)
