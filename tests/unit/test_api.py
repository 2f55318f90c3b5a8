"""The API on a real DuckDB file: one error shape, points and forecasts, dead letters."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from greennanny.api.app import create_app
from greennanny.api.batch_codec import batch_to_ipc
from greennanny.cli.backend import InProcessTransport
from greennanny.config import ForecastConfig, config_from_dict
from greennanny.forecast.service import ForecastService
from greennanny.model import Batch, SeriesKey
from greennanny.runtime.clock import FakeClock
from greennanny.store.base import DeadLetter, IngestCommit, LedgerEntry
from greennanny.store.duckdb import DuckDBStore

T0 = 1_700_000_000 * 10**9 // (900 * 10**9) * (900 * 10**9)
STEP = 300 * 10**9


@pytest.fixture
def client(tmp_path):
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path)}}, base_dir=tmp_path)
    store = DuckDBStore(cfg.store_path)
    n = 5 * 288
    ts = T0 + np.arange(n, dtype=np.int64) * STEP
    hours = (ts % (86400 * 10**9)) / 3.6e12
    key = SeriesKey("gh", "house-1", "probe-1", "air_temperature")
    store.write(Batch.from_columns([key], np.zeros(n, np.int32), ts, 20 + 3 * np.sin(hours / 24 * 2 * np.pi)))
    store.commit_ingest(IngestCommit(Batch.empty(), [DeadLetter(T0, "t/x", b"\x01\x02", "decode_error", "offset 1")],
                                     [LedgerEntry(T0, "t/x", "dead_letter", "decode_error", "")]))
    ForecastService(store, cfg.forecast, FakeClock(int(ts[-1]) + 1)).run_once()
    with httpx.Client(transport=InProcessTransport(create_app(cfg, store)), base_url="http://local") as c:
        yield c
    store.close()


def test_points_window_and_downsampling(client):
    s = client.get("/series").json()[0]
    assert (s["unit"], s["points"]) == ("degC", 5 * 288)
    body = client.get(f"/series/{s['id']}/points", params={"start": T0, "end": T0 + 3600 * 10**9}).json()
    assert len(body["value"]) == 12 and body["ts"][0] == "2023-11-14T22:00:00Z"
    hourly = client.get(f"/series/{s['id']}/points", params={"every": 3600}).json()
    assert len(hourly["value"]) == 5 * 24 and set(hourly["count"]) == {12}
    # Stored at the quantity's resolution (0.01 degC): float noise costs no bytes.
    assert all(round(v, 2) == v for v in body["value"])


def test_points_take_the_cli_forms_of_every_and_of_times(tmp_path):
    """Fresh-clone finding: `?every=1h` answered 422 and `?start=-1d` 400, where `series points`
    and /db/export take both; times before now count from the node's clock."""
    from types import SimpleNamespace

    cfg = config_from_dict({"node": {"data_dir": str(tmp_path)}}, base_dir=tmp_path)
    store = DuckDBStore(cfg.store_path)
    ts = T0 + np.arange(3 * 288, dtype=np.int64) * STEP
    store.write(Batch.from_columns([SeriesKey("gh", "h", "p", "air_temperature")], np.zeros(ts.size, np.int32), ts,
                                   np.full(ts.size, 21.0)))
    node = SimpleNamespace(clock=FakeClock(int(ts[-1]) + STEP))  # "now" is just after the last point
    try:
        with httpx.Client(transport=InProcessTransport(create_app(cfg, store, node)), base_url="http://l") as c:
            by_unit = c.get("/series/1/points", params={"every": "1h", "start": "-1d"}).json()
            by_seconds = c.get("/series/1/points", params={"every": 3600, "start": int(ts[-1]) + STEP - 86400 * 10**9})
            assert by_unit == by_seconds.json() and by_unit["every"] == 3600 and len(by_unit["value"]) == 24
            assert len(c.get("/series/1/points", params={"start": "-1h", "end": "now"}).json()["value"]) == 12
    finally:
        store.close()


def test_forecast_route_returns_model_error_and_intervals(client):
    fc = client.get("/series/1/forecast").json()
    assert len(fc["mean"]) == 96 and fc["step_s"] == 900 and fc["model"] in ForecastConfig().models
    assert all(lo <= m <= hi for lo, m, hi in zip(fc["lo80"], fc["mean"], fc["hi80"]))
    assert all(lo <= m <= hi for lo, m, hi in zip(fc["lo95"], fc["lo80"], fc["hi95"]))


def test_one_error_shape_for_every_failure(client):
    r = client.get("/series/999/points")
    assert r.status_code == 404 and r.json() == {"error": {"code": "not_found", "message": "series 999 does not exist"}}
    r = client.get("/series/1/points", params={"every": 0})
    assert r.status_code == 400 and "every '0'" in r.json()["error"]["message"]
    r = client.get("/series/1/points", params={"every": "1.5s"})
    assert r.status_code == 400 and "every '1.5s'" in r.json()["error"]["message"]
    r = client.get("/series/1/points", params={"start": "yesterday-ish"})
    assert r.status_code == 400 and "start='yesterday-ish'" in r.json()["error"]["message"]
    r = client.post("/ingest/batch", content=b"not arrow")
    assert r.status_code == 400 and r.json()["error"]["code"] == "http_error"


def test_deadletters_show_raw_bytes_and_reason(client):
    body = client.get("/deadletters").json()
    assert body["counts"] == {"decode_error": 1}
    assert body["items"][0]["payload_hex"] == "0102" and body["items"][0]["detail"] == "offset 1"


def test_batch_ingest_roundtrip_is_idempotent(client):
    key = SeriesKey("gh", "house-2", "probe-9", "co2")
    b = Batch.from_columns([key], np.zeros(3, np.int32), T0 + np.arange(3) * STEP, np.array([400.0, 410, 420]))
    assert client.post("/ingest/batch", content=batch_to_ipc(b)).json() == {"written": 3, "replaced": 0}
    assert client.post("/ingest/batch", content=batch_to_ipc(b)).json() == {"written": 3, "replaced": 3}
    sid = next(s["id"] for s in client.get("/series", params={"quantity": "co2"}).json())
    assert client.get(f"/series/{sid}/points").json()["value"] == [400.0, 410.0, 420.0]
