"""A closed day's rollup rows, computed in numpy from its raw rows (design 003).

Why not SQL: compaction used to build each closing day's rollups with `INSERT ... GROUP BY`
(store/rollups.py `_rollup_insert`), ~100 ms a day of 1,000 series at 5 min (288,000 rows),
most of it DuckDB's hash aggregate, its ORDER BY and the insert of as many 1-min rows as raw
rows. Here the day's rows are sorted by (series, ts) once (~2 ms: `cold.sort_rows`) and both tiers' rows come out of `reduceat` over the run boundaries (~8 ms
for the 1-min tier), already in the (series_id, bucket) order the files are written in.

What a row holds is defined once, by `_rollup_insert`'s SQL (the late-write path still uses it);
this module computes exactly the same values: over served rows (quality ok or flagged, value not
NULL) count, min, max, sum (a double: the exact integer sum, rounded once), the last instant and
its value; the 1-h tier also count, first and last instant of all rows, with NULL aggregates in
a bucket of unserved rows only; the 1-min tier has rows for served buckets only.
tests/unit/test_store_rollup_build.py checks the two against each other on random days. A day
whose sums could overflow int64 (values near the 2**62 bound a store accepts) is left to the SQL
(`exact_in_int64` says so).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from greennanny.store.cold_rollups import SCHEMAS

_SERVED_QUALITY = (0, 2)  # ok, flagged


def exact_in_int64(table: pa.Table) -> bool:
    """Whether every bucket's integer sum fits int64 (so numpy's sum equals DuckDB's HUGEINT one)."""
    v = table.column("v")
    if v.null_count == len(v):
        return True
    big = max(abs(int(x.as_py() or 0)) for x in (pc.min(v), pc.max(v)))
    return big * len(v) < 2**63


def day_rollups(table: pa.Table, width: int, *, listing: bool) -> pa.Table:
    """Rollup rows of width `width` (ns) from raw rows (series_id, ts, v, quality) sorted by
    (series_id, ts), with the columns of SCHEMAS["1h" if listing else "1m"], in (series_id,
    bucket) order. With `listing` (the 1-h tier): a row per bucket with any row, and the listing
    columns; without: a row per bucket with a served row."""
    schema = SCHEMAS["1h" if listing else "1m"]
    sid = table.column("series_id").to_numpy().astype(np.int32, copy=False)
    ts = table.column("ts").to_numpy()
    v_col = table.column("v")
    valid = ~np.asarray(v_col.is_null().to_numpy(zero_copy_only=False), bool) if v_col.null_count else \
        np.ones(len(ts), bool)
    v = v_col.fill_null(0).to_numpy() if v_col.null_count else v_col.to_numpy()
    quality = table.column("quality").to_numpy()
    served = valid & np.isin(quality, _SERVED_QUALITY)
    if not listing:
        if not served.all():
            sid, ts, v = sid[served], ts[served], v[served]
        served = np.ones(len(ts), bool)
    if not len(ts):
        return schema.empty_table()
    bucket = ts - ts % width  # numpy's % takes the divisor's sign: a floor, as in the SQL
    new = np.empty(len(ts), bool)
    new[0] = True
    np.not_equal(sid[1:], sid[:-1], out=new[1:])
    new[1:] |= bucket[1:] != bucket[:-1]
    start = np.flatnonzero(new)
    end = np.r_[start[1:], len(ts)] - 1  # last row of each bucket
    cols: dict[str, pa.Array] = {"series_id": pa.array(sid[start]), "bucket": pa.array(bucket[start])}
    if served.all():  # every row counts (the 1-min tier, and any day without unserved rows)
        n = np.diff(np.r_[start, len(ts)])
        cols |= {"n": pa.array(n), "vmin": pa.array(np.minimum.reduceat(v, start)),
                 "vmax": pa.array(np.maximum.reduceat(v, start)),
                 "vsum": pa.array(np.add.reduceat(v, start).astype(np.float64)),
                 "last_ts": pa.array(ts[end]), "last_v": pa.array(v[end])}
    else:
        n = np.add.reduceat(served.astype(np.int64), start)
        none = n == 0  # a bucket of unserved rows only: NULL aggregates, as SQL's FILTER gives
        big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
        at = np.maximum.reduceat(np.where(served, np.arange(len(ts)), -1), start)  # last served row
        cols |= {"n": pa.array(n),
                 "vmin": pa.array(np.minimum.reduceat(np.where(served, v, big), start), mask=none),
                 "vmax": pa.array(np.maximum.reduceat(np.where(served, v, small), start), mask=none),
                 "vsum": pa.array(np.add.reduceat(np.where(served, v, 0), start).astype(np.float64), mask=none),
                 "last_ts": pa.array(ts[at], mask=none), "last_v": pa.array(v[at], mask=none)}
    if listing:
        cols |= {"rows": pa.array(np.diff(np.r_[start, len(ts)])), "first_any": pa.array(ts[start]),
                 "last_any": pa.array(ts[end])}
    return pa.table(cols).cast(schema)
