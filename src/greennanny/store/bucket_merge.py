"""Bucket arithmetic of downsampled reads: which rollup tier serves an `every`, and partial
aggregates merged into `every`-buckets in numpy (the one-series read, `PointTables.bucketed_one`,
which plans no aggregate SQL: DuckDB takes ~0.15 ms to plan each aggregate function)."""

from __future__ import annotations

import numpy as np

from greennanny.store.rollups import TIERS


def tier_for(every: int) -> str | None:
    """The coarsest rollup tier whose width divides `every`."""
    return next((name for name, w in sorted(TIERS.items(), key=lambda t: -t[1]) if every % w == 0), None)


def merge_buckets(cols: dict[str, np.ndarray], every: int) -> dict[str, np.ndarray]:
    """Partial aggregates (rollup rows, raw points as rows of n = 1) merged per `every`-bucket,
    ordered by bucket: what `bucketed`'s SQL computes (sum of n and vsum, min, max, and the last
    point where `cols` has last_ts). vsum holds integers (exact below 2**53): order cannot change it."""
    b = cols["bucket"] - cols["bucket"] % every  # floor: numpy's % takes the divisor's sign, like the SQL
    last_ts = cols.get("last_ts")
    order = np.lexsort((last_ts, b)) if last_ts is not None else np.argsort(b, kind="stable")
    b = b[order]
    if not len(b):
        return {"bucket": b, **{c: v[order] for c, v in cols.items() if c != "bucket"}}
    start = np.flatnonzero(np.concatenate([[True], b[1:] != b[:-1]]))
    n, vmin, vmax, vsum = (cols[c][order] for c in ("n", "vmin", "vmax", "vsum"))
    out = {"bucket": b[start], "n": np.add.reduceat(n, start), "vmin": np.minimum.reduceat(vmin, start),
           "vmax": np.maximum.reduceat(vmax, start), "vsum": np.add.reduceat(vsum, start)}
    if last_ts is not None:
        end = np.concatenate([start[1:], [len(b)]]) - 1  # the row with the greatest last_ts of each bucket
        out |= {"last_ts": last_ts[order][end], "last_v": cols["last_v"][order][end]}
    return out
