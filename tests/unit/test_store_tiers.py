"""Hot rows, cold days and rollups against a plain model of what was written (docs/design/003).

Random runs of writes (duplicates, late points for compacted days, missing rows), compactions and
deletes; after each step the raw rows read back, the replaced counts and both rollup tiers (table
and month files, read for all series and for one) must equal what a dictionary of the last write
per (series, ts) gives. Runs start mid-month or two days before a month ends, so compactions close
a month into its files and later writes and deletes reach buckets that live in a month file.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greennanny.store.cold import DAY_NS, ColdTier
from greennanny.store.points import HI, LO, TIER_COLS, TIERS, PointTables, scale_of

T0 = 1_700_006_400 * 10**9  # 2023-11-15T00:00Z, a day boundary
MONTH_END = 1_701_216_000 * 10**9  # 2023-11-29T00:00Z: three days of rows span the close of November
STEP = 7 * 60 * 10**9  # 7 min: buckets of 1 min and 1 h both see several points


class Model:
    """The truth: last write wins per (series, ts); rollups recomputed from it."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], tuple[int | None, int]] = {}

    def write(self, rows: list[tuple[int, int, int | None, int]]) -> int:
        replaced, seen = 0, set()
        for sid, ts, v, q in rows:
            if (sid, ts) in self.rows or (sid, ts) in seen:
                replaced += 1
            seen.add((sid, ts))
            self.rows[(sid, ts)] = (v, q)
        return replaced

    def delete(self, lo: int, hi: int, series: list[int] | None) -> int:
        gone = [k for k in self.rows if lo <= k[1] < hi and (series is None or k[0] in series)]
        for k in gone:
            del self.rows[k]
        return len(gone)

    def frame(self) -> pd.DataFrame:
        if not self.rows:
            return pd.DataFrame(columns=["series_id", "ts", "v", "quality"])
        return pd.DataFrame([(s, t, v, q) for (s, t), (v, q) in self.rows.items()],
                            columns=["series_id", "ts", "v", "quality"]).sort_values(["series_id", "ts"])

    def rollup(self, width: int, tier: str) -> pd.DataFrame:
        cols = TIER_COLS[tier]
        df = self.frame()
        if df.empty:
            return pd.DataFrame(columns=cols)
        df["bucket"] = df.ts - df.ts % width
        alls = df.groupby(["series_id", "bucket"]).agg(rows=("ts", "size"), first_any=("ts", "min"),
                                                       last_any=("ts", "max")).reset_index()
        srv = df[df.quality.isin([0, 2]) & df.v.notna()].copy()
        srv["v"] = srv.v.astype(np.int64)
        g = srv.sort_values("ts").groupby(["series_id", "bucket"])
        served = g.agg(n=("v", "size"), vmin=("v", "min"), vmax=("v", "max"), vsum=("v", "sum"),
                       last_ts=("ts", "max"), last_v=("v", "last")).reset_index()
        out = alls.merge(served, on=["series_id", "bucket"], how="left" if tier == "1h" else "inner")
        out["n"] = out["n"].fillna(0)
        return out[cols].sort_values(["series_id", "bucket"]).reset_index(drop=True)


def _norm(df: pd.DataFrame, cols: list[str]) -> list[list[int | None]]:
    return [[None if pd.isna(x) else int(x) for x in row] for row in df[cols].itertuples(index=False)]


def read_raw(pt: PointTables) -> pd.DataFrame:
    sql, args = pt.raw_sql(LO, HI)
    return pt.con.execute(f"SELECT * FROM ({sql}) ORDER BY series_id, ts", args).df()


