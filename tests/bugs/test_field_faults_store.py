"""Field faults of ../shared/cases/field-faults.md about writing to InfluxDB (BR-12, BR-14, BR-15,
BR-16), through the InfluxDB store against the real influxd of the `influxd` fixture.

What went over the wire is recorded by a transport that forwards to the real server, so each test
checks both the request (line text, precision) and what InfluxDB then answers to InfluxQL. The one
answer influxd 1.6 cannot give, InfluxDB 2's HTTP 500 for points beyond retention, comes from a
small local server that answers exactly the case's body (tests/integration/fake_influx.py).
"""

from __future__ import annotations

import gzip
import time
from typing import Any

import httpx
import numpy as np
import pytest
from tests.integration.fake_influx import fake_influx

from greennanny.errors import StoreUnavailable
from greennanny.model import Batch, SeriesKey
from greennanny.store.influx_client import InfluxClient
from greennanny.store.influxdb import InfluxDBStore

DAY = 86400 * 10**9


class Recording(httpx.HTTPTransport):
    """Forwards to the real server and keeps each /write's query string and gunzipped lines."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[dict[str, str], list[str]]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/write":
            body = gzip.decompress(request.read()).decode()
            self.writes.append((dict(request.url.params), body.splitlines()))
        return super().handle_request(request)


def open_store(url: str, database: str, **kw: Any) -> tuple[InfluxDBStore, Recording]:
    rec = Recording()
    return InfluxDBStore(InfluxClient(url, database, transport=rec, **kw)), rec


def influxql(url: str, database: str, q: str, **params: str) -> list[dict[str, Any]]:
    resp = httpx.post(f"{url}/query", data={"db": database, "q": q, **params}, timeout=30)
    resp.raise_for_status()
    return resp.json()["results"][0].get("series", [])


def one(key: SeriesKey, ts: int, value: float) -> Batch:
    return Batch.from_columns([key], np.zeros(1, np.int32), np.array([ts]), np.array([value]))


# -- BR-12: a whole-number reading written as an integer makes every later decimal a type conflict -------
def test_BR_12_whole_number_25_then_24_6_both_accepted_and_the_field_is_float(influxd: Any, influx_database: str) -> None:
    store, rec = open_store(influxd.url, influx_database)
    key = SeriesKey("farm", "z3", "probe-1", "air_temperature")
    t = 1_700_000_000 * 10**9
    first = store.write(one(key, t, 25))  # {"temperature": 25}: a Python int on the way in
    second = store.write(one(key, t + 60 * 10**9, 24.6))
    assert (first.written, second.written, len(first.rejected), len(second.rejected)) == (1, 1, 0, 0)
    assert rec.writes[0][1] == [f"air_temperature,device=probe-1,site=farm,zone=z3 value=25.0,quality=0i {t}"]
    assert "value=24.6," in rec.writes[1][1][0]
    fields = influxql(influxd.url, influx_database, 'SHOW FIELD KEYS FROM "air_temperature"')[0]["values"]
    assert ["value", "float"] in fields
    got = influxql(influxd.url, influx_database, 'SELECT "value" FROM "air_temperature"', epoch="ns")[0]["values"]
    assert got == [[t, 25.0], [t + 60 * 10**9, 24.6]]


# -- BR-14: "points beyond retention" must be set aside and counted, not retried forever ---------------
def backlog(now_ns: int) -> Batch:
    """The case's backlog: 139 points stamped 20 days ago and 10 from the last hour."""
    key = SeriesKey("farm", "z1", "probe-1", "air_temperature")
    old = now_ns - 20 * DAY + np.arange(139, dtype=np.int64) * 60 * 10**9
    recent = now_ns - 3600 * 10**9 + np.arange(10, dtype=np.int64) * 300 * 10**9
    ts = np.concatenate([old, recent])
    return Batch.from_columns([key], np.zeros(149, np.int32), ts, 20.0 + np.arange(149) % 7)


def test_BR_14_points_beyond_a_14_day_retention_are_set_aside_and_counted_and_the_rest_stored_on_influxd(
        influxd: Any, influx_database: str) -> None:
    store, _ = open_store(influxd.url, influx_database)
    store.client.query(f'CREATE RETENTION POLICY "two_weeks" ON "{influx_database}" DURATION 14d REPLICATION 1 DEFAULT')
    now = time.time_ns()
    before = store.client.requests
    res = store.write(backlog(now))
    assert store.client.requests - before == 1  # influxd 1.6 answers 400 partial write: never retried
    assert res.rejected_counts() == {"beyond_retention": 139} and res.written == 10
    assert all(t < now - 14 * DAY for t in res.rejected.ts_ns.tolist())
    assert "dropped=139" in next(iter(res.rejected.reasons.values()))
    got = influxql(influxd.url, influx_database, 'SELECT count("value") FROM "air_temperature"')
    assert got[0]["values"][0][1] == 10


BR14_BODY = (b'{"code":"internal error","message":"unexpected error writing points to database: partial write: '
             b'points beyond retention policy dropped=139"}')


