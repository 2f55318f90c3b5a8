"""Closed rollups in the cold tier: a Parquet file per month of the 1-h tier, per day of the
1-min tier (design 003).

`<store>.cold/rollup_1h/<YYYY-MM>.parquet` (and `rollup_1m/<YYYY-MM>.parquet` in a store written
before the 1-min day files) hold the rollup rows of a UTC month that lies wholly behind the
rollup watermark, sorted by (series_id, bucket), integers
delta-encoded, the double `vsum` byte-stream-split, zstd, in row groups of 16,384 rows, so the
row-group statistics of `series_id` name the one or two groups that hold a series' month.
Measured on a month of 1,000 AGC series (bench data): 6.3 B a 1-h row and 5.1 B a 1-min row,
against ~36 and ~22 B in the DuckDB tables. An hour index and second offsets instead of
nanosecond instants came out at the same size (delta encoding already removes the constant
part), so the files keep the tables' columns and need no conversion on read.

Why a one-series read does not go through DuckDB's `read_parquet`: DuckDB pays ~20 us per row
group it prunes and ~2 ms per file, so six months of one series took 9-10 ms. Here each file is
opened once (and again only when the file changes: device, inode, size and mtime, checked by a
stat at every read) and kept open with its footer and an index of where each series' rows start
(written into the file's key-value metadata; computed from its `series_id` column once for a
file written without it). Row groups never split a series that fits in one, so a series' month
of 1-h rows is one row group, read with pyarrow without the `series_id`
column and sliced to the series' rows; the rows are handed back as an Arrow table. Measured on a
1-h month of 1,000 bench series (16,384-row groups): ~0.3 ms a file, against ~0.6-0.8 ms when
each read opened the file, read its footer's statistics and decoded `series_id` too. Scans of
many series use `read_parquet`.

The 1-min tier's closed days are day files, `rollup_1m/<YYYY-MM-DD>.parquet`, written by
compaction straight from the day's raw rows (store/rollup_build.py) and kept as day files: late
rows of a closed month are merged into their day files, not into a month file (merging a month
of day files cost more than the rest of the compaction, design 003). A month's rows are read
from its month file when it has one (a store written before day files), else from its day files.

Files are written whole and atomically (temporary file, fsync, rename, fsync of the directory);
which rows a month or day holds is decided by the caller (store/rollups.py).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow._parquet import ParquetReader

from greennanny.store.cold import fsync_dir, sort_rows

_ROW_GROUP = 16 * 1024
_OPEN_FILES = 64  # files kept open for one-series reads, the most recently opened ones
_INT = pa.int64()
SCHEMAS = {
    "1m": pa.schema([("series_id", pa.int32()), ("bucket", _INT), ("n", _INT), ("vmin", _INT), ("vmax", _INT),
                     ("vsum", pa.float64()), ("last_ts", _INT), ("last_v", _INT)]),
}
SCHEMAS["1h"] = pa.schema([*SCHEMAS["1m"], ("rows", _INT), ("first_any", _INT), ("last_any", _INT)])


def month_of(ts_ns: int) -> int:
    """The UTC month number (months since 1970-01) of an instant."""
    return int(np.datetime64(int(ts_ns), "ns").astype("datetime64[M]").astype(np.int64))


def month_start(month: int) -> int:
    """The first instant (ns) of UTC month `month`."""
    return int(np.datetime64(int(month), "M").astype("datetime64[ns]").astype(np.int64))


def month_name(month: int) -> str:
    return str(np.datetime64(int(month), "M"))  # 2025-01


def day_name(day: int) -> str:
    return str(np.datetime64(int(day), "D"))  # 2025-01-31


def month_of_day(day: int) -> int:
    return int(np.datetime64(int(day), "D").astype("datetime64[M]").astype(np.int64))



@dataclass(frozen=True, slots=True)
class FilesSeen:
    """The month files a read of [lo, hi) of a tier went to, each with its key (None: gone)."""

    tier: str
    lo: int
    hi: int
    files: tuple[tuple[str, tuple[int, ...] | None], ...]


def _key(path: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


_INDEX_KEY = b"greennanny.series_rows"  # key-value metadata: series ids, then their row counts (int32 LE)


@dataclass(slots=True)
class _Reader:
    """An open month file: its footer and where each series' rows are (files are immutable)."""

    key: tuple[int, ...]  # st_dev, st_ino, st_size, st_mtime_ns: which file this was read from
    fh: pa.NativeFile
    reader: ParquetReader
    names: list[str]
    sids: np.ndarray  # the file's series ids, ascending
    starts: np.ndarray  # first row of each of `sids`, and the row count at the end
    groups: np.ndarray  # first row of each row group, and the row count at the end
    lock: threading.Lock

    def close(self) -> None:
        self.fh.close()