def check(pt: PointTables, model: Model) -> None:
    got = read_raw(pt)
    want = model.frame()
    assert len(got) == len(want)
    if len(want):
        assert got.series_id.tolist() == want.series_id.tolist()
        assert got.ts.tolist() == want.ts.tolist()
        assert [None if pd.isna(x) else int(x) for x in got.v] == [None if pd.isna(x) else int(x) for x in want.v]
    for name, width in TIERS.items():
        r = pt.rollup(name, LO, HI)
        w = model.rollup(width, name)
        w = w[w.bucket < pt.until]  # rollups cover what lies behind the watermark (the compacted days)
        assert len(r) == len(w), name
        cols = TIER_COLS[name]

        assert _norm(r, cols) == _norm(w, cols), name
    # One series' hourly reads take its month-file rows by row group (cold_rollups.series_rows).
    df = model.frame()
    for sid in (1, 2, 3):
        got_b = pt.bucketed(LO, HI, TIERS["1h"], series_id=sid)
        srv = df[(df.series_id == sid) & df.quality.isin([0, 2]) & df.v.notna()].copy() if len(df) else df
        if srv.empty:
            assert got_b.empty
            continue
        srv["v"] = srv.v.astype(np.int64)
        srv["bucket"] = srv.ts - srv.ts % TIERS["1h"]
        want_b = srv.sort_values("ts").groupby("bucket").agg(n=("v", "size"), vmin=("v", "min"), vmax=("v", "max"),
                                                             vsum=("v", "sum"), last_v=("v", "last")).reset_index()
        cols_b = ["bucket", "n", "vmin", "vmax", "vsum", "last_v"]
        assert got_b[cols_b].astype(np.int64).values.tolist() == want_b[cols_b].astype(np.int64).values.tolist()


@pytest.fixture
def tables(tmp_path: Path) -> PointTables:
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    return PointTables(con, ColdTier(tmp_path / "s.cold"))


row = st.tuples(st.integers(1, 3), st.integers(0, 3 * 24 * 60 // 7), st.one_of(st.none(), st.integers(-500, 5000)),
                st.sampled_from([0, 0, 0, 1, 2, 3]))
step = st.one_of(
    st.tuples(st.just("write"), st.lists(row, min_size=1, max_size=40)),
    st.tuples(st.just("compact"), st.tuples(st.integers(0, 4), st.integers(0, 2))),  # (days moved, rolled up beyond)
    st.tuples(st.just("delete"), st.tuples(st.integers(0, 600), st.integers(1, 400), st.booleans())),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=6), start=st.sampled_from([T0, MONTH_END]))
def test_tiers_and_rollups_equal_the_model(tmp_path_factory: pytest.TempPathFactory, steps: list, start: int) -> None:
    tmp = tmp_path_factory.mktemp("tiers")
    pt = PointTables(duckdb.connect(str(tmp / "s.duckdb")), ColdTier(tmp / "s.cold"))
    model = Model()
    for kind, arg in steps:
        if kind == "write":
            rows = [(s, start + k * STEP, None if q == 1 else v, q) for s, k, v, q in arg]
            rows = [(s, t, v if v is not None or q == 1 else 0, q) for s, t, v, q in rows]
            sid = np.array([r[0] for r in rows], np.int32)
            ts = np.array([r[1] for r in rows], np.int64)
            valid = np.array([r[2] is not None for r in rows])
            v = np.array([r[2] or 0 for r in rows], np.int64)
            q = np.array([r[3] for r in rows], np.uint8)
            res = pt.write(sid, ts, v, valid, q)
            want_replaced = model.write(rows)
            assert res.replaced == want_replaced
            assert res.written == len({(r[0], r[1]) for r in rows})
        elif kind == "compact":  # as the node: rollups up to now, raw days moved once older (the kept rows between)
            pt.compact(start + arg[0] * DAY_NS, start + (arg[0] + arg[1]) * DAY_NS)
        else:
            start_min, len_min, one = arg
            lo = start + start_min * STEP
            hi = lo + len_min * 60 * 10**9 * 7
            series = [2] if one else None
            assert pt.delete(lo, hi, series) == model.delete(lo, hi, series)
        check(pt, model)


