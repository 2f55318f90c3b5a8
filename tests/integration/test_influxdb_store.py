"""The InfluxDB store's own duties beyond the contract suite: field-type conflicts on a real
influxd, and, against a scripted server, batching, gzip, what is retried and what is not,
credentials kept out of logs, and the config that opens it.
"""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from greennanny.config import config_from_dict
from greennanny.errors import ConfigError, StoreError, StoreUnavailable
from greennanny.model import Batch, SeriesKey
from greennanny.runtime.broker import free_port
from greennanny.store import influxdb as influxdb_module
from greennanny.store.influx_client import InfluxClient
from greennanny.store.influxdb import InfluxDBStore
from tests.integration.fake_influx import fake_influx

pytestmark = pytest.mark.integration

AIR = SeriesKey("farm", "house-1", "probe-1", "air_temperature")
CO2 = SeriesKey("farm", "house-1", "probe-1", "co2")
T0 = 1_700_000_000 * 10**9


def rows(keys: list[SeriesKey], n: int) -> Batch:
    idx = np.arange(n) % len(keys)
    return Batch.from_columns(keys, idx, T0 + np.arange(n, dtype=np.int64) * 10**9, 20.0 + np.arange(n) / 10)


def test_a_field_type_conflict_sets_aside_that_measurement_and_stores_the_rest(influxd: Any, influx_database: str) -> None:
    store = InfluxDBStore(InfluxClient(influxd.url, influx_database))
    # Someone else (a Python client writing ints) made co2's `value` an integer first, in the same
    # shard (1.x keeps field types per shard: a week of the default policy).
    httpx.post(f"{influxd.url}/write", params={"db": influx_database},
               content=f"co2,device=other,site=farm,zone=house-9 value=600i {T0 - 10**9}\n".encode()).raise_for_status()
    res = store.write(rows([AIR, CO2], 10))
    assert res.written == 5 and res.rejected_counts() == {"field_type_conflict": 5}
    assert {p.key for p in res.rejected.points()} == {CO2}
    assert "co2.value is integer in InfluxDB, greennanny writes float" in res.rejected.reasons[0]
    assert [s.points for s in store.series(quantity="air_temperature")] == [5]


def test_rows_influx_cannot_keep_are_set_aside_before_sending() -> None:
    bad_tag = SeriesKey("farm", "house\\1", "probe-1", "air_temperature")
    far = Batch.from_columns([AIR], np.zeros(1, np.int32), np.array([2**63 - 1]), np.array([1.0]))
    with fake_influx() as server:
        store = InfluxDBStore(InfluxClient(server.url, "db"))
        res = store.write(Batch.concat([rows([AIR, bad_tag], 4), far]))
        assert res.written == 2 and res.rejected_counts() == {"bad_tag": 2, "time_out_of_range": 1}
        assert "backslash" in res.rejected.reasons[0]
        assert sum(len(w.lines) for w in server.writes) == 2


def test_writes_are_batched_gzip_with_explicit_ns_precision_and_the_policy() -> None:
    with fake_influx() as server:
        store = InfluxDBStore(InfluxClient(server.url, "gh", retention_policy="two_weeks"), batch_size=3)
        assert store.write(rows([AIR], 10)).written == 10
        assert [len(w.lines) for w in server.writes] == [3, 3, 3, 1]
        for w in server.writes:
            assert w.headers["Content-Encoding"] == "gzip"
            assert w.params == {"db": "gh", "precision": "ns", "rp": "two_weeks"}
        assert server.writes[0].lines[0] == f"air_temperature,device=probe-1,site=farm,zone=house-1 value=20.0,quality=0i {T0}"


def test_a_4xx_is_never_retried_and_its_rows_are_set_aside_with_the_server_message() -> None:
    sleeps: list[float] = []
    with fake_influx(lambda _lines: (400, b'{"error":"something the server dislikes"}')) as server:
        store = InfluxDBStore(InfluxClient(server.url, "gh", sleep=sleeps.append))
        res = store.write(rows([AIR], 4))
        assert len(server.writes) == 1 and sleeps == []
        assert res.written == 0 and res.rejected_counts() == {"refused": 4}
        assert "something the server dislikes" in res.rejected.reasons[0]


def test_a_413_is_split_until_the_server_takes_it() -> None:
    with fake_influx(lambda lines: (413, b'{"error":"Request Entity Too Large"}') if len(lines) > 2 else (204, b"")) as server:
        store = InfluxDBStore(InfluxClient(server.url, "gh"), batch_size=8)
        assert store.write(rows([AIR], 8)).written == 8
        assert sorted(len(w.lines) for w in server.writes if len(w.lines) <= 2) == [2, 2, 2, 2]


