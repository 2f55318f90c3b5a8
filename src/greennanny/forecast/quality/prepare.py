"""Long-form points of many series -> one clean regular grid, and what was done to each series.

Order of the steps, and why it is this order:
1. window and rows: points outside [start, end) or of unlisted series are dropped; non-finite
   values are not readings (the store never serves them as usable);
2. duplicate instants (same series, same timestamp): the last write wins, as in the store and
   as InfluxDB does, because a re-sent point is the source's correction (field case BR-19:
   averaging 2.0 and 3.0 would store 2.5, a value the sensor never reported);
3. stuck runs, on the raw points in time order: a stuck logger repeats one value, and only the
   raw sequence shows it; after resampling an hourly mean of a frozen half hour looks normal;
4. mean per bin of the remaining points (one `np.bincount`), bins half-open as panel.py says;
5. bounded linear interpolation of short gaps; longer gaps and the stuck steps stay NaN, so no
   model trains on an invented outage or on a frozen value.

Vectorised over all points: one stable sort by (row, time) unless already sorted, run ids from
a cumulative sum, counts from `np.bincount`. Python loops run per series only to write reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from greennanny.forecast.panel import Panel
from greennanny.forecast.quality.report import (
    QualityReport,
    QualityRules,
    StuckSpan,
    iso_minute,
    triage,
)

# Rows handled at once by the gap filler: bounds the int32 index scratch to a few tens of MB.
_GAP_CHUNK_ROWS = 2048
# The "normal long run" of a series: this quantile of its run lengths (nearest rank).
_RUN_QUANTILE = 0.999


@dataclass(slots=True)
class PreparedPanel:
    """The clean grid and one report per row (`reports[i]` belongs to `panel.series_ids[i]`)."""

    panel: Panel
    reports: list[QualityReport]

    def by_id(self) -> dict[int, QualityReport]:
        return {r.series_id: r for r in self.reports}


def prepare_panel(
    series_id: np.ndarray,
    ts_ns: np.ndarray,
    value: np.ndarray,
    *,
    step_ns: int,
    end_ns: int,
    length: int,
    rules: QualityRules | None = None,
    series_ids: np.ndarray | None = None,
    season: int | None = None,
) -> PreparedPanel:
    """Resample points onto the `length` bins ending at `end_ns` (exclusive), cleaned.

    `series_ids` fixes the rows and their order (a listed series without points becomes an
    all-NaN row; points of unlisted series are dropped); by default the rows are the sorted
    distinct ids in `series_id`, including series whose points all fall outside the window.
    The too-short flag uses `rules.min_history_steps`, or two `season`s when that is None
    (no flag without either).
    """
    rules = rules or QualityRules()
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    if step_ns <= 0:
        raise ValueError(f"step_ns must be positive, got {step_ns}")
    sid = np.asarray(series_id, dtype=np.int64)
    ts = np.asarray(ts_ns, dtype=np.int64)
    val = np.asarray(value, dtype=np.float64)
    if not sid.shape == ts.shape == val.shape or sid.ndim != 1:
        raise ValueError(
            f"series_id, ts_ns, value must be 1-D of one length: {sid.shape}, "
            f"{ts.shape}, {val.shape}"
        )
    start_ns = end_ns - length * step_ns
    ids = np.unique(sid) if series_ids is None else np.asarray(series_ids, dtype=np.int64)
    if np.unique(ids).size != ids.size:
        raise ValueError("series_ids must be distinct")
    n = ids.size

    row, ts, val = _rows_in_window(ids, sid, ts, val, start_ns, end_ns)
    row, ts, val = _sorted(row, ts, val)
    dup = (row[1:] == row[:-1]) & (ts[1:] == ts[:-1])  # i is superseded by i + 1
    duplicates = np.bincount(row[:-1][dup], minlength=n)
    keep = np.ones(row.size, dtype=bool)
    keep[:-1] = ~dup
    row, ts, val = row[keep], ts[keep], val[keep]

    stuck_pt, spans = _stuck_points(row, ts, val, n, rules)
    col = (ts - start_ns) // step_ns
    flat = row * length + col
    size = n * length
    ok = ~stuck_pt
    sums = np.bincount(flat[ok], weights=val[ok], minlength=size)
    counts = np.bincount(flat[ok], minlength=size)
    stuck_counts = np.bincount(flat[stuck_pt], minlength=size)
    flat_grid = np.full(size, np.nan)
    filled = counts > 0
    flat_grid[filled] = sums[filled] / counts[filled]
    grid = flat_grid.reshape(n, length)
    # A stuck run covers its bins from first to last point, empty ones inside included: a hole
    # in a frozen span is part of the fault, not a gap to interpolate across.
    run_first, run_last = flat[_run_edges(stuck_pt, True)], flat[_run_edges(stuck_pt, False)]
    edges = np.zeros(size + 1, dtype=np.int64)
    np.add.at(edges, run_first, 1)
    np.add.at(edges, run_last + 1, -1)
    stuck_only = ((np.cumsum(edges[:-1]) > 0) & ~filled).reshape(n, length)
    reported = (counts + stuck_counts > 0).reshape(n, length)

    before = np.isfinite(grid)
    interpolate_gaps(grid, rules.max_gap_steps)
    grid[stuck_only] = np.nan
    interpolated = np.isfinite(grid) & ~before
    panel = Panel(ids, start_ns, step_ns, grid)
    reports = _reports(
        panel, rules, season, reported, stuck_only, interpolated, duplicates, row, stuck_pt, spans
    )
    return PreparedPanel(panel, reports)


def interpolate_gaps(values: np.ndarray, max_gap_steps: int) -> np.ndarray:
    """Linearly fill, in place, NaN runs of at most `max_gap_steps` bounded on both sides.

    Vectorised per block of rows: the previous and next finite column of every cell come from a
    running max/min of column indices, so a gap's length is `next - prev - 1` without a loop.
    """
    n, t = values.shape
    if max_gap_steps <= 0 or t < 3:
        return values
    idx = np.arange(t, dtype=np.int32)
    for lo in range(0, n, _GAP_CHUNK_ROWS):
        block = values[lo : lo + _GAP_CHUNK_ROWS]
        finite = np.isfinite(block)
        if finite.all():
            continue
        prev = np.where(finite, idx, -1)
        np.maximum.accumulate(prev, axis=1, out=prev)
        nxt = np.where(finite, idx, t)[:, ::-1]
        nxt = np.minimum.accumulate(nxt, axis=1)[:, ::-1]
        fill = ~finite & (prev >= 0) & (nxt < t) & (nxt - prev - 1 <= max_gap_steps)
        r, c = np.nonzero(fill)
        p, q = prev[r, c], nxt[r, c]
        vp, vq = block[r, p], block[r, q]
        block[r, c] = vp + (vq - vp) * (c - p) / (q - p)
    return values


def _rows_in_window(
    ids: np.ndarray, sid: np.ndarray, ts: np.ndarray, val: np.ndarray, start_ns: int, end_ns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, ts, value) of the finite points of listed series inside [start_ns, end_ns)."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, sid), max(ids.size - 1, 0))
    keep = np.isfinite(val) & (ts >= start_ns) & (ts < end_ns)
    if ids.size:
        keep &= sorted_ids[pos] == sid
    else:
        keep[:] = False
    return order[pos[keep]].astype(np.int64), ts[keep], val[keep]


def _sorted(
    row: np.ndarray, ts: np.ndarray, val: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable order by (row, ts): arrival order is kept among equal instants (last wins later)."""
    if row.size < 2:
        return row, ts, val
    d_row, d_ts = np.diff(row), np.diff(ts)
    if ((d_row > 0) | ((d_row == 0) & (d_ts >= 0))).all():
        return row, ts, val  # the common case: already in order, no sort
    order = np.lexsort((ts, row))  # lexsort is stable
    return row[order], ts[order], val[order]


