"""Compaction's rollups from numpy, its 1-min day files and the files it writes on a thread.

The numpy build (store/rollup_build.py) must give exactly the rows of the SQL that defines a
rollup row (`rollups._rollup_select`, which late writes still use): checked on random days with
missing, flagged and quarantined rows, NULL values, rows in any order and values near the int64
bound (which go to the SQL). Then what the day files add to crash safety: a compaction that dies
after renaming its day files (or whose file write fails on the writer thread, a full disk) leaves
a store that opens and reads as before, and the next compaction writes them again; a day file
left for a day that now holds nothing is removed; 1-min month files written by the version
before day files are still read and take late points.
"""

from __future__ import annotations

import errno
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greennanny.store import cold_rollups
from greennanny.store.cold import DAY_NS, ColdTier, sort_rows
from greennanny.store.cold_rollups import SCHEMAS, RollupMonths, month_of
from greennanny.store.points import HI, HOUR_NS, LO, MIN_NS, TIER_COLS, PointTables
from greennanny.store.rollup_build import day_rollups, exact_in_int64
from greennanny.store.rollups import _rollup_select

NOV = 1_698_796_800 * 10**9  # 2023-11-01T00:00Z
STEP = 10 * 60 * 10**9


def sql_rollups(raw: pa.Table, name: str, width: int) -> list[dict[str, object]]:
    con = duckdb.connect()
    con.register("_raw", raw)
    got = con.sql(_rollup_select(name, width, "_raw r") + " ORDER BY 1, 2").to_arrow_table()
    return got.rename_columns(SCHEMAS[name].names).cast(SCHEMAS[name]).to_pylist()


rows_st = st.lists(st.tuples(st.integers(1, 4), st.integers(-3 * 60, 26 * 60), st.integers(-50, 50),
                             st.sampled_from([0, 0, 0, 1, 2, 3]), st.booleans()), min_size=1, max_size=120)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_st, seconds=st.integers(0, 59))
def test_numpy_rollups_equal_the_sql_definition(rows: list[tuple[int, int, int, int, bool]], seconds: int) -> None:
    seen: dict[tuple[int, int], tuple[int | None, int]] = {}
    for sid, minute, v, q, null in rows:  # unique (series, ts), as the raw tier holds them
        seen[(sid, NOV + minute * MIN_NS + seconds * 10**9)] = (None if null or q in (1, 3) else v, q)
    keys = list(seen)  # in arrival order, not sorted
    raw = pa.table({"series_id": pa.array([k[0] for k in keys], pa.int32()), "ts": pa.array([k[1] for k in keys], pa.int64()),
                    "v": pa.array([seen[k][0] for k in keys], pa.int64()),
                    "quality": pa.array([seen[k][1] for k in keys], pa.uint8())})
    ordered = sort_rows(raw)
    for name, width, listing in (("1m", MIN_NS, False), ("1h", HOUR_NS, True)):
        assert day_rollups(ordered, width, listing=listing).to_pylist() == sql_rollups(raw, name, width), name


def test_values_near_the_int64_bound_are_rolled_up_by_the_sql(tmp_path: Path) -> None:
    big = 2**62 - 1
    raw = pa.table({"series_id": pa.array([1, 1, 1], pa.int32()), "ts": pa.array([NOV, NOV + 1, NOV + 2], pa.int64()),
                    "v": pa.array([big, big, big], pa.int64()), "quality": pa.array([0, 0, 0], pa.uint8())})
    assert not exact_in_int64(raw)
    pt = PointTables(duckdb.connect(str(tmp_path / "s.duckdb")), ColdTier(tmp_path / "s.cold"))
    pt.write(raw.column("series_id").to_numpy(), raw.column("ts").to_numpy(), raw.column("v").to_numpy(),
             np.ones(3, bool), np.zeros(3, np.uint8))
    pt.compact(NOV + 3 * DAY_NS)
    assert pt.rollup("1h", LO, HI)["vsum"].tolist() == [float(3 * big)]  # the HUGEINT sum, rounded once


def tables(tmp: Path) -> PointTables:
    tmp.mkdir(parents=True, exist_ok=True)
    return PointTables(duckdb.connect(str(tmp / "s.duckdb")), ColdTier(tmp / "s.cold"))


