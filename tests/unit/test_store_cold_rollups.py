"""Rollups in Parquet files: closed months of the 1-h tier in month files, closed days of the
1-min tier in day files (store/rollups.py, store/cold_rollups.py).

Each test writes a month and a bit of points every 10 minutes, compacts so that the month closes
into its files, and then checks the rules of design 003 against a recompute from what was written: late
points and deletes reach a month file (override and tombstone rows in the table, merged at the
next compaction), retention drops whole month files and hides the rest of a straddling month,
and a compaction that crashes after renaming a month file neither fails to open nor counts a
bucket twice.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from greennanny.store.cold import DAY_NS, ColdTier
from greennanny.store.cold_rollups import RollupMonths, _groups, month_of, month_start
from greennanny.store.points import HI, HOUR_NS, LO, TIER_COLS, TIERS, PointTables

NOV = 1_698_796_800 * 10**9  # 2023-11-01T00:00Z
DEC = 1_701_388_800 * 10**9
STEP = 10 * 60 * 10**9
SERIES = (1, 2)


def open_tables(tmp: Path) -> PointTables:
    return PointTables(duckdb.connect(str(tmp / "s.duckdb")), ColdTier(tmp / "s.cold"))


class Truth:
    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], int] = {}

    def put(self, pt: PointTables, sid: np.ndarray, ts: np.ndarray, v: np.ndarray) -> None:
        pt.write(sid.astype(np.int32), ts.astype(np.int64), v.astype(np.int64), np.ones(len(ts), bool),
                 np.zeros(len(ts), np.uint8))
        for s, t, x in zip(sid.tolist(), ts.tolist(), v.tolist(), strict=True):
            self.rows[(s, t)] = x

    def delete(self, pt: PointTables, lo: int, hi: int, series: list[int] | None) -> None:
        pt.delete(lo, hi, series)
        for k in [k for k in self.rows if lo <= k[1] < hi and (series is None or k[0] in series)]:
            del self.rows[k]

    def rollup(self, name: str, until: int, floor: int = LO) -> list[list[int]]:
        df = pd.DataFrame([(s, t, v) for (s, t), v in self.rows.items()], columns=["series_id", "ts", "v"])
        w = TIERS[name]
        df = df[(df.ts < until)].assign(bucket=lambda d: d.ts - d.ts % w)
        df = df[df.bucket >= floor].sort_values(["series_id", "ts"])
        g = df.groupby(["series_id", "bucket"])
        out = g.agg(n=("v", "size"), vmin=("v", "min"), vmax=("v", "max"), vsum=("v", "sum"), last_ts=("ts", "max"),
                    last_v=("v", "last"), rows=("v", "size"), first_any=("ts", "min"), last_any=("ts", "max"))
        return out.reset_index()[TIER_COLS[name]].astype(np.int64).values.tolist()


def check(pt: PointTables, truth: Truth, floor: dict[str, int] | None = None) -> None:
    for name in TIERS:
        got = pt.rollup(name, LO, HI)[TIER_COLS[name]].astype(np.int64).values.tolist()
        assert got == truth.rollup(name, pt.until, (floor or {}).get(name, LO)), name
    for sid in SERIES:  # the one-series path reads month files by row group
        b = pt.bucketed(LO, pt.until, HOUR_NS, series_id=sid)
        want = [r for r in truth.rollup("1h", pt.until, (floor or {}).get("1h", LO)) if r[0] == sid]
        assert b[["bucket", "n", "vmin", "vmax", "vsum", "last_v"]].astype(np.int64).values.tolist() == \
            [[r[1], r[2], r[3], r[4], r[5], r[7]] for r in want]
    summary, args = pt.summary_sql()
    rows = dict(pt.con.execute(f"SELECT series_id, rows FROM ({summary})", args).fetchall())
    assert rows == {s: sum(1 for k in truth.rows if k[0] == s) for s in SERIES if any(k[0] == s for k in truth.rows)}


def forty_days(pt: PointTables, truth: Truth) -> None:
    ts = NOV + np.arange(40 * DAY_NS // STEP, dtype=np.int64) * STEP
    for s in SERIES:
        truth.put(pt, np.full(len(ts), s), ts, (np.arange(len(ts)) * 7 + s * 1000) % 997)
    pt.compact(NOV + 38 * DAY_NS)  # November closes: the watermark is Dec 9


def table_rows(pt: PointTables, name: str, lo: int, hi: int) -> int:
    return int(pt.con.execute(f"SELECT count(*) FROM rollup_{name} WHERE bucket >= ? AND bucket < ?",
                              [lo, hi]).fetchall()[0][0])


def days_of(lo: int, hi: int) -> list[int]:
    return list(range(lo // DAY_NS, hi // DAY_NS))


def test_a_closed_month_moves_to_its_files_and_reads_the_same(tmp_path: Path) -> None:
    pt, truth = open_tables(tmp_path), Truth()
    forty_days(pt, truth)
    nov = month_of(NOV)
    assert pt.rollups.months.months("1h") == [nov]
    assert pt.rollups.months.months("1m") == [] and pt.rollups.months.days("1m") == days_of(NOV, pt.until)
    assert table_rows(pt, "1h", NOV, DEC) == table_rows(pt, "1m", NOV, pt.until) == 0
    assert table_rows(pt, "1h", DEC, pt.until) == len(SERIES) * 8 * 24  # the open month stays in the table
    check(pt, truth)
    pt.con.close()
    check(open_tables(tmp_path), truth)  # and after a reopen


def test_late_points_into_a_closed_month_win_and_merge_at_the_next_compaction(tmp_path: Path) -> None:
    pt, truth = open_tables(tmp_path), Truth()
    forty_days(pt, truth)
    late = NOV + 10 * DAY_NS + 5 * HOUR_NS + np.array([0, 60, 90], np.int64) * 10**9  # two new instants, one replaced
    truth.put(pt, np.array([1, 1, 1]), late, np.array([5000, 6000, 7000]))
    assert table_rows(pt, "1h", NOV, DEC) == 1 and table_rows(pt, "1m", NOV, DEC) == 2  # overrides
    check(pt, truth)
    pt.compact(NOV + 38 * DAY_NS)  # nothing new to move, but the overrides merge into the files
    assert table_rows(pt, "1h", NOV, DEC) == table_rows(pt, "1m", NOV, DEC) == 0
    check(pt, truth)


def test_deletes_in_a_closed_month_leave_tombstones_until_the_merge(tmp_path: Path) -> None:
    pt, truth = open_tables(tmp_path), Truth()
    forty_days(pt, truth)
    lo = NOV + 20 * DAY_NS + 3 * HOUR_NS
    truth.delete(pt, lo, lo + 2 * HOUR_NS + 20 * 60 * 10**9, [2])  # two whole hours and part of a third
    assert int(pt.con.execute("SELECT count(*) FROM rollup_1h WHERE rows = 0").fetchall()[0][0]) == 2
    check(pt, truth)
    truth.delete(pt, NOV + 25 * DAY_NS, NOV + 26 * DAY_NS, None)  # a whole day, every series
    check(pt, truth)
    pt.compact(NOV + 38 * DAY_NS)
    assert table_rows(pt, "1h", NOV, DEC) == table_rows(pt, "1m", NOV, DEC) == 0
    check(pt, truth)


def test_retention_drops_whole_month_files_and_hides_the_rest_of_a_straddling_month(tmp_path: Path) -> None:
    pt, truth = open_tables(tmp_path), Truth()
    ts = NOV + np.arange(75 * DAY_NS // STEP, dtype=np.int64) * STEP  # Nov, Dec and half of Jan
    truth.put(pt, np.full(len(ts), 1), ts, np.arange(len(ts)) % 500)
    pt.compact(NOV + 73 * DAY_NS)
    assert pt.rollups.months.months("1h") == [month_of(NOV), month_of(DEC)]
    assert pt.rollups.months.days("1m") == days_of(NOV, pt.until)
    cut = DEC + 10 * DAY_NS + 5 * HOUR_NS
    before = pt.rollup("1m", LO, cut)
    assert pt.drop_rollups_before("1m", cut) == len(before) > 0
    assert pt.rollups.months.days("1m") == days_of(cut - cut % DAY_NS, pt.until)  # the cut's day stays
    assert pt.rollup("1m", LO, cut).empty
    check(pt, truth, {"1m": cut})
    assert pt.drop_rollups_before("1m", cut) == 0
    pt.con.close()
    pt = open_tables(tmp_path)  # the floor is kept in tier_state
    check(pt, truth, {"1m": cut})
    assert pt.drop_rollups_before("1m", month_start(month_of(DEC) + 1)) == 31 * 24 * 60 // 10 - 10 * 24 * 6 - 5 * 6
    assert pt.rollups.months.days("1m") == days_of(month_start(month_of(DEC) + 1), pt.until)


@pytest.mark.parametrize("case", ["close", "merge"])
def test_a_compaction_that_dies_after_renaming_month_files_opens_and_counts_once(tmp_path: Path, case: str) -> None:
    """The compaction's transaction never commits (the process died): its month files are on
    disk, its table deletes and watermark are not. "close": the dead compaction also built
    November's last days, so the file holds buckets at and after the surviving watermark;
    "merge": it merged late points of the closed November that the table still holds."""
    pt, truth = open_tables(tmp_path), Truth()
    ts = NOV + np.arange(40 * DAY_NS // STEP, dtype=np.int64) * STEP
    for s in SERIES:
        truth.put(pt, np.full(len(ts), s), ts, (np.arange(len(ts)) * 3 + s) % 911)
    pt.compact(NOV + (29 if case == "close" else 33) * DAY_NS)
    if case == "merge":
        assert pt.rollups.months.months("1h") == [month_of(NOV)]
        truth.put(pt, np.array([2, 2]), NOV + 3 * DAY_NS + np.array([0, 30], np.int64) * 10**9, np.array([1, 2]))
        truth.delete(pt, NOV + 4 * DAY_NS, NOV + 4 * DAY_NS + HOUR_NS, [1])
    until = pt.until
    pt.con.execute("BEGIN TRANSACTION")
    pt.compact(NOV + 34 * DAY_NS)
    assert pt.rollups.months.months("1h") == [month_of(NOV)] and table_rows(pt, "1h", NOV, DEC) == 0
    pt.con.close()  # dies: the transaction is rolled back
    pt = open_tables(tmp_path)
    assert pt.until == until and table_rows(pt, "1h", NOV, DEC) > 0
    check(pt, truth)
    truth.delete(pt, until, until + DAY_NS, [1])  # hot rows the dead compaction had rolled up go
    check(pt, truth)
    pt.compact(NOV + 34 * DAY_NS)
    assert table_rows(pt, "1h", NOV, DEC) == 0
    check(pt, truth)


def test_stats_count_month_file_rows_and_bytes(tmp_path: Path) -> None:
    from greennanny.store.duckdb import DuckDBStore

    store = DuckDBStore(tmp_path / "s.duckdb")
    pt, truth = store.tiers, Truth()
    forty_days(pt, truth)
    s = store.stats()
    assert s["rollup_1h_rows"] == len(truth.rollup("1h", pt.until)) and s["rollup_1h_months"] == 1
    assert s["rollup_1m_days"] == len(pt.rollups.months.days("1m")) == len(days_of(NOV, pt.until))
    assert s["rollup_1m_months"] == 0  # the 1-min tier keeps day files
    from greennanny.cli.db_cmd import _ROWS

    assert {key for _, key in _ROWS} <= set(s)  # every row `greennanny db stats` shows is in the stats
    assert s["rollup_1m_file_bytes"] == pt.rollups.months.bytes("1m") > 0
    assert s["rollup_1m_bytes"] >= s["rollup_1m_file_bytes"]
    assert s["cold_bytes"] == pt.cold.bytes() and s["cold_days"] == len(pt.cold.days())
    store.close()


def test_one_series_reads_follow_a_month_file_replaced_by_another_process(tmp_path: Path) -> None:
    """A month file is kept open for one-series reads while it is unchanged; a file written by
    another opener (device, inode, size or mtime differ) is opened again, and a file written
    without the series index (before it existed) is indexed from its series_id column."""
    pt, truth = open_tables(tmp_path), Truth()
    forty_days(pt, truth)
    months, nov = pt.rollups.months, month_of(NOV)
    want = pt.rollup("1h", NOV, DEC)
    one = months.series_rows("1h", 2, NOV, DEC, TIER_COLS["1h"])
    assert one.to_pandas().astype(np.int64).values.tolist() == \
        want[want.series_id == 2][TIER_COLS["1h"]].astype(np.int64).values.tolist()
    other = RollupMonths(tmp_path / "s.cold")  # another process merges a changed month
    changed = pq.read_table(other.path("1h", nov))
    changed = changed.set_column(changed.schema.get_field_index("vmax"), "vmax",
                                 pa.array(np.full(changed.num_rows, 123456, np.int64)))
    _, seen = months.series_rows_as_of("1h", 1, NOV, DEC, ["bucket", "vmax"])
    assert not months.changed(seen)
    other.write_month("1h", nov, changed)
    assert months.changed(seen)
    assert set(months.series_rows("1h", 1, NOV, DEC, ["vmax"]).column(0).to_pylist()) == {123456}
    pq.write_table(changed.slice(0, changed.num_rows - 5), other.path("1h", nov))  # no index, no aligned groups
    got = months.series_rows("1h", 2, NOV, DEC, ["series_id", "bucket"])
    assert got.column("series_id").to_pylist() == [2] * (30 * 24 - 5)
    assert got.column("bucket").to_pylist() == changed.column("bucket").to_pylist()[30 * 24:-5]
    assert months.series_rows("1h", 9, NOV, DEC, ["bucket"]).num_rows == 0  # a series the file lacks
    other.drop_before("1h", nov + 1)
    assert months.changed(seen) and months.series_rows("1h", 1, NOV, DEC, ["bucket"]).num_rows == 0
    months.close()


def test_month_file_rows_read_ahead_of_the_select_are_read_again_if_the_files_changed(tmp_path: Path,
                                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """bucketed_one reads the month files while DuckDB runs its SELECT: rows read from files
    that a compaction replaced before the SELECT's snapshot must not be used (the merged table
    rows are gone from the table by then)."""
    pt, truth = open_tables(tmp_path), Truth()
    forty_days(pt, truth)
    months = pt.rollups.months
    stale = months.series_rows_as_of("1h", 1, LO, pt.until, list(TIER_COLS["1h"][1:6]))  # before the merge
    late = NOV + 3 * DAY_NS + np.array([7, 8, 9], np.int64) * HOUR_NS
    truth.put(pt, np.array([1, 1, 1]), late, np.array([9000, 9100, 9200]))
    pt.compact(NOV + 38 * DAY_NS)  # the late overrides merge into November's file and leave the table
    fresh, calls = RollupMonths.series_rows_as_of, []

    def ahead(self: RollupMonths, *a: object) -> object:  # the first read is the one ahead of the SELECT
        calls.append(a)
        return stale if len(calls) == 1 else fresh(self, *a)

    monkeypatch.setattr(RollupMonths, "series_rows_as_of", ahead)
    got = pt.bucketed_one(LO, HI, HOUR_NS, 1, last=False)
    assert len(calls) == 2  # read ahead, found stale, read again
    want = pt.bucketed(LO, HI, HOUR_NS, series_id=1)
    assert got is not None and got["vmax"].tolist() == want["vmax"].tolist()
    assert {9000, 9100, 9200} <= set(got["vmax"].tolist())


def test_month_files_keep_whole_series_in_a_row_group() -> None:
    assert _groups(np.array([0, 5, 10, 40, 42, 50]), 10) == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50)]
    assert _groups(np.array([0, 7, 14, 21]), 16) == [(0, 14), (14, 21)]
    assert _groups(np.array([0, 44640, 89280]), 16384)[:3] == [(0, 16384), (16384, 32768), (32768, 49152)]
