"""SIGKILL the node in the middle of a QoS 1 replay, restart it: every message stored once."""

from __future__ import annotations

import threading
import time

import pytest

from greennanny.ingest.replay import Message, publish
from greennanny.runtime.broker import free_port
from greennanny.store.duckdb import DuckDBStore
from tests.integration.nodeproc import NodeProcess, write_config

pytestmark = pytest.mark.integration

N = 6000
T0 = 1_700_000_000 * 10**9


def messages() -> list[Message]:
    out = []
    for i in range(N):
        ts = T0 + i * 60 * 10**9
        body = f'{{"air_temperature": {20 + (i % 100) / 10:.1f}, "ts": {ts}}}'.encode()
        out.append(Message(f"greennanny/gh/house-{i % 3}/probe-{i % 3}", body, ts))
    return out


def test_sigkill_mid_replay_then_restart_stores_every_message_once(mosquitto, tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    cfg = write_config(tmp_path / "node.toml", broker_url=mosquitto.url, api_port=port, data_dir=tmp_path / "data")
    node = NodeProcess(cfg, tmp_path / "node.log")
    node.start(api)
    msgs = messages()
    acked: list[int] = []
    # Paced at ~1,500 msg/s so the kill lands in the middle of the stream.
    pub = threading.Thread(target=lambda: acked.append(publish(mosquitto.url, msgs, speed=90_000)))
    pub.start()
    time.sleep(1.5)
    node.kill()
    killed_at = len(acked)
    time.sleep(1.0)
    node.start(api)
    pub.join(timeout=120)
    assert acked == [N] and killed_at == 0, "publisher must still be running when the node was killed"
    # Wait until the restarted node has drained the broker's queue for its session.
    import httpx

    end = time.monotonic() + 90
    stored = 0
    while time.monotonic() < end:
        body = httpx.get(api + "/outcomes", timeout=5).json()
        stored = body["outcomes"].get("stored", 0)
        if stored >= N:
            break
        time.sleep(0.5)
    time.sleep(1.0)
    node.stop()
    store = DuckDBStore(tmp_path / "data" / "greennanny.duckdb")
    try:
        rows = store.rows()  # every stored row, hot and cold
        n_points, n_distinct = len(rows), len(rows.drop_duplicates(["series_id", "ts"]))
        outcomes = store.outcome_counts()
    finally:
        store.close()
    print("outcomes after kill and restart:", outcomes)
    assert n_points == N and n_distinct == N
    # Every message has one stored outcome; redeliveries after the kill, if any, are duplicates.
    assert outcomes["stored"] == N
    assert set(outcomes) <= {"stored", "duplicate"}


def test_sigterm_stops_the_node_cleanly_like_ctrl_c(mosquitto, tmp_path):
    """systemd and docker stop send SIGTERM: the node must close its store, not die mid-write."""
    import signal

    port = free_port()
    cfg = write_config(tmp_path / "node.toml", broker_url=mosquitto.url, api_port=port, data_dir=tmp_path / "data")
    node = NodeProcess(cfg, tmp_path / "node.log")
    node.start(f"http://127.0.0.1:{port}")
    publish(mosquitto.url, messages()[:100])
    time.sleep(1.0)
    assert node.proc is not None
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(timeout=20) == 0
    assert "stopping" in (tmp_path / "node.log").read_text()
    store = DuckDBStore(tmp_path / "data" / "greennanny.duckdb")
    try:
        assert store.count_points() == 100
    finally:
        store.close()