def fill(pt: PointTables, days: int, series: tuple[int, ...] = (1, 2)) -> None:
    ts = NOV + np.arange(days * DAY_NS // STEP, dtype=np.int64) * STEP
    for s in series:
        v = (np.arange(len(ts)) * 7 + s * 100) % 613
        pt.write(np.full(len(ts), s, np.int32), ts, v.astype(np.int64), np.ones(len(ts), bool), np.zeros(len(ts), np.uint8))


def everything(pt: PointTables) -> dict[str, list[list[int]]]:
    return {name: pt.rollup(name, LO, HI)[TIER_COLS[name]].astype(np.int64).values.tolist() for name in ("1m", "1h")}


def test_a_compaction_that_dies_after_renaming_day_files_opens_and_counts_once(tmp_path: Path) -> None:
    pt = tables(tmp_path)
    fill(pt, 12)
    pt.compact(NOV + 8 * DAY_NS)
    until, before = pt.until, everything(pt)
    pt.con.execute("BEGIN TRANSACTION")
    pt.compact(NOV + 11 * DAY_NS)  # writes day files of days 8-10, never commits
    assert pt.rollups.months.days("1m")[-1] == NOV // DAY_NS + 10
    pt.con.close()
    pt = tables(tmp_path)
    assert pt.until == until and everything(pt) == before  # the files after the watermark are not read
    pt.delete(until, until + DAY_NS, [1])  # the dead compaction's day 8 of series 1 goes
    pt.compact(NOV + 11 * DAY_NS)
    fresh = tables(tmp_path / "fresh")
    fill(fresh, 12)
    fresh.delete(until, until + DAY_NS, [1])
    fresh.compact(NOV + 11 * DAY_NS)
    assert everything(pt) == everything(fresh)


def test_a_day_file_left_for_a_day_that_now_holds_nothing_is_removed(tmp_path: Path) -> None:
    pt = tables(tmp_path)
    fill(pt, 6)
    pt.compact(NOV + 4 * DAY_NS)
    pt.con.execute("BEGIN TRANSACTION")
    pt.compact(NOV + 5 * DAY_NS)  # writes day 4's file, never commits
    pt.con.close()
    pt = tables(tmp_path)
    assert NOV // DAY_NS + 4 in pt.rollups.months.days("1m")
    pt.delete(NOV + 4 * DAY_NS, NOV + 5 * DAY_NS, None)
    pt.compact(NOV + 5 * DAY_NS)
    assert NOV // DAY_NS + 4 not in pt.rollups.months.days("1m")
    assert pt.rollup("1m", NOV + 4 * DAY_NS, NOV + 5 * DAY_NS).empty


def test_a_file_write_that_fails_on_the_writer_thread_rolls_the_compaction_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from greennanny.errors import DiskFull, StoreUnavailable
    from greennanny.store.duckdb import DuckDBStore

    store = DuckDBStore(tmp_path / "s.duckdb")
    fill(store.tiers, 8)
    store.compact(NOV + 4 * DAY_NS)
    until, before, rows = store.tiers.until, everything(store.tiers), store.count_points()

    def full(*_: object, **__: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RollupMonths, "write_day_file", full)
    with pytest.raises((DiskFull, StoreUnavailable)):
        store.compact(NOV + 7 * DAY_NS)
    assert store.tiers.until == until and everything(store.tiers) == before and store.count_points() == rows
    assert not list((tmp_path / "s.duckdb.cold").rglob("*.tmp"))
    monkeypatch.undo()
    store.compact(NOV + 7 * DAY_NS)
    assert store.tiers.until == NOV + 7 * DAY_NS and store.count_points() == rows
    store.close()
    reopened = PointTables(duckdb.connect(str(tmp_path / "s.duckdb")), ColdTier(tmp_path / "s.duckdb.cold"))
    fresh = tables(tmp_path / "fresh")
    fill(fresh, 8)
    fresh.compact(NOV + 4 * DAY_NS)
    fresh.compact(NOV + 7 * DAY_NS)
    assert everything(reopened) == everything(fresh)


def test_one_minute_month_files_of_the_version_before_day_files_are_read_and_take_late_points(tmp_path: Path) -> None:
    pt = tables(tmp_path)
    fill(pt, 40)
    pt.compact(NOV + 38 * DAY_NS)
    want = everything(pt)
    months, nov = pt.rollups.months, month_of(NOV)
    merged = pt.rollups.rows("1m", NOV, NOV + 30 * DAY_NS)  # what that version made: November in one file
    months.write_month("1m", nov, pa.Table.from_pandas(merged[TIER_COLS["1m"]], preserve_index=False))
    for d in [d for d in months.days("1m") if d < (NOV + 30 * DAY_NS) // DAY_NS]:
        months._unlink_day("1m", d)
    pt.con.close()
    pt = tables(tmp_path)
    assert pt.rollups.months.months("1m") == [nov] and everything(pt) == want
    late = NOV + 3 * DAY_NS + 30 * 10**9
    pt.write(np.array([1], np.int32), np.array([late]), np.array([999]), np.ones(1, bool), np.zeros(1, np.uint8))
    pt.compact(NOV + 38 * DAY_NS)  # the late row merges into November's month file
    assert int(pt.con.execute("SELECT count(*) FROM rollup_1m").fetchall()[0][0]) == 0
    row = pt.rollup("1m", late - 30 * 10**9, late + 30 * 10**9, series_id=1)
    assert row[["n", "vmax"]].values.tolist() == [[2, 999]]


def test_one_series_reads_keep_a_bounded_number_of_files_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cold_rollups, "_OPEN_FILES", 5)
    pt = tables(tmp_path)
    fill(pt, 12)
    pt.compact(NOV + 11 * DAY_NS)
    months = pt.rollups.months
    assert len(months.days("1m")) == 11
    got = months.series_rows("1m", 2, LO, pt.until, TIER_COLS["1m"])
    assert got.num_rows == 11 * DAY_NS // STEP and len(months._readers) == 5
    want = pt.rollup("1m", LO, pt.until, series_id=2)[TIER_COLS["1m"]].astype(np.int64).values.tolist()
    assert got.to_pandas().astype(np.int64).values.tolist() == want
    months.close()
