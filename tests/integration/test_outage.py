"""Issue 3, 2(c): the node is away for 60 s while 20,000 QoS 1 messages are published, the
broker restarts gracefully meanwhile, the node comes back: every message stored exactly once."""

from __future__ import annotations

import time

import httpx
import pytest

from greennanny.ingest.replay import Message, publish
from greennanny.runtime.broker import free_port
from greennanny.store.duckdb import DuckDBStore
from tests.integration.nodeproc import NodeProcess, write_config

pytestmark = pytest.mark.integration
N = 20_000
T0 = 1_760_000_000 * 10**9


def test_node_away_60s_with_broker_restart_stores_20000_messages_exactly_once(mosquitto, tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    cfg = write_config(tmp_path / "node.toml", broker_url=mosquitto.url, api_port=port, data_dir=tmp_path / "data")
    node = NodeProcess(cfg, tmp_path / "node.log")
    node.start(api)  # creates the persistent session
    node.stop()
    # 20,000 messages spread over 60 s of publishing (3 ms apart), 20 devices.
    msgs = [Message(f"greennanny/gh/h{i % 4}/probe-{i % 20}", f'{{"air_temperature": {15 + i % 100 / 10}, '
                    f'"ts": {T0 + i * 10**9}}}'.encode(), T0 + i * 3_000_000) for i in range(N)]
    t = time.monotonic()
    assert publish(mosquitto.url, msgs, speed=1.0) == N
    published_s = time.monotonic() - t
    mosquitto.restart(graceful=True)  # queued messages must survive (persistence on)
    node.start(api)
    end = time.monotonic() + 180
    stored = 0
    while time.monotonic() < end and stored < N:
        stored = httpx.get(api + "/outcomes", timeout=5).json()["outcomes"].get("stored", 0)
        time.sleep(0.5)
    node.stop()
    store = DuckDBStore(tmp_path / "data" / "greennanny.duckdb")
    try:
        rows = store.rows()  # every stored row, hot and cold
        n, distinct = len(rows), len(rows.drop_duplicates(["series_id", "ts"]))
        assert store.outcome_counts() == {"stored": N}
    finally:
        store.close()
    assert published_s >= 55  # the node really was away for about a minute of publishing
    assert n == distinct == N