def test_late_point_for_a_compacted_day_wins_and_is_merged_at_the_next_compaction(tables: PointTables) -> None:
    pt = tables
    ts = np.array([T0, T0 + STEP], np.int64)
    pt.write(np.array([1, 1], np.int32), ts, np.array([100, 200], np.int64), np.array([True, True]), np.zeros(2, np.uint8))
    assert pt.compact(T0 + DAY_NS) == 1
    assert pt.hot_rows() == 0 and pt.cold.days() == [T0 // DAY_NS]
    res = pt.write(np.array([1], np.int32), ts[:1], np.array([150], np.int64), np.array([True]), np.zeros(1, np.uint8))
    assert res.replaced == 1, "the late point replaces the cold row"
    assert read_raw(pt).v.tolist() == [150, 200]
    assert pt.rollup("1h", LO, HI).vsum.tolist() == [350.0]
    pt.compact(T0 + DAY_NS)
    assert pt.hot_rows() == 0
    assert read_raw(pt).v.tolist() == [150, 200]


@pytest.mark.parametrize("change", ["none", "write", "late write", "delete", "retention"])
def test_a_day_moved_after_its_rollups_holds_what_was_written_since(tables: PointTables, change: str) -> None:
    """Compaction keeps a day's rows from its rollup build for its move days later
    (`PointTables._day_rows`); whatever reaches the day meanwhile is in its cold file."""
    pt, model = tables, Model()
    ts = T0 + np.arange(3 * 24 * 60 // 7, dtype=np.int64) * STEP  # three days
    n = len(ts)
    sid = np.arange(n, dtype=np.int32) % 3 + 1
    v = np.arange(n, dtype=np.int64)
    pt.write(sid, ts, v, np.ones(n, bool), np.zeros(n, np.uint8))
    model.write([(int(a), int(b), int(c), 0) for a, b, c in zip(sid, ts, v, strict=True)])
    pt.compact(T0, T0 + 2 * DAY_NS)  # rollups of days 1 and 2, nothing moved
    assert pt.hot_rows() == n and sorted(pt._day_rows) == [T0 // DAY_NS, T0 // DAY_NS + 1]
    if change == "write":  # a row in a gap of day 1 (a new instant) and one that replaces
        rows = [(2, T0 + 3 * 60 * 10**9, 7, 0), (1, int(ts[0]), -4, 2)]
    elif change == "late write":
        rows = [(1, int(ts[3]), None, 1)]
    else:
        rows = []
    if rows:
        pt.write(np.array([r[0] for r in rows], np.int32), np.array([r[1] for r in rows], np.int64),
                 np.array([r[2] or 0 for r in rows], np.int64), np.array([r[2] is not None for r in rows]),
                 np.array([r[3] for r in rows], np.uint8))
        model.write(rows)
    if change == "delete":
        assert pt.delete(T0 + 3600 * 10**9, T0 + 2 * 3600 * 10**9, [2]) == model.delete(
            T0 + 3600 * 10**9, T0 + 2 * 3600 * 10**9, [2]) > 0
    if change == "retention":
        pt.drop_raw_before(T0 + 600 * 10**9)
        model.delete(LO, T0 + 600 * 10**9, None)
    if change != "none":
        assert T0 // DAY_NS not in pt._day_rows
    if change != "retention":  # raw retention leaves the rollups be, which the model does not know
        check(pt, model)
    pt.compact(T0 + 2 * DAY_NS)  # days 1 and 2 move to their files
    assert pt.hot_rows() < n and not pt._day_rows
    if change != "retention":
        check(pt, model)
    on_disk = pd.concat([pt.cold.read_day(d).to_pandas() for d in pt.cold.days()]).sort_values(["series_id", "ts"])
    want = model.frame()
    want = want[want.ts < T0 + 2 * DAY_NS]
    assert on_disk[["series_id", "ts"]].values.tolist() == want[["series_id", "ts"]].values.tolist()
    assert [None if pd.isna(x) else int(x) for x in on_disk.v] == [None if pd.isna(x) else int(x) for x in want.v]


def test_retention_drops_whole_cold_days_and_old_rollups(tables: PointTables) -> None:
    pt = tables
    days = 5
    ts = T0 + np.arange(days * 24, dtype=np.int64) * 3600 * 10**9
    n = len(ts)
    pt.write(np.ones(n, np.int32), ts, np.arange(n, dtype=np.int64), np.ones(n, bool), np.zeros(n, np.uint8))
    pt.compact(T0 + days * DAY_NS)
    assert len(pt.cold.days()) == days
    cut = T0 + 2 * DAY_NS
    pt.drop_raw_before(cut)
    assert pt.cold.days() == [d for d in range(T0 // DAY_NS, T0 // DAY_NS + days) if d * DAY_NS >= cut]
    assert pt.drop_rollups_before("1h", cut) == 48
    assert int(read_raw(pt).ts.min()) == cut


@pytest.mark.parametrize(("resolution", "factor", "divide", "v", "value"), [
    (0.01, 100.0, True, 2340, 23.4), (0.1, 10.0, True, 4125, 412.5), (1.0, 1.0, False, 7, 7.0),
    (0.001, 1000.0, True, -5, -0.005), (5.0, 5.0, False, 3, 15.0)])
def test_scale_reads_back_the_exact_decimal(resolution: float, factor: float, divide: bool, v: int, value: float) -> None:
    f, d = scale_of(resolution)
    assert (f, d) == (factor, divide)
    assert (v / f if d else v * f) == value


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=st.lists(row, min_size=1, max_size=60), compact_days=st.integers(0, 3),
       lo_min=st.integers(-30, 3 * 24 * 60), span_min=st.integers(1, 3 * 24 * 60),
       every_min=st.sampled_from([1, 5, 60, 120, 1440, 7]))
def test_bucketed_reads_equal_an_aggregate_over_raw(tmp_path_factory: pytest.TempPathFactory, rows: list,
                                                    compact_days: int, lo_min: int, span_min: int, every_min: int) -> None:
    tmp = tmp_path_factory.mktemp("buckets")
    pt = PointTables(duckdb.connect(str(tmp / "s.duckdb")), ColdTier(tmp / "s.cold"))
    model = Model()
    data = [(s, T0 + k * STEP, v if v is not None else 0, q) for s, k, v, q in rows]
    data = [(s, t, None if q == 1 else v, q) for s, t, v, q in data]
    model.write(data)
    pt.write(np.array([r[0] for r in data], np.int32), np.array([r[1] for r in data], np.int64),
             np.array([r[2] or 0 for r in data], np.int64), np.array([r[2] is not None for r in data]),
             np.array([r[3] for r in data], np.uint8))
    pt.compact(T0 + compact_days * DAY_NS)
    lo = T0 + lo_min * 60 * 10**9
    hi = lo + span_min * 60 * 10**9
    every = every_min * 60 * 10**9
    got = pt.bucketed(lo, hi, every)
    df = model.frame()
    df = df[df.quality.isin([0, 2]) & df.v.notna() & (df.ts >= lo) & (df.ts < hi)].copy()
    if df.empty:
        assert got.empty
        return
    df["v"] = df.v.astype(np.int64)
    df["bucket"] = df.ts - df.ts % every
    want = df.sort_values("ts").groupby(["series_id", "bucket"]).agg(
        n=("v", "size"), vmin=("v", "min"), vmax=("v", "max"), vsum=("v", "sum"),
        last_ts=("ts", "max"), last_v=("v", "last")).reset_index()
    cols = ["series_id", "bucket", "n", "vmin", "vmax", "vsum", "last_ts", "last_v"]
    assert got[cols].astype(np.int64).values.tolist() == want[cols].astype(np.int64).values.tolist()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 12), st.one_of(st.none(), st.integers(0, 900)),
                                           st.sampled_from([0, 0, 0, 1, 2, 3])), min_size=1, max_size=30),
                        min_size=1, max_size=8),
       late_at=st.integers(0, 8), reopen_at=st.integers(0, 8))
