"""The one-series downsampled read in numpy (`PointTables.bucketed_one`, used by `query`) against
the general SQL path (`PointTables.bucketed`) on random stores.

Stores start two days before a month ends, so compactions close the month into its rollup files;
later writes (late points), deletes and retention then reach buckets inside a closed month
(override rows and tombstones in the tables over file rows, a tier floor inside a month), raw days
go cold behind the watermark, and some compactions move the watermark ahead of the cold tier.
Ranges start and end mid-bucket, cover everything or nothing, and `every` is 1 h, 6 h, 1 d, 2 d
(buckets that straddle the watermark), 5 min (the 1-min tier) or not a multiple of any tier.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greennanny.model import Batch, SeriesKey
from greennanny.store.cold import DAY_NS, ColdTier
from greennanny.store.duckdb import DuckDBStore
from greennanny.store.points import BASE_COLS, HI, HOUR_NS, LO, MIN_NS, PointTables

MONTH_END = 1_701_216_000 * 10**9  # 2023-11-29T00:00Z: five days of rows span the close of November
STEP = 7 * MIN_NS
SPAN = 5 * 24 * 60 // 7  # steps in five days
EVERY = [HOUR_NS, 6 * HOUR_NS, DAY_NS, 2 * DAY_NS, 5 * MIN_NS, 7 * 10**9]

row = st.tuples(st.integers(1, 3), st.integers(0, SPAN), st.integers(-500, 5000), st.sampled_from([0, 0, 0, 1, 2, 3]))
step = st.one_of(
    st.tuples(st.just("write"), st.lists(row, min_size=1, max_size=50)),
    st.tuples(st.just("compact"), st.tuples(st.integers(0, 5), st.integers(0, 2))),
    st.tuples(st.just("delete"), st.tuples(st.integers(0, SPAN), st.integers(1, 300), st.booleans())),
    st.tuples(st.just("retain"), st.tuples(st.sampled_from(["1m", "1h"]), st.integers(0, 4 * 24 * 60))),
)
window = st.tuples(st.integers(-24 * 60, 6 * 24 * 60), st.integers(1, 6 * 24 * 60), st.sampled_from(EVERY))


def _write(pt: PointTables, rows: list[tuple[int, int, int, int]]) -> None:
    rows = list({(s, k): (s, k, v, q) for s, k, v, q in rows}.values())
    pt.write(np.array([r[0] for r in rows], np.int32), MONTH_END + np.array([r[1] for r in rows], np.int64) * STEP,
             np.array([r[2] for r in rows], np.int64), np.array([r[3] != 1 for r in rows]),
             np.array([r[3] for r in rows], np.uint8))


def _apply(pt: PointTables, kind: str, arg: object) -> None:
    if kind == "write":
        _write(pt, arg)  # type: ignore[arg-type]
    elif kind == "compact":
        days, ahead = arg  # type: ignore[misc]
        pt.compact(MONTH_END + days * DAY_NS, MONTH_END + (days + ahead) * DAY_NS)
    elif kind == "delete":
        k, n, one = arg  # type: ignore[misc]
        pt.delete(MONTH_END + k * STEP, MONTH_END + (k + n) * STEP, [2] if one else None)
    else:
        tier, minutes = arg  # type: ignore[misc]
        pt.drop_rollups_before(tier, MONTH_END + minutes * MIN_NS + 17 * 10**9)


def _sql(pt: PointTables, lo: int, hi: int, every: int, sid: int) -> list[list[float]]:
    df = pt.bucketed(lo, hi, every, series_id=sid)
    return [[float(x) for x in r] for r in df[BASE_COLS[1:]].itertuples(index=False)]


def _fast(got: dict[str, np.ndarray]) -> list[list[float]]:
    assert list(got) == BASE_COLS[1:]
    assert all(got[c].dtype == (np.float64 if c == "vsum" else np.int64) for c in got)
    return [[float(x) for x in r] for r in zip(*got.values(), strict=True)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=8), windows=st.lists(window, min_size=1, max_size=6))
def test_fast_one_series_read_equals_the_sql_path(tmp_path_factory: pytest.TempPathFactory, steps: list,
                                                  windows: list) -> None:
    tmp = tmp_path_factory.mktemp("fast")
    pt = PointTables(duckdb.connect(str(tmp / "s.duckdb")), ColdTier(tmp / "s.cold"))
    _write(pt, [(s, k, (s * 37 + k) % 900, 0) for s in (1, 2, 3) for k in range(0, SPAN, 11)])  # a base to cut into
    for kind, arg in steps:
        _apply(pt, kind, arg)
        for lo_min, span_min, every in windows:
            lo = MONTH_END + lo_min * MIN_NS + 13 * 10**9
            for a, b in ((lo, lo + span_min * MIN_NS), (LO, HI)):
                for sid in (1, 2, 4):  # 4 never had a row
                    got = pt.bucketed_one(a, b, every, sid)
                    if every % MIN_NS:
                        assert got is None
                        continue
                    assert got is not None
                    want = _sql(pt, a, b, every, sid)
                    assert _fast(got) == want, (kind, a, b, every, sid)
                    short = pt.bucketed_one(a, b, every, sid, last=False)  # what `query` reads
                    assert short is not None and list(short) == BASE_COLS[1:6]
                    assert [[float(x) for x in r] for r in zip(*short.values(), strict=True)] == [r[:5] for r in want]


def test_query_frames_are_identical_with_and_without_the_fast_path(tmp_path: Path) -> None:
    """Through the store: column names, dtypes and values of `query(every=...)` (both paths),
    for a series with rows, one whose rows were all deleted, and ranges without a point."""
    store = DuckDBStore(tmp_path / "s.duckdb")
    keys = [SeriesKey("s", "z", "d", "air_temperature"), SeriesKey("s", "z", "d", "co2")]
    ts = MONTH_END + np.arange(0, 5 * 24 * 12, dtype=np.int64) * 5 * MIN_NS
    n = len(ts)
    idx = np.repeat(np.arange(2, dtype=np.int32), n)
    vals = np.concatenate([20 + np.sin(np.arange(n) / 9.0), 400 + 3 * np.cos(np.arange(n) / 7.0)])
    q = np.zeros(2 * n, np.uint8)
    q[::17] = 2
    store.write(Batch(keys, idx, np.tile(ts, 2), vals, q, {}))
    store.compact(MONTH_END + 4 * DAY_NS + 5 * HOUR_NS)  # November closes into its month files
    late = MONTH_END + np.array([HOUR_NS + 60 * 10**9, 30 * HOUR_NS], np.int64)  # into the closed month
    store.write(Batch(keys[:1], np.zeros(2, np.int32), late, np.array([35.5, -4.25]), np.zeros(2, np.uint8), {}))
    store.delete_range(MONTH_END + 5 * HOUR_NS, MONTH_END + 7 * HOUR_NS, series_ids=[1])  # tombstones
    sids = [s.id for s in store.series()]
    store.delete_range(None, None, series_ids=[sids[1]])
    for sid in sids:
        for lo, hi in ((None, None), (MONTH_END - DAY_NS, MONTH_END + 6 * DAY_NS), (MONTH_END + 1234567, ts[-1] - 99),
                       (MONTH_END - 9 * DAY_NS, MONTH_END - 8 * DAY_NS)):
            for every in (HOUR_NS, 6 * HOUR_NS, DAY_NS, 15 * MIN_NS):
                store.fast_one_series = True
                fast = store.query(sid, lo, hi, every)
                store.fast_one_series = False
                slow = store.query(sid, lo, hi, every)
                assert list(fast.columns) == ["ts", "value", "min", "max", "count"]
                pd.testing.assert_frame_equal(fast, slow, check_exact=True)
    store.close()