def _stuck_points(
    row: np.ndarray, ts: np.ndarray, val: np.ndarray, n_rows: int, rules: QualityRules
) -> tuple[np.ndarray, dict[int, list[StuckSpan]]]:
    """Mask of points inside stuck runs, and the runs per row (points sorted by row, time).

    A run is a maximal sequence of consecutive points of one row with identical values. Its
    reference is the row's normal long run: the 99.9th-percentile run length, but never the
    longest run itself (so one frozen hour in a short window still stands out). Quantised
    sensors repeat values all the time (RH in whole percent at night), which is why the test is
    relative to the series' own runs and not a fixed count.
    """
    m = row.size
    stuck = np.zeros(m, dtype=bool)
    if m == 0:
        return stuck, {}
    new = np.ones(m, dtype=bool)
    new[1:] = (row[1:] != row[:-1]) | (val[1:] != val[:-1])
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], m) - 1
    length = ends - starts + 1
    run_row = row[starts]
    per_row = np.bincount(run_row, minlength=n_rows)
    first = np.cumsum(per_row) - per_row
    by_len = length[np.lexsort((length, run_row))]
    rank = np.minimum(np.ceil(_RUN_QUANTILE * per_row).astype(np.int64), per_row - 1)
    ref = np.full(n_rows, np.inf)  # a row with a single run (constant) is never stuck
    has = rank >= 1
    ref[has] = by_len[first[has] + rank[has] - 1]
    is_stuck = (
        (length >= rules.stuck_factor * ref[run_row])
        & (ts[ends] - ts[starts] >= rules.stuck_min_ns)
        & (length >= 2)
    )
    spans: dict[int, list[StuckSpan]] = {}
    for j in np.flatnonzero(is_stuck):
        s, e = int(starts[j]), int(ends[j])
        stuck[s : e + 1] = True
        span = StuckSpan(int(ts[s]), int(ts[e]), e - s + 1, float(val[s]))
        spans.setdefault(int(run_row[j]), []).append(span)
    return stuck, spans