def test_live_appends_merge_into_open_buckets_like_a_recompute(
        tmp_path_factory: pytest.TempPathFactory, batches: list, late_at: int, reopen_at: int) -> None:
    """Batches that only move forward take the fast path; a compaction (rollups built, watermark
    moved), one late batch behind it and one reopen of the store are mixed in; rollups must equal
    the model throughout."""
    tmp = tmp_path_factory.mktemp("live")
    path = tmp / "s.duckdb"
    con = duckdb.connect(str(path))
    pt = PointTables(con, ColdTier(tmp / "s.cold"))
    model = Model()
    clock = T0
    for i, batch in enumerate(batches):
        rows = []
        seen = set()
        for sid, step_s, v, q in batch:
            ts = clock + step_s * 17 * 10**9
            if (sid, ts) in seen:
                continue
            seen.add((sid, ts))
            rows.append((sid, ts, None if q == 1 or v is None else v, q if v is not None or q in (1, 3) else 1))
        if i == late_at:
            rows.append((1, T0 - 3600 * 10**9, 5, 0))  # a late point: the general path
        clock += 13 * 17 * 10**9
        res = pt.write(np.array([r[0] for r in rows], np.int32), np.array([r[1] for r in rows], np.int64),
                       np.array([r[2] or 0 for r in rows], np.int64), np.array([r[2] is not None for r in rows]),
                       np.array([r[3] for r in rows], np.uint8))
        assert res.replaced == model.write(rows)
        if i == late_at // 2:
            pt.compact(clock + DAY_NS)  # everything so far is behind the watermark now
        if i == reopen_at:
            con.close()
            con = duckdb.connect(str(path))
            pt = PointTables(con, ColdTier(tmp / "s.cold"))
        check(pt, model)