class RollupMonths:
    """The month files of the rollup tiers, beside the raw day files."""

    def __init__(self, cold_root: Path) -> None:
        self.root = cold_root
        self._months: dict[str, set[int]] = {}
        self._days: dict[str, set[int]] = {}
        for tier in SCHEMAS:
            d = self.dir(tier)
            d.mkdir(parents=True, exist_ok=True)
            for stale in d.glob("*.tmp"):  # a file written by a compaction that crashed before its rename
                stale.unlink(missing_ok=True)
            stems = [p.stem for p in d.glob("*.parquet")]
            self._months[tier] = {m for m in map(_parse, stems) if m is not None}
            self._days[tier] = {x for x in map(_parse_day, stems) if x is not None}
        self._readers: dict[str, _Reader] = {}
        self._lock = threading.Lock()

    def dir(self, tier: str) -> Path:
        return self.root / f"rollup_{tier}"

    def path(self, tier: str, month: int) -> Path:
        return self.dir(tier) / f"{month_name(month)}.parquet"

    def day_path(self, tier: str, day: int) -> Path:
        return self.dir(tier) / f"{day_name(day)}.parquet"

    def months(self, tier: str) -> list[int]:
        return sorted(self._months[tier])

    def days(self, tier: str) -> list[int]:
        """Days with a day file (the 1-min tier's closed days of the open month)."""
        return sorted(self._days[tier])

    def end(self, tier: str) -> int:
        """The end of the newest file of `tier` (-2**63 when none)."""
        months, days = sorted(self._months[tier]), sorted(self._days[tier])
        ends = ([month_start(months[-1] + 1)] if months else []) + ([(days[-1] + 1) * _DAY_NS] if days else [])
        return max(ends) if ends else -(2**63)

    def files(self, tier: str, lo: int, hi: int) -> list[str]:
        """Paths of the files that can hold buckets in [lo, hi), in time order: month files, and
        the day files of months without one."""
        if lo >= hi or not (self._months[tier] or self._days[tier]):
            return []
        months, days = sorted(self._months[tier]), sorted(self._days[tier])  # copies: compaction may add meanwhile
        first, last = month_of(max(lo, _MIN_TS)), month_of(min(hi - 1, _MAX_TS))
        out = [(month_start(m), str(self.path(tier, m))) for m in months if first <= m <= last]
        if days:
            d_lo, d_hi = max(lo, _MIN_TS) // _DAY_NS, min(hi - 1, _MAX_TS) // _DAY_NS
            out += [(d * _DAY_NS, str(self.day_path(tier, d))) for d in days
                    if d_lo <= d <= d_hi and month_of_day(d) not in months]
        return [p for _, p in sorted(out)]

    def scan_sql(self, tier: str, files: list[str]) -> str:
        """A DuckDB source of the rows of `files` (`read_parquet`: scans of many series)."""
        return "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"

    # -- writing -----------------------------------------------------------------------------
    def write_month(self, tier: str, month: int, table: pa.Table, *, ordered: bool = False) -> int:
        """Replace the month's file by `table` (sorted here unless `ordered`; none if empty);
        returns its bytes."""
        final = self.path(tier, month)
        self._forget(str(final))
        if table.num_rows == 0:
            self._unlink(tier, month)
            return 0
        size = self._write(tier, final, table, ordered)
        self._months[tier].add(month)
        return size

    def write_day(self, tier: str, day: int, table: pa.Table, *, ordered: bool = False) -> int:
        """Replace the day's file by `table` (as `write_month`); returns its bytes."""
        if table.num_rows == 0:
            self._unlink_day(tier, day)
            return 0
        size = self.write_day_file(tier, day, table, ordered=ordered)
        self.adopt_day(tier, day)
        return size

    def write_day_file(self, tier: str, day: int, table: pa.Table, *, ordered: bool = True) -> int:
        """`write_day` of a non-empty table without listing the file (`adopt_day` does), so it
        may run on another thread: readers do not see the day until it is listed."""
        final = self.day_path(tier, day)
        self._forget(str(final))
        return self._write(tier, final, table, ordered)

    def adopt_day(self, tier: str, day: int) -> None:
        self._days[tier].add(day)

    def _write(self, tier: str, final: Path, table: pa.Table, ordered: bool) -> int:
        table = table.select(SCHEMAS[tier].names).cast(SCHEMAS[tier])
        if not ordered:
            table = sort_rows(table, "bucket")
        sid = table.column("series_id").to_numpy()
        cut = np.flatnonzero(sid[1:] != sid[:-1]) + 1  # where each series' rows start (after the first)
        sids, counts = sid[np.r_[0, cut]], np.diff(np.r_[0, cut, len(sid)])
        tmp = final.with_suffix(".tmp")
        enc = {c: "DELTA_BINARY_PACKED" for c in SCHEMAS[tier].names if c != "vsum"} | {"vsum": "BYTE_STREAM_SPLIT"}
        with pq.ParquetWriter(tmp, table.schema, compression="zstd", use_dictionary=False, column_encoding=enc,
                              write_statistics=["series_id", "bucket"]) as w:
            for a, b in _groups(np.r_[0, cut, len(sid)], _ROW_GROUP):
                w.write_table(table.slice(a, b - a), row_group_size=b - a)
            w.add_key_value_metadata({_INDEX_KEY: np.stack([sids, counts]).astype("<i4").tobytes()})
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fsync_dir(final.parent)
        return final.stat().st_size

    def drop_before(self, tier: str, month: int) -> int:
        """Delete every month file of `tier` before `month`; returns the rows they held."""
        rows = 0
        for m in [m for m in self._months[tier] if m < month]:
            rows += self.num_rows(tier, m)
            self._unlink(tier, m)
        return rows

    def drop_days_before(self, tier: str, day: int) -> int:
        """Delete every day file of `tier` before `day`; returns the rows they held."""
        rows = 0
        for d in [d for d in self._days[tier] if d < day]:
            rows += _num_rows(self.day_path(tier, d))
            self._unlink_day(tier, d)
        return rows

    def drop_days_from(self, tier: str, day: int, keep: set[int]) -> None:
        """Delete the day files of `tier` from `day` on that are not in `keep` (left by a
        compaction that rolled back: never read, as they lie after the watermark)."""
        for d in [d for d in self._days[tier] if d >= day and d not in keep]:
            self._unlink_day(tier, d)

    def _unlink_day(self, tier: str, day: int) -> None:
        self._days[tier].discard(day)  # readers stop listing it first
        self._remove(self.day_path(tier, day))

    def _unlink(self, tier: str, month: int) -> None:
        self._months[tier].discard(month)  # readers stop listing it first
        self._remove(self.path(tier, month))

    def _remove(self, p: Path) -> None:
        self._forget(str(p))
        if p.exists():
            p.unlink()
            fsync_dir(p.parent)

    # -- reading -----------------------------------------------------------------------------
    def num_rows(self, tier: str, month: int) -> int:
        return _num_rows(self.path(tier, month))

    def rows(self, tier: str) -> int:
        return sum(self.num_rows(tier, m) for m in self.months(tier)) + \
            sum(_num_rows(self.day_path(tier, d)) for d in self.days(tier))

    def bytes(self, tier: str) -> int:
        return sum(p.stat().st_size for p in self.dir(tier).glob("*.parquet"))

    def series_rows(self, tier: str, series_id: int, lo: int, hi: int, columns: list[str]) -> pa.Table:
        """Rows of one series with bucket in [lo, hi) from the month files: its one row group of
        each file (`columns` only; `bucket` is read in any case), sliced to its rows."""
        return self.series_rows_as_of(tier, series_id, lo, hi, columns)[0]

    def series_rows_as_of(self, tier: str, series_id: int, lo: int, hi: int,
                          columns: list[str]) -> tuple[pa.Table, FilesSeen]:
        """`series_rows`, and which files they were read from: `changed` tells later whether a
        read then would have read other files (a month closed, merged or dropped meanwhile)."""
        parts = []
        want = list(dict.fromkeys(["bucket", *[c for c in columns if c != "series_id"]]))
        seen = []
        for path in self.files(tier, lo, hi):
            got, key = self._read(path, series_id, want)
            seen.append((path, key))
            if got is None:
                continue
            bucket = got.column(0).to_numpy()  # the series' rows are sorted by bucket
            a, b = int(np.searchsorted(bucket, lo, "left")), int(np.searchsorted(bucket, hi, "left"))
            if a < b:
                parts.append(got.slice(a, b - a))  # zero-copy, unlike a take (~0.1 ms a file)
        if not parts:
            out = SCHEMAS[tier].empty_table().select(columns)
        else:
            out = pa.concat_tables(parts)
            if "series_id" in columns:
                out = out.append_column("series_id", pa.array(np.full(out.num_rows, series_id, np.int32)))
            out = out.select(columns)
        return out, FilesSeen(tier, lo, hi, tuple(seen))

    def changed(self, seen: FilesSeen) -> bool:
        """Whether the files of `seen`'s range are no longer the ones it read (by name and by
        device, inode, size and mtime)."""
        paths = self.files(seen.tier, seen.lo, seen.hi)
        return paths != [p for p, _ in seen.files] or any(_key(p) != k for p, k in seen.files)

    def _read(self, path: str, series_id: int, columns: list[str]) -> tuple[pa.Table | None, tuple[int, ...] | None]:
        """The rows of `series_id` in the file at `path` (None: it has none, or the file is gone),
        and the key of the file read."""
        key = _key(path)
        if key is None:  # retention dropped it meanwhile
            return None, None
        with self._lock:
            r = self._readers.get(path)
        if r is None or r.key != key:
            try:
                r = self._open(path)
            except FileNotFoundError:
                return None, None
            with self._lock:
                old = self._readers.pop(path, None)
                self._readers[path] = r
                # Kept open: the newest _OPEN_FILES (a year of 1-min day files would be 365 descriptors)
                evicted = [self._readers.pop(p) for p in list(self._readers)[:-_OPEN_FILES]]
            for gone in ([old] if old is not None and old is not r else []) + evicted:
                with gone.lock:
                    gone.close()
        i = int(np.searchsorted(r.sids, series_id))
        if i == len(r.sids) or r.sids[i] != series_id:
            return None, r.key
        a, b = int(r.starts[i]), int(r.starts[i + 1])
        g0, g1 = int(np.searchsorted(r.groups, a, "right")) - 1, int(np.searchsorted(r.groups, b - 1, "right")) - 1
        idx = [r.names.index(c) for c in columns]
        with r.lock:  # one read at a time on a reader; the file is kept open, so a read costs no open
            if r.fh.closed:  # replaced meanwhile by a thread that saw the new file: read the new one
                return self._read(path, series_id, columns)
            t = r.reader.read_row_groups(list(range(g0, g1 + 1)), column_indices=idx, use_threads=False)
        return t.slice(a - int(r.groups[g0]), b - a), r.key

    def _open(self, path: str) -> _Reader:
        fh = pa.OSFile(path)  # positional reads (pread): no shared file position
        try:
            st = os.fstat(fh.fileno())  # the key of the very file opened
            reader = ParquetReader()
            reader.open(fh, pre_buffer=False)
            meta = reader.metadata
            groups = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
            index = (meta.metadata or {}).get(_INDEX_KEY)
            if index is not None:
                sids, counts = np.frombuffer(index, "<i4").astype(np.int64).reshape(2, -1)
            else:  # written before the index: find the series' starts from the column, once
                sid = reader.read_all(column_indices=[meta.schema.names.index("series_id")],
                                      use_threads=False).column(0).to_numpy()
                cut = np.flatnonzero(sid[1:] != sid[:-1]) + 1
                sids, counts = sid[np.r_[0, cut]].astype(np.int64), np.diff(np.r_[0, cut, len(sid)])
            starts = np.r_[0, np.cumsum(counts)].astype(np.int64)
            return _Reader((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns), fh, reader,
                           list(meta.schema.names), np.asarray(sids), starts, groups, threading.Lock())
        except BaseException:
            fh.close()
            raise

    def _forget(self, path: str) -> None:
        """Close the open reader of a file that is replaced or deleted (so its space is freed)."""
        with self._lock:
            r = self._readers.pop(path, None)
        if r is not None:
            with r.lock:
                r.close()

    def close(self) -> None:
        for path in list(self._readers):
            self._forget(path)


