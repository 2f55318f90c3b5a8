"""Compaction, retention and statistics of the embedded store, through the API the CLI uses."""

from __future__ import annotations

from pathlib import Path

import duckdb
import httpx
import numpy as np
import pytest

from greennanny.api.app import create_app
from greennanny.cli.backend import InProcessTransport
from greennanny.config import config_from_dict
from greennanny.errors import ConfigError, SchemaVersionError
from greennanny.model import Batch, SeriesKey
from greennanny.store.cold import DAY_NS
from greennanny.store.duckdb import DuckDBStore, Retention

DAY0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00Z
STEP = 600 * 10**9
KEY = SeriesKey("gh", "house-1", "probe-1", "air_temperature")


def ten_days(store: DuckDBStore) -> np.ndarray:
    n = 10 * 144
    ts = DAY0 + np.arange(n, dtype=np.int64) * STEP
    store.write(Batch.from_columns([KEY], np.zeros(n, np.int32), ts, 20 + (np.arange(n) % 144) / 10))
    return ts


def test_maintain_compacts_closed_days_and_keeps_every_point_and_value(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "s.duckdb", retention=Retention(raw_days=0, rollup_1m_days=0, compact_after_h=48))
    ts = ten_days(store)
    now = int(ts[-1]) + STEP
    before = store.query(1, None, None)
    hourly = store.query(1, None, None, 3600 * 10**9)
    done = store.maintain(now)
    # days 0-7 end at least 48 h before `now` (the end of day 9): eight days go cold
    assert done["days_compacted"] == 8
    s = store.stats()
    assert s["cold_days"] == 8 and s["cold_points"] == 8 * 144 and s["hot_points"] == 2 * 144
    assert s["raw_points"] == len(ts) and s["cold_bytes"] > 0
    after = store.query(1, None, None)
    assert after["ts"].tolist() == before["ts"].tolist()
    assert after["value"].tolist() == before["value"].tolist()  # exact decimals back from integers
    assert store.query(1, None, None, 3600 * 10**9).equals(hourly)
    store.close()


def test_retention_removes_old_raw_days_but_the_hourly_rollups_stay(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "s.duckdb", retention=Retention(raw_days=3, rollup_1m_days=3, rollup_1h_days=0))
    ts = ten_days(store)
    now = int(ts[-1]) + STEP
    done = store.maintain(now)
    raw = store.query(1, None, None)
    assert done["raw_removed"] == len(ts) - len(raw) > 0  # points, hot and cold (not day files)
    assert int(raw["ts"].min()) >= now - 3 * DAY_NS
    hourly = store.query(1, None, None, 3600 * 10**9)
    assert int(hourly["ts"].min()) == DAY0, "1 h rollups are kept forever"
    assert int(hourly["count"].sum()) == len(ts)
    assert store.series()[0].points == len(ts), "the listing reads the rollups, which outlive raw points"
    store.close()


def test_rollups_must_outlive_raw_points_in_the_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rollup_1m_days=30"):
        config_from_dict({"store": {"retention": {"raw_days": 90, "rollup_1m_days": 30}}}, base_dir=tmp_path)


def test_db_stats_and_maintain_routes(tmp_path: Path) -> None:
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path)}}, base_dir=tmp_path)
    store = DuckDBStore(cfg.store_path, retention=Retention(raw_days=0, rollup_1m_days=0))
    ts = ten_days(store)
    with httpx.Client(transport=InProcessTransport(create_app(cfg, store)), base_url="http://local") as c:
        s = c.get("/db/stats").json()
        assert s["raw_points"] == len(ts) and s["series"] == 1 and s["cold_days"] == 0
        assert s["rollup_1h_rows"] == 0, "rollups are built when a day is compacted"
        assert c.get("/series").json()[0]["points"] == len(ts), "the hot window is listed from raw rows"
        done = c.post("/db/maintain").json()  # wall clock: every 2026-01 day is long closed
        assert done["days_compacted"] == 10
        after = c.get("/db/stats").json()
        assert after["cold_points"] == len(ts) and after["rollup_1h_rows"] == 10 * 24
        assert c.get("/series").json()[0]["points"] == len(ts)
    store.close()


def test_a_store_file_of_another_schema_version_is_refused_naming_both(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("CREATE TABLE points (series_id INTEGER, ts BIGINT, value DOUBLE, quality UTINYINT)")
    con.close()
    with pytest.raises(SchemaVersionError, match="schema version 1; this greennanny reads version 2"):
        DuckDBStore(path)
    con = duckdb.connect(str(path))
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    con.close()
    assert tables == {"meta", "points"}, "a refused file is left as it was"


def test_a_value_too_large_for_its_resolution_is_set_aside_with_a_reason(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "s.duckdb")
    res = store.write(Batch.from_columns([KEY], np.zeros(2, np.int32), np.array([DAY0, DAY0 + STEP]),
                                         np.array([21.5, 1e300]), np.array([0, 2], np.uint8)))
    assert res.written == 1
    (reason,) = res.rejected.reasons.values()
    assert reason.startswith("not_representable: air_temperature=1e+300")
    store.close()
