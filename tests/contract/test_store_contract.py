"""The store contract (store/base.py), one suite run against every backend.

`duckdb` is the embedded file in a tmp dir; `influxdb` is a fresh database on the session's real
influxd (tests/conftest.py). A test of something a backend may lack asks its `capabilities` and
checks that the other backends raise NotSupported for it instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from greennanny.errors import NotSupported
from greennanny.model import Batch, Quality, SeriesKey, round_to_resolution
from greennanny.store.base import (
    AGGREGATES,
    CAP_COUNTS_OVERWRITES,
    CAP_DEADLETTERS,
    CAP_DELETE_RANGE,
    CAP_DOWNSAMPLE,
    CAP_INGEST_COMMIT,
    CAP_LATEST,
    CAP_QUERY,
    CAP_QUERY_MANY,
    CAP_RETENTION,
    CAP_SERIES,
    CAP_UNSERVED_ROWS,
    CAP_WRITE,
    IngestCommit,
    Store,
)
from greennanny.store.duckdb import DuckDBStore
from greennanny.store.influx_client import InfluxClient
from greennanny.store.influxdb import InfluxDBStore

T0 = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z: ns digits a float would lose
MIN = 60 * 10**9
CORE = {CAP_WRITE, CAP_QUERY, CAP_QUERY_MANY, CAP_DOWNSAMPLE, CAP_LATEST, CAP_SERIES, CAP_DELETE_RANGE}

AIR = SeriesKey("farm", "house-1", "probe-1", "air_temperature")
RH = SeriesKey("farm", "house-1", "probe-1", "relative_humidity")
AIR2 = SeriesKey("farm", "house-2", "probe-2", "air_temperature")
CO2 = SeriesKey("farm", "house-2", "probe-9", "co2")
OTHER_SITE = SeriesKey("lab", "bench", "probe-1", "air_temperature")


@pytest.fixture(params=["duckdb", "influxdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "duckdb":
        st: Any = DuckDBStore(tmp_path / "greennanny.duckdb")
    else:
        server = request.getfixturevalue("influxd")
        database = request.getfixturevalue("influx_database")
        st = InfluxDBStore(InfluxClient(server.url, database), batch_size=1000)
    try:
        yield st
    finally:
        st.close()


def batch(rows: list[tuple[SeriesKey, int, float]], quality: list[int] | None = None) -> Batch:
    keys = sorted({k for k, _, _ in rows})
    return Batch.from_columns(keys, np.array([keys.index(k) for k, _, _ in rows]), np.array([t for _, t, _ in rows]),
                              np.array([v for _, _, v in rows], np.float64), quality)


def sid(store: Store, key: SeriesKey) -> int:
    return next(s.id for s in store.series() if s.key == key)


def raw(store: Store, key: SeriesKey, start: int | None = None, end: int | None = None) -> list[tuple[int, float]]:
    df = store.query(sid(store, key), start, end)
    return list(zip(df["ts"].astype("int64").tolist(), df["value"].tolist(), strict=True))


def test_write_then_read_back_exactly(store: Any) -> None:
    res = store.write(batch([(AIR, T0, 25), (AIR, T0 + MIN, 24.6), (RH, T0, 63.257), (CO2, T0, 612)]))
    assert (res.written, res.replaced, len(res.rejected)) == (4, 0, 0)
    assert raw(store, AIR) == [(T0, 25.0), (T0 + MIN, 24.6)]  # ns kept exactly, int64 all the way
    assert raw(store, RH) == [(T0, 63.26)]  # stored at the quantity's resolution (0.01 %)
    df = store.query_many([sid(store, AIR), sid(store, CO2)], None, None)
    assert list(df.columns) == ["series_id", "ts", "value", "quality"]
    assert df["value"].tolist() == ([25.0, 24.6, 612.0] if sid(store, AIR) < sid(store, CO2) else [612.0, 25.0, 24.6])
    assert raw(store, AIR, T0 + 1, T0 + MIN) == []  # [start, end): end is exclusive
    assert raw(store, AIR, T0 + MIN, None) == [(T0 + MIN, 24.6)]


def test_tag_values_with_space_comma_and_equals_round_trip(store: Any) -> None:
    odd = SeriesKey("site=a", "North Bay", "probe, 7", "air_temperature")
    store.write(batch([(odd, T0, 21.5)]))
    assert [s.key for s in store.series(zone="North Bay")] == [odd]
    assert raw(store, odd) == [(T0, 21.5)]


def test_out_of_order_and_late_points_are_stored_and_served_in_time_order(store: Any) -> None:
    times = [T0 + i * MIN for i in (5, 1, 9, 3, 7)]
    store.write(batch([(AIR, t, 20.0 + i) for i, t in enumerate(times)]))
    late = store.write(batch([(AIR, T0 - 3600 * 10**9, 18.0), (AIR, T0 + 2 * MIN, 19.5)]))  # an hour late, and a gap
    assert (late.written, late.replaced) == (2, 0)
    got = raw(store, AIR)
    assert [t for t, _ in got] == sorted(times + [T0 - 3600 * 10**9, T0 + 2 * MIN])
    assert dict(got)[T0 + 9 * MIN] == 22.0 and dict(got)[T0 - 3600 * 10**9] == 18.0


def test_duplicate_timestamps_last_write_wins_and_are_counted(store: Any) -> None:
    res = store.write(batch([(AIR, T0, 20.0), (AIR, T0, 21.0), (AIR, T0 + MIN, 22.0), (RH, T0, 60.0)]))
    assert (res.written, res.replaced) == (3, 1)  # the second row at T0 replaced the first
    assert raw(store, AIR) == [(T0, 21.0), (T0 + MIN, 22.0)]
    again = store.write(batch([(AIR, T0 + MIN, 23.0)]))  # a redelivery with a corrected value
    assert raw(store, AIR) == [(T0, 21.0), (T0 + MIN, 23.0)]
    assert again.written == 1
    assert again.replaced == (1 if CAP_COUNTS_OVERWRITES in store.capabilities else 0)
    assert next(s for s in store.series() if s.key == AIR).points == 2


def test_nan_and_inf_are_rejected_with_a_reason_and_the_rest_is_stored(store: Any) -> None:
    b = batch([(AIR, T0, 20.0), (AIR, T0 + MIN, float("nan")), (AIR, T0 + 2 * MIN, float("inf")),
               (RH, T0, float("-inf")), (RH, T0 + MIN, 61.0)])
    res = store.write(b)
    assert res.written == 2 and res.rejected_counts() == {"not_finite": 3}
    rejected = sorted((str(p.key), p.ts_ns, p.reason or "") for p in res.rejected.points())
    assert [(k, t) for k, t, _ in rejected] == [(str(AIR), T0 + MIN), (str(AIR), T0 + 2 * MIN), (str(RH), T0)]
    assert all(r.startswith("not_finite: ") and "not a finite number" in r for _, _, r in rejected)
    assert raw(store, AIR) == [(T0, 20.0)] and raw(store, RH) == [(T0 + MIN, 61.0)]


def test_flagged_rows_are_served_with_their_quality_missing_and_quarantined_are_not(store: Any) -> None:
    b = batch([(CO2, T0, 612.0), (CO2, T0 + MIN, 45000.0), (CO2, T0 + 2 * MIN, float("nan")), (CO2, T0 + 3 * MIN, 1.0)],
              quality=[Quality.OK, Quality.FLAGGED, Quality.MISSING, Quality.QUARANTINED])
    res = store.write(b)
    df = store.query(sid(store, CO2), None, None)
    assert df["ts"].tolist() == [T0, T0 + MIN] and df["quality"].tolist() == [0, 2]
    if CAP_UNSERVED_ROWS in store.capabilities:
        assert res.written == 4 and len(res.rejected) == 0
    else:
        assert res.written == 2 and res.rejected_counts() == {"missing": 1, "quarantined": 1}
    forecastable = store.query_long([sid(store, CO2)], T0, T0 + 10 * MIN)
    assert forecastable[1].tolist() == [T0]  # forecasting takes OK rows only


def test_notes_give_the_rows_that_are_not_ok_with_their_reason_or_not_supported(store: Any) -> None:
    b = batch([(CO2, T0, 612.0), (CO2, T0 + MIN, 45000.0), (CO2, T0 + 2 * MIN, float("nan")), (AIR, T0, 20.0)],
              quality=[Quality.OK, Quality.FLAGGED, Quality.MISSING, Quality.OK])
    keys = sorted({CO2, AIR})
    reasons = {1: "co2: 45000.0 is above 40000", 2: "co2='E' is not a number"}
    b = Batch(b.keys, b.key_index, b.ts_ns, b.value, b.quality, reasons)
    assert b.keys == keys
    store.write(b)
    ids = [sid(store, CO2), sid(store, AIR)]
    if CAP_UNSERVED_ROWS not in store.capabilities:
        with pytest.raises(NotSupported, match="notes"):
            store.notes(ids, None, None)
        return
    notes = store.notes(ids, None, None)
    assert notes["ts"].tolist() == [T0 + MIN, T0 + 2 * MIN] and notes["quality"].tolist() == [2, 1]
    assert notes["reason"].tolist() == [reasons[1], reasons[2]]
    assert store.notes(ids, T0 + 2 * MIN, None)["ts"].tolist() == [T0 + 2 * MIN]


@pytest.fixture
def irregular(store: Any) -> pd.DataFrame:
    """Three series, 400 irregular points each over ~2 days, written in shuffled batches."""
    rng = np.random.default_rng(4)
    frames = []
    for key in (AIR, AIR2, RH):
        ts = T0 + np.sort(rng.choice(2 * 86400, size=400, replace=False)).astype(np.int64) * 10**9
        value = round_to_resolution(rng.normal(22, 4, size=400), [key.quantity], np.zeros(400, np.int32))
        frames.append(pd.DataFrame({"key": [key] * 400, "ts": ts, "value": value}))
    data = pd.concat(frames, ignore_index=True)
    shuffled = data.sample(frac=1.0, random_state=1)
    for part in (shuffled.iloc[i::3] for i in range(3)):
        keys = sorted(set(part["key"]))
        store.write(Batch.from_columns(keys, np.array([keys.index(k) for k in part["key"]]), part["ts"].to_numpy(),
                                       part["value"].to_numpy()))
    ids = {s.key: s.id for s in store.series()}
    data["series_id"] = [ids[k] for k in data["key"]]
    return data


def expected_buckets(data: pd.DataFrame, every: int, agg: str, start: int | None, end: int | None) -> pd.DataFrame:
    d = data[(data["ts"] >= (start if start is not None else -(2**63))) & (data["ts"] < (end if end is not None else 2**63 - 1))]
    d = d.sort_values("ts").assign(bucket=lambda f: f["ts"] - f["ts"] % every)
    g = d.groupby(["series_id", "bucket"])["value"]
    out = {"min": g.min(), "mean": g.mean(), "max": g.max(), "last": g.last(), "count": g.count().astype(float)}[agg]
    return out.reset_index().rename(columns={"bucket": "ts"}).sort_values(["series_id", "ts"], ignore_index=True)


@pytest.mark.parametrize("agg", AGGREGATES)
def test_downsampling_every_and_aggregate_matches_a_pandas_recompute(store: Any, irregular: pd.DataFrame, agg: str) -> None:
    ids = sorted(set(irregular["series_id"]))
    every = 15 * MIN
    for start, end in ((T0 + 7 * MIN + 13 * 10**9, T0 + 86400 * 10**9 + 3), (None, None)):
        got = store.query_many(ids, start, end, every_ns=every, agg=agg)
        want = expected_buckets(irregular, every, agg, start, end)
        assert list(got.columns) == ["series_id", "ts", "value"]
        assert got["series_id"].tolist() == want["series_id"].tolist()
        assert got["ts"].astype("int64").tolist() == want["ts"].tolist()
        np.testing.assert_allclose(got["value"].to_numpy(float), want["value"].to_numpy(float), rtol=1e-12)
    with pytest.raises(ValueError, match="median"):
        store.query_many(ids, None, None, every_ns=every, agg="median")


def test_one_series_downsampled_has_mean_min_max_and_count(store: Any, irregular: pd.DataFrame) -> None:
    one = int(irregular["series_id"].iloc[0])
    every = 60 * MIN
    got = store.query(one, T0, T0 + 86400 * 10**9, every_ns=every)
    mine = irregular[irregular["series_id"] == one]
    for col, agg in (("value", "mean"), ("min", "min"), ("max", "max"), ("count", "count")):
        want = expected_buckets(mine, every, agg, T0, T0 + 86400 * 10**9)
        assert got["ts"].astype("int64").tolist() == want["ts"].tolist()
        np.testing.assert_allclose(got[col].to_numpy(float), want["value"].to_numpy(float), rtol=1e-12)


def test_latest_value_per_series(store: Any, irregular: pd.DataFrame) -> None:
    want = irregular.sort_values("ts").groupby("series_id").last()
    got = store.latest().set_index("series_id")
    assert got.index.tolist() == want.index.tolist()
    assert got["ts"].astype("int64").tolist() == want["ts"].tolist()
    assert got["value"].tolist() == want["value"].tolist()
    one = int(want.index[1])
    assert store.latest([one])["series_id"].tolist() == [one]


def test_series_listing_filters_by_site_zone_device_and_quantity(store: Any) -> None:
    store.write(batch([(AIR, T0, 20.0), (AIR, T0 + MIN, 21.0), (RH, T0, 60.0), (AIR2, T0, 19.0), (CO2, T0, 600.0),
                       (OTHER_SITE, T0, 18.0)]))
    assert [s.key for s in store.series()] == sorted([AIR, RH, AIR2, CO2, OTHER_SITE])
    assert {s.key for s in store.series(site="farm")} == {AIR, RH, AIR2, CO2}
    assert {s.key for s in store.series(zone="house-2")} == {AIR2, CO2}
    assert {s.key for s in store.series(device="probe-1")} == {AIR, RH, OTHER_SITE}
    assert {s.key for s in store.series(quantity="air_temperature", site="farm")} == {AIR, AIR2}
    assert store.series(site="nowhere") == []
    info = next(s for s in store.series() if s.key == AIR)
    assert (info.unit, info.points, info.first_ns, info.last_ns, info.last_value) == ("degC", 2, T0, T0 + MIN, 21.0)
    assert store.series_by_id(info.id) == info
    assert store.series_by_id(123_456_789) is None
    assert len({s.id for s in store.series()}) == 5


def test_delete_by_range(store: Any) -> None:
    store.write(batch([(AIR, T0 + i * MIN, 20.0 + i) for i in range(10)] + [(RH, T0 + i * MIN, 60.0) for i in range(10)]))
    assert store.delete_range(T0 + 2 * MIN, T0 + 5 * MIN, series_ids=[sid(store, AIR)]) == 3
    assert [t for t, _ in raw(store, AIR)] == [T0 + i * MIN for i in (0, 1, 5, 6, 7, 8, 9)]
    assert len(raw(store, RH)) == 10
    assert store.delete_range(T0 + 8 * MIN, None) == 4  # every series, open end
    assert [t for t, _ in raw(store, AIR)] == [T0 + i * MIN for i in (0, 1, 5, 6, 7)]
    assert [t for t, _ in raw(store, RH)] == [T0 + i * MIN for i in range(8)]
    assert store.delete_range(None, T0 + MIN) == 2
    assert store.count_points() == 4 + 7


def test_capabilities_are_declared_and_what_is_missing_raises_not_supported(store: Any) -> None:
    caps = store.capabilities
    assert isinstance(caps, frozenset) and CORE <= caps
    optional = {
        CAP_RETENTION: lambda: store.set_retention(30 * 86400 * 10**9) or store.retention(),
        CAP_DEADLETTERS: lambda: store.deadletter_counts(),
        CAP_INGEST_COMMIT: lambda: store.commit_ingest(IngestCommit(Batch.empty())),
    }
    for cap, call in optional.items():
        if cap in caps:
            call()
        else:
            with pytest.raises(NotSupported, match=f"does not support {cap}"):
                call()
    if CAP_RETENTION in caps:
        assert store.retention() == 30 * 86400 * 10**9
        store.set_retention(None)
        assert store.retention() is None