def _run_edges(mask: np.ndarray, first: bool) -> np.ndarray:
    """Positions of the first (or last) True of every run of True in a 1-D mask.

    Stuck runs of one row never touch another row's: a run ends where the row changes, and two
    adjacent stuck runs of one row (different values) are separate runs of the fault's points
    that cover contiguous bins either way.
    """
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(padded)
    return np.flatnonzero(edges == 1) if first else np.flatnonzero(edges == -1) - 1


def _gap_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, first column, length) of every run of True in a 2-D mask."""
    n, t = mask.shape
    padded = np.zeros((n, t + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    r0, c0 = np.nonzero(edges == 1)
    _, c1 = np.nonzero(edges == -1)  # same row order as the starts (row-major scan)
    return r0, c0, c1 - c0


def _reports(
    panel: Panel,
    rules: QualityRules,
    season: int | None,
    reported: np.ndarray,
    stuck_only: np.ndarray,
    interpolated: np.ndarray,
    duplicates: np.ndarray,
    row: np.ndarray,
    stuck_pt: np.ndarray,
    spans: dict[int, list[StuckSpan]],
) -> list[QualityReport]:
    """One report per row from the masks of the preparation (loops per series, not per point)."""
    n, t = panel.values.shape
    cols = np.arange(t)
    any_rep = reported.any(axis=1)
    first = np.where(any_rep, np.argmax(reported, axis=1), t)
    last = np.where(any_rep, t - 1 - np.argmax(reported[:, ::-1], axis=1), -1)
    missing = ~np.isfinite(panel.values) & ~stuck_only
    interior = (cols[None, :] > first[:, None]) & (cols[None, :] < last[:, None])
    gaps = missing & interior
    g_row, g_col, g_len = _gap_runs(gaps)
    longest = np.zeros(n, dtype=np.int64)
    np.maximum.at(longest, g_row, g_len)
    at_longest: dict[int, int] = {}
    for r, c, k in zip(g_row.tolist(), g_col.tolist(), g_len.tolist(), strict=True):
        if k == longest[r] and r not in at_longest:
            at_longest[r] = c
    silent = np.where(any_rep, t - 1 - last, 0)
    points = np.bincount(row, minlength=n)
    stuck_points = np.bincount(row[stuck_pt], minlength=n)
    masked = gaps.sum(axis=1)
    min_history = rules.min_history_steps or (2 * season if season else None)
    tri = triage(panel.values, min_history) if min_history else None

    out: list[QualityReport] = []
    for r in range(n):
        rep = QualityReport(
            series_id=int(panel.series_ids[r]),
            points=int(points[r]),
            duplicates=int(duplicates[r]),
            stuck_points=int(stuck_points[r]),
            stuck_steps=int(stuck_only[r].sum()),
            interpolated_steps=int(interpolated[r].sum()),
            masked_gap_steps=int(masked[r]),
            longest_gap_steps=int(longest[r]),
            silent_steps=int(silent[r]),
            observed_steps=int(np.isfinite(panel.values[r]).sum()),
            stuck_spans=spans.get(r, []),
        )
        if rep.duplicates:
            plural = "s" * (rep.duplicates != 1)
            rep.reasons.append(f"{rep.duplicates} duplicate instant{plural}: last write kept")
        rep.reasons.extend(s.describe() for s in rep.stuck_spans)
        if rep.masked_gap_steps:
            start = panel.start_ns + at_longest[r] * panel.step_ns
            rep.reasons.append(
                f"{rep.masked_gap_steps} steps in gaps over {rules.max_gap_steps} steps masked "
                f"(longest {rep.longest_gap_steps} from {iso_minute(start)})"
            )
        if rep.silent_steps > rules.max_gap_steps:  # a step or two is the current, open bin
            rep.reasons.append(f"silent for the last {rep.silent_steps} steps")
        if tri is not None:
            rep.constant, rep.too_short = bool(tri.constant[r]), bool(tri.too_short[r])
            if r in tri.reasons:
                rep.reasons.append(tri.reasons[r])
        out.append(rep)
    return out