def _num_rows(path: Path) -> int:
    try:
        return int(pq.read_metadata(path).num_rows)
    except FileNotFoundError:
        return 0


def _groups(starts: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Row groups of at most `size` rows, (first row, end) each, that never split a series that
    fits in one: a group closes before such a series if it would not fit. A longer series (the
    1-min tier's ~44,640 rows a month) runs across full groups as if unaligned."""
    out: list[tuple[int, int]] = []
    a = 0
    for s, e in zip(starts[:-1].tolist(), starts[1:].tolist(), strict=True):
        if e - s <= size < e - a and s > a:
            out.append((a, s))
            a = s
        while e - a > size:
            out.append((a, a + size))
            a += size
    if a < int(starts[-1]):
        out.append((a, int(starts[-1])))
    return out


_MIN_TS, _MAX_TS = -(2**62), 2**62  # month arithmetic stays inside datetime64[ns]


_DAY_NS = 86_400 * 1_000_000_000


def _parse(stem: str, unit: Literal["M", "D"] = "M") -> int | None:
    """The month of a month file's name (2025-01), or with `unit` "D" the day of a day file's
    (2025-01-31), else None."""
    if len(stem) != {"M": 7, "D": 10}[unit]:
        return None
    try:
        return int(np.datetime64(stem, unit).astype(np.int64))
    except ValueError:
        return None


def _parse_day(stem: str) -> int | None:
    return _parse(stem, "D")