def test_BR_14_http_500_points_beyond_retention_is_a_partial_write_retried_at_most_once() -> None:
    now = time.time_ns()

    def influxdb2(lines: list[str]) -> tuple[int, bytes]:
        """InfluxDB 2 with a 14-day bucket: a batch with old points gets the case's 500."""
        old = [ln for ln in lines if int(ln.rsplit(" ", 1)[1]) < now - 14 * DAY]
        return (500, BR14_BODY) if old else (204, b"")

    sleeps: list[float] = []
    with fake_influx(influxdb2) as server:
        store = InfluxDBStore(InfluxClient(server.url, "greennanny", sleep=sleeps.append))
        res = store.write(backlog(now))
        assert len(server.writes) <= 2 and sleeps == []  # one retry at most, and no backoff loop
        assert res.rejected_counts() == {"beyond_retention": 139} and res.written == 10
        assert len(server.writes[-1].lines) == 10  # the retry carried the 10 recent points only
        assert all(int(ln.rsplit(" ", 1)[1]) >= now - 3600 * 10**9 for ln in server.writes[-1].lines)
        # the queue empties: the next write goes through in one request
        res = store.write(one(SeriesKey("farm", "z1", "probe-1", "air_temperature"), now, 21.0))
        assert res.written == 1 and len(server.writes) == 3


def test_BR_14_a_500_without_that_message_is_still_retried_with_backoff() -> None:
    answers = iter([(500, b'{"error":"timeout"}'), (503, b""), (204, b"")])
    sleeps: list[float] = []
    with fake_influx(lambda _lines: next(answers)) as server:
        store = InfluxDBStore(InfluxClient(server.url, "greennanny", sleep=sleeps.append, backoff_s=0.5))
        res = store.write(one(SeriesKey("farm", "z1", "probe-1", "air_temperature"), time.time_ns(), 21.0))
        assert res.written == 1 and len(server.writes) == 3
        assert len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.5 <= sleeps[1] <= 1.0  # exponential, with jitter
    with fake_influx(lambda _lines: (500, b'{"error":"engine down"}')) as server:
        store = InfluxDBStore(InfluxClient(server.url, "greennanny", sleep=sleeps.append, max_retries=3))
        with pytest.raises(StoreUnavailable, match="after 4 attempts.*engine down"):
            store.write(one(SeriesKey("farm", "z1", "probe-1", "air_temperature"), time.time_ns(), 21.0))
        assert len(server.writes) == 4


# -- BR-15: a millisecond device time must not land in 1970 ----------------------------------------------
def test_BR_15_millisecond_epoch_is_stored_at_2016_02_13T11_16_29_575Z(influxd: Any, influx_database: str) -> None:
    store, rec = open_store(influxd.url, influx_database)
    device_ms = 1455362189575  # {"ts":1455362189575,"hr":5432}
    key = SeriesKey("farm", "z1", "meter-1", "co2")
    store.write(one(key, device_ms * 1_000_000, 5432))  # the decoder's job: ms -> ns, as ints
    params, lines = rec.writes[0]
    assert params["precision"] == "ns" and lines[0].endswith(" 1455362189575000000")
    got = influxql(influxd.url, influx_database, 'SELECT "value" FROM "co2"')[0]["values"]  # RFC 3339 times
    assert got == [["2016-02-13T11:16:29.575Z", 5432.0]]
    info = store.series()[0]
    assert info.first_ns == 1455362189575000000
    assert influxql(influxd.url, influx_database, 'SELECT count("value") FROM "co2" WHERE time < \'1971-01-01\'') == []


# -- BR-16: spaces, commas and = in tag values must be escaped, never quoted ------------------------------
def test_BR_16_tag_values_are_escaped_and_the_zone_reads_back_as_North_Bay(influxd: Any, influx_database: str) -> None:
    store, rec = open_store(influxd.url, influx_database)
    # The case's tags on our key: zone "North Bay", device "tomato, truss", site "t=18".
    key = SeriesKey("t=18", "North Bay", "tomato, truss", "air_temperature")
    res = store.write(one(key, 1_700_000_000_000_000_000, 21.5))
    assert res.written == 1 and len(res.rejected) == 0
    assert rec.writes[0][1] == [
        "air_temperature,device=tomato\\,\\ truss,site=t\\=18,zone=North\\ Bay value=21.5,quality=0i 1700000000000000000"
    ]
    values = influxql(influxd.url, influx_database, 'SHOW TAG VALUES FROM "air_temperature" WITH KEY = "zone"')
    assert values[0]["values"] == [["zone", "North Bay"]]
    got = influxql(influxd.url, influx_database,
                   'SELECT "value" FROM "air_temperature" WHERE "zone" = \'North Bay\' AND "device" = \'tomato, truss\'',
                   epoch="ns")
    assert got[0]["values"] == [[1_700_000_000_000_000_000, 21.5]]
    assert [s.key for s in store.series()] == [key]