def test_a_server_that_is_not_there_is_unavailable_after_the_retries() -> None:
    sleeps: list[float] = []
    client = InfluxClient(f"http://127.0.0.1:{free_port()}", "gh", max_retries=2, sleep=sleeps.append, timeout_s=2)
    with pytest.raises(StoreUnavailable, match="after 3 attempts.*Connect"):
        InfluxDBStore(client)
    assert len(sleeps) == 2


def test_credentials_go_in_the_header_only_and_never_into_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cret-Pa55"
    answers = iter([(503, b'{"error":"busy"}'), (401, b'{"error":"authorization failed"}')])
    with caplog.at_level(logging.DEBUG), fake_influx(lambda _lines: next(answers)) as server:
        store = InfluxDBStore(InfluxClient(server.url, "gh", username="node", password=secret, sleep=lambda _s: None))
        with pytest.raises(StoreError) as err:
            store.write(rows([AIR], 1))
        sent = server.writes[-1].headers["Authorization"]
        assert sent == "Basic " + base64.b64encode(f"node:{secret}".encode()).decode()
        assert all(secret not in w.params.get("p", "") and "u" not in w.params for w in server.writes)
    assert "refused the credentials" in str(err.value)
    for text in (str(err.value), caplog.text, repr(store), repr(store.client)):
        assert secret not in text and base64.b64encode(f"node:{secret}".encode()).decode() not in text
    with fake_influx() as server:
        InfluxDBStore(InfluxClient(server.url, "gh", token="tok-123")).write(rows([AIR], 1))
        assert server.writes[0].headers["Authorization"] == "Token tok-123"


def test_series_ids_are_a_stable_hash_and_a_collision_is_set_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    assert influxdb_module.series_id(SeriesKey("farm", "house-1", "probe-1", "air_temperature")) == 1_015_615_796
    # pinned: every process and every release derives the same id, with no table to keep in step
    assert 0 < influxdb_module.series_id(CO2) < 2**31
    monkeypatch.setattr(influxdb_module, "series_id", lambda _key: 7)
    with fake_influx() as server:
        store = InfluxDBStore(InfluxClient(server.url, "gh"))
        res = store.write(rows([AIR, CO2], 4))
        assert res.written == 2 and res.rejected_counts() == {"series_id_collision": 2}
        assert str(AIR) in res.rejected.reasons[0]


def test_store_config_opens_the_influxdb_store_and_the_node_refuses_it_for_now(
        influxd: Any, influx_database: str, tmp_path: Path) -> None:
    (tmp_path / "influx_password").write_text("unused-with-auth-off\n")
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path / "data")}, "store": {
        "backend": "influxdb", "influxdb": {"url": influxd.url, "database": influx_database, "username": "node",
                                            "password_file": "influx_password", "batch_size": 2}}}, base_dir=tmp_path)
    store = InfluxDBStore.from_config(cfg)
    try:
        assert store.batch_size == 2 and store.write(rows([AIR], 3)).written == 3
        assert store.count_points() == 3
    finally:
        store.close()
    from greennanny.runtime.node import Node

    with pytest.raises(ConfigError, match="store.backend"):
        Node(cfg)
    with pytest.raises(ConfigError, match="store.influxdb.urll: unknown key"):
        config_from_dict({"store": {"influxdb": {"urll": "x"}}})
    with pytest.raises(ConfigError, match="store.influxdb.url"):
        config_from_dict({"store": {"influxdb": {"url": "localhost:8086"}}})


def test_a_real_influxd_round_trip_stays_fast_enough(influxd: Any, influx_database: str) -> None:
    """20,000 points in 4 requests and back: a regression guard, not a benchmark."""
    store = InfluxDBStore(InfluxClient(influxd.url, influx_database))
    n = 20_000
    b = Batch.from_columns([AIR], np.zeros(n, np.int32), T0 + np.arange(n, dtype=np.int64) * 10**9,
                           np.round(20 + np.sin(np.arange(n) / 100), 2))
    started = time.perf_counter()
    before = store.client.requests
    assert store.write(b).written == n
    assert store.client.requests - before == 4
    df = store.query(store.series()[0].id, None, None)
    assert len(df) == n and df["ts"].tolist()[:2] == [T0, T0 + 10**9]
    assert time.perf_counter() - started < 30
