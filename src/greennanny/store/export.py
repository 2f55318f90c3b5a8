"""Export points to Parquet, CSV or InfluxDB line protocol, in chunks (`greennanny db export`).

Works on the store contract's read API (`series`, `query_many`, and `notes` where the backend
has `unserved_rows`), so it runs on both backends. Memory is bounded by `chunk_rows`: the range
is cut into epoch-aligned time windows (whole days where the data is sparse enough, a divisor of
a day otherwise, a multiple of `every` when downsampling), and the series of a window into
groups whose estimated rows (from each series' point count and span) fit in a chunk. Each chunk is
one `query_many` and is encoded and handed on before the next is read.

Rows come ordered by window, then series (site, zone, device, quantity), then time. Columns:
`time` (UTC; RFC 3339 text in CSV, timestamp[ns, UTC] in Parquet), `site`, `zone`, `device`,
`quantity`, `unit`, `value` (float in the quantity's unit, exactly the stored decimal), `quality`
(`ok`, `flagged`, and with `include_missing` also `missing` / `quarantined`; empty for buckets)
and `reason` (why a row is flagged or missing, where the backend kept it).

Line protocol is the InfluxDB store's own layout (store/influx_lines.py):
`<quantity>,device=..,site=..,zone=.. value=<float>,quality=<int>i <ns>`: `value` always a float,
tags backslash-escaped, timestamps from int64 text, never through a float. It can be written to
InfluxDB 1.x `/write` and to greennanny's own `/write` (which stores `value` and ignores `quality`).
"""

from __future__ import annotations

import fnmatch
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from greennanny.errors import ConfigError, DecodeError
from greennanny.ingest.timeparse import iso_to_ns
from greennanny.model import SeriesKey
from greennanny.store.base import AGGREGATES, CAP_UNSERVED_ROWS, SeriesInfo, not_supported
from greennanny.store.influx_lines import series_prefix, tag_problem

FORMATS = ("parquet", "csv", "line-protocol")
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv; charset=utf-8",
               "line-protocol": "text/plain; charset=utf-8"}
SUFFIXES = {"parquet": ".parquet", "csv": ".csv", "line-protocol": ".lp"}
QUALITY_NAMES = ("ok", "missing", "flagged", "quarantined")  # model.Quality by value
DEFAULT_CHUNK_ROWS = 500_000

SECOND = 1_000_000_000
DAY = 86_400 * SECOND
_UNITS = {"s": SECOND, "m": 60 * SECOND, "h": 3600 * SECOND, "d": DAY, "w": 7 * DAY}
_DURATION = re.compile(r"(\d+)([smhdw])")
# Window widths below a day: each divides a day, so windows never straddle midnight (a cold file).
_SUB_DAY = [w * SECOND for w in (1, 10, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 14400, 21600, 28800, 43200)]

SCHEMA = pa.schema([
    ("time", pa.timestamp("ns", tz="UTC")), ("site", pa.string()), ("zone", pa.string()), ("device", pa.string()),
    ("quantity", pa.string()), ("unit", pa.string()), ("value", pa.float64()), ("quality", pa.string()),
    ("reason", pa.string()),
])


class ReadStore(Protocol):
    """What an export reads: the contract's listing and ranges (store/base.py)."""

    capabilities: frozenset[str]

    def series(self, *, site: str | None = None, zone: str | None = None, quantity: str | None = None,
               device: str | None = None) -> list[SeriesInfo]: ...

    def query_many(self, series_ids: Sequence[int], start_ns: int | None, end_ns: int | None, *,
                   every_ns: int | None = None, agg: Any = "mean") -> pd.DataFrame: ...


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What was asked, as text, the way the CLI options and the API parameters spell it."""

    format: str
    series: tuple[str, ...] = ()
    site: str | None = None
    zone: str | None = None
    device: str | None = None
    quantity: str | None = None
    start: str | None = None
    end: str | None = None
    every: str | None = None
    agg: str | None = None
    include_missing: bool = False
    chunk_rows: int = DEFAULT_CHUNK_ROWS


@dataclass(frozen=True, slots=True)
class Chunk:
    series_ids: tuple[int, ...]
    start_ns: int
    end_ns: int


@dataclass(slots=True)
class ExportPlan:
    format: str
    series: list[SeriesInfo]
    start_ns: int | None
    end_ns: int | None
    every_ns: int | None
    agg: str
    include_missing: bool
    chunks: list[Chunk] = field(default_factory=list)


# -- arguments ---------------------------------------------------------------------------------
def parse_duration(text: str, *, option: str) -> int:
    """`30s`, `15m`, `1h`, `1d`, `2w`, `1h30m` or bare seconds -> ns (ConfigError naming `option`)."""
    t = text.strip().lower()
    if t.isdigit() and int(t) > 0:
        return int(t) * SECOND
    parts = _DURATION.findall(t)
    if not parts or "".join(n + u for n, u in parts) != t or not any(int(n) for n, _ in parts):
        raise ConfigError(f"{option} {text!r} is not a duration like 30s, 15m, 1h, 1d or 2w")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def parse_time(text: str, *, option: str, now_ns: int) -> int:
    """ISO 8601 with an offset (`2026-01-01T00:00:00Z`, `...+01:00`), `now`, or relative to now
    (`-7d`, `-12h`, `-1h30m`) -> epoch ns. Naive text is refused: which zone would it be?"""
    t = text.strip()
    if t.lower() == "now":
        return now_ns
    if t.startswith("-"):  # ISO 8601 text never starts with a minus
        try:
            return now_ns - parse_duration(t[1:], option=option)
        except ConfigError:
            raise ConfigError(f"{option} {text!r} is not a time before now such as -7d, -12h or -1h30m") from None
    iso = t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t
    try:
        parsed = datetime.fromisoformat(re.sub(r"\.(\d+)", lambda m: "." + m.group(1)[:6], iso))
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a time: give ISO 8601 with an offset "
                          "(2026-01-01T00:00:00Z), now, or a time before now such as -7d") from None
    if parsed.tzinfo is None:
        raise ConfigError(f"{option} {text!r} has no UTC offset: add Z or +HH:MM (2026-01-01T00:00:00Z)")
    try:
        return iso_to_ns(t, field=option)
    except DecodeError as exc:
        raise ConfigError(str(exc)) from None


def select_series(store: ReadStore, req: ExportRequest) -> list[SeriesInfo]:
    """The series the filters and selectors name, in listing order; ConfigError for a selector
    (or a set of filters) that names none."""
    listed = store.series(site=req.site or None, zone=req.zone or None, quantity=req.quantity or None,
                          device=req.device or None)
    filters = " ".join(f"--{k} {v!r}" for k, v in (("site", req.site), ("zone", req.zone), ("device", req.device),
                                                    ("quantity", req.quantity)) if v)
    if not req.series:
        if not listed:
            raise ConfigError(f"no series match {filters}" if filters else "the store has no series to export")
        return listed
    chosen: dict[int, SeriesInfo] = {}
    for sel in req.series:
        found = [s for s in listed if _matches(s, sel)]
        if not found:
            where = f" among the series that match {filters}" if filters else ""
            raise ConfigError(f"--series {sel!r} matches no series{where} (a series id or site/zone/device/"
                              "quantity, * for any part; `greennanny series list` shows them)")
        chosen.update((s.id, s) for s in found)
    return [s for s in listed if s.id in chosen]


def _matches(s: SeriesInfo, selector: str) -> bool:
    sel = selector.strip()
    if sel.isdigit():
        return s.id == int(sel)
    parts = sel.split("/")
    if len(parts) != 4:
        raise ConfigError(f"--series {selector!r} is neither a series id nor site/zone/device/quantity")
    return all(fnmatch.fnmatchcase(v, p) for v, p in zip((s.key.site, s.key.zone, s.key.device, s.key.quantity),
                                                          parts, strict=True))


def plan_export(store: ReadStore, req: ExportRequest, *, now_ns: int) -> ExportPlan:
    """Check the request and cut it into chunks; every bad argument is a ConfigError naming it."""
    if req.format not in FORMATS:
        raise ConfigError(f"--format {req.format!r} is not one of {', '.join(FORMATS)}")
    if req.chunk_rows < 1:
        raise ConfigError(f"--chunk-rows {req.chunk_rows} must be at least 1")
    start = None if not req.start else parse_time(req.start, option="--start", now_ns=now_ns)
    end = None if not req.end else parse_time(req.end, option="--end", now_ns=now_ns)
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"--end {req.end!r} is not after --start {req.start!r}")
    every = None if not req.every else parse_duration(req.every, option="--every")
    agg = req.agg or "mean"
    if agg not in AGGREGATES:
        raise ConfigError(f"--agg {agg!r} is not one of {', '.join(AGGREGATES)}")
    if req.agg and every is None:
        raise ConfigError(f"--agg {req.agg!r} needs --every (the bucket width)")
    if req.include_missing:
        if every is not None:
            raise ConfigError("--include-missing does not go with --every: a bucket aggregates served rows only")
        if req.format == "line-protocol":
            raise ConfigError("--include-missing does not go with --format line-protocol: a missing row has no "
                              "value and InfluxDB has no NaN; export csv or parquet")
        if CAP_UNSERVED_ROWS not in store.capabilities:
            raise not_supported(type(store).__name__, "--include-missing",
                                "this backend keeps no missing or quarantined rows")
    series = select_series(store, req)
    if req.format == "line-protocol":
        bad = [f"{s.key} ({why})" for s in series
               for why in [tag_problem(t, getattr(s.key, t)) for t in ("site", "zone", "device")] if why]
        if bad:
            raise ConfigError("these series cannot be written as line protocol; leave them out with --series or "
                              "export csv or parquet: " + "; ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""))
    plan = ExportPlan(req.format, series, start, end, every, agg, req.include_missing)
    plan.chunks = _chunks(series, start, end, every, req.chunk_rows)
    return plan


def _chunks(series: list[SeriesInfo], start: int | None, end: int | None, every: int | None,
            chunk_rows: int) -> list[Chunk]:
    """Windows of time x groups of series, each estimated at no more than `chunk_rows` rows."""
    with_points = [s for s in series if s.points and s.first_ns is not None and s.last_ns is not None]
    if not with_points:
        return []
    lo = min(int(s.first_ns) for s in with_points)  # type: ignore[arg-type]
    hi = max(int(s.last_ns) for s in with_points) + 1  # type: ignore[arg-type]
    lo, hi = (lo if start is None else max(lo, start)), (hi if end is None else min(hi, end))
    if lo >= hi:
        return []
    rate = {s.id: s.points / max(int(s.last_ns) - int(s.first_ns), SECOND)  # type: ignore[arg-type]
            for s in with_points}
    if every is not None:  # a bucket is one row, however many points it holds
        rate = {k: min(r, 1 / every) for k, r in rate.items()}
    width = _width(chunk_rows / max(sum(rate.values()), 1e-30), hi - lo, every)
    out = []
    w_lo = lo
    while w_lo < hi:
        w_hi = min(hi, (w_lo // width + 1) * width)  # epoch-aligned: a bucket never straddles two windows
        group: list[int] = []
        rows = 0.0
        for s in with_points:
            if int(s.last_ns) < w_lo or int(s.first_ns) >= w_hi:  # type: ignore[arg-type]
                continue
            est = min(float(s.points), rate[s.id] * (w_hi - w_lo) + 1)
            if group and rows + est > chunk_rows:
                out.append(Chunk(tuple(group), w_lo, w_hi))
                group, rows = [], 0.0
            group.append(s.id)
            rows += est
        if group:
            out.append(Chunk(tuple(group), w_lo, w_hi))
        w_lo = w_hi
    return out


def _width(ideal_ns: float, span_ns: int, every: int | None) -> int:
    """A window width near `ideal_ns`: whole days, or a divisor of a day, or a multiple of `every`."""
    if ideal_ns >= DAY:
        width = int(min(ideal_ns, span_ns + DAY) // DAY) * DAY
    else:
        width = max([w for w in _SUB_DAY if w <= ideal_ns], default=_SUB_DAY[0])
    if every is not None:
        width = max(every, width // every * every)
    return width


# -- reading -----------------------------------------------------------------------------------
def read_chunk(store: ReadStore, plan: ExportPlan, chunk: Chunk) -> pa.Table:
    """One chunk as a table of SCHEMA, ordered by series (listing order) and time."""
    ids = list(chunk.series_ids)
    if plan.every_ns:
        df = store.query_many(ids, chunk.start_ns, chunk.end_ns, every_ns=plan.every_ns, agg=plan.agg)  # type: ignore[arg-type]
        frame = pd.DataFrame({"series_id": df["series_id"].to_numpy(np.int64), "ts": df["ts"].to_numpy(np.int64),
                              "value": df["value"].to_numpy(np.float64), "quality": np.full(len(df), -1, np.int16),
                              "reason": pd.Series([None] * len(df), dtype=object)})
    else:
        df = store.query_many(ids, chunk.start_ns, chunk.end_ns)
        frame = pd.DataFrame({"series_id": df["series_id"].to_numpy(np.int64), "ts": df["ts"].to_numpy(np.int64),
                              "value": df["value"].to_numpy(np.float64),
                              "quality": df["quality"].to_numpy(np.int16)})
        if CAP_UNSERVED_ROWS in store.capabilities:  # reasons of flagged rows, and the unserved rows
            notes = store.notes(ids, chunk.start_ns, chunk.end_ns)  # type: ignore[attr-defined]
            notes = notes.astype({"series_id": np.int64, "ts": np.int64})
            frame = frame.merge(notes[["series_id", "ts", "reason"]], on=["series_id", "ts"], how="left")
            if plan.include_missing:
                gone = notes[notes["quality"].isin([1, 3])]
                frame = pd.concat([frame, pd.DataFrame({
                    "series_id": gone["series_id"].to_numpy(np.int64), "ts": gone["ts"].to_numpy(np.int64),
                    "value": np.full(len(gone), np.nan), "quality": gone["quality"].to_numpy(np.int16),
                    "reason": gone["reason"].to_numpy(object)})], ignore_index=True)
        else:
            frame["reason"] = pd.Series([None] * len(frame), dtype=object)
    pos = {s.id: i for i, s in enumerate(plan.series)}
    order = np.array([pos[int(s)] for s in frame["series_id"].tolist()], np.int64) if len(frame) else np.empty(0, np.int64)
    frame = frame.assign(_pos=order).sort_values(["_pos", "ts"], kind="stable", ignore_index=True)
    keys = [(s.key, s.unit) for s in plan.series]
    p = frame["_pos"].to_numpy(np.int64)
    q = frame["quality"].to_numpy(np.int16)
    reason = frame["reason"].where(frame["reason"].notna() & (frame["reason"] != ""), None)
    value = frame["value"].to_numpy(np.float64)
    return pa.table({
        "time": pa.array(frame["ts"].to_numpy(np.int64), pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
        "site": _take([k.site for k, _ in keys], p), "zone": _take([k.zone for k, _ in keys], p),
        "device": _take([k.device for k, _ in keys], p), "quantity": _take([k.quantity for k, _ in keys], p),
        "unit": _take([u for _, u in keys], p),
        "value": pa.array(value, pa.float64(), mask=np.isnan(value)),
        "quality": pa.array([QUALITY_NAMES[int(x)] if x >= 0 else None for x in q.tolist()], pa.string()),
        "reason": pa.array(reason.tolist(), pa.string()),
    }, schema=SCHEMA)


def _take(values: list[str], pos: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(pos, pa.int64())) if len(pos) else pa.array([], pa.string())


# -- encoding ----------------------------------------------------------------------------------
class _Sink(io.RawIOBase):
    """A write-only file that hands its bytes on (Parquet is written into it chunk by chunk)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._parts.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def rfc3339(ts: pa.Array) -> pa.Array:
    """UTC RFC 3339 text of timestamps[ns]: `2026-01-01T00:00:00Z`, with as many fraction digits
    as the instant needs (none, 6 or 9), from the integers, never a float."""
    ns = ts.cast(pa.int64()).to_numpy(zero_copy_only=False)
    secs, frac = np.divmod(ns, SECOND)
    base = np.datetime_as_string(secs.astype("datetime64[s]"), unit="s")
    micro = frac % 1000 == 0
    text = [b + ("Z" if f == 0 else f".{f // 1000:06d}Z" if m else f".{f:09d}Z")
            for b, f, m in zip(base.tolist(), frac.tolist(), micro.tolist(), strict=True)]
    return pa.array(text, pa.string())


def line_protocol(table: pa.Table) -> bytes:
    """The lines of a chunk (store/influx_lines.py's layout); buckets carry quality 0."""
    if not table.num_rows:
        return b""
    keys = pa.Table.from_arrays([table["site"], table["zone"], table["device"], table["quantity"]],
                                names=["site", "zone", "device", "quantity"])
    prefixes = {}
    for site, zone, device, quantity in set(zip(*(keys[c].to_pylist() for c in keys.column_names), strict=True)):
        prefixes[(site, zone, device, quantity)] = series_prefix(SeriesKey(site, zone, device, quantity))
    prefix = [prefixes[k] for k in zip(*(keys[c].to_pylist() for c in keys.column_names), strict=True)]
    value = pc.cast(table["value"], pa.string())
    plain = pc.invert(pc.match_substring_regex(value, r"[.eEn]"))  # '25' -> '25.0': a float, never an int
    value = pc.if_else(plain, pc.binary_join_element_wise(value, ".0", ""), value)
    quality = pc.if_else(pc.fill_null(pc.equal(table["quality"], "flagged"), False), "2", "0")
    ts = pc.cast(pc.cast(table["time"], pa.int64()), pa.string())
    lines = pc.binary_join_element_wise(pa.array(prefix, pa.string()), "value=", value, ",quality=", quality, "i ",
                                        ts, "\n", "")
    return "".join(lines.to_pylist()).encode()


class Encoder:
    """Bytes of an export in one format, chunk by chunk: `header`, `chunk(table)`, `end`."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self._sink = _Sink()
        self._parquet: pq.ParquetWriter | None = None

    def header(self) -> bytes:
        if self.fmt == "csv":
            return (",".join(SCHEMA.names) + "\n").encode()
        if self.fmt == "parquet":
            self._parquet = pq.ParquetWriter(self._sink, SCHEMA, compression="zstd")
            return self._sink.take()
        return b""

    def chunk(self, table: pa.Table) -> bytes:
        if self.fmt == "csv":
            if not table.num_rows:
                return b""
            out = io.BytesIO()
            text = table.set_column(0, "time", rfc3339(table["time"]))
            pacsv.write_csv(text, out, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
            return out.getvalue()
        if self.fmt == "parquet":
            assert self._parquet is not None
            if table.num_rows:
                self._parquet.write_table(table)
            return self._sink.take()
        return line_protocol(table)

    def end(self) -> bytes:
        if self._parquet is not None:
            self._parquet.close()
            return self._sink.take()
        return b""


@dataclass
class Progress:
    chunks_done: int = 0
    rows: int = 0
    bytes: int = 0


def export_bytes(store: ReadStore, plan: ExportPlan, progress: Progress | None = None) -> Iterator[bytes]:
    """The export as a stream of byte strings, one chunk read at a time; `progress` is updated
    after each chunk (rows, bytes, chunks done of `len(plan.chunks)`)."""
    prog = progress if progress is not None else Progress()
    enc = Encoder(plan.format)
    head = enc.header()
    prog.bytes += len(head)
    yield head
    for chunk in plan.chunks:
        table = read_chunk(store, plan, chunk)
        data = enc.chunk(table)
        prog.rows += table.num_rows
        prog.bytes += len(data)
        prog.chunks_done += 1
        if data:
            yield data
    tail = enc.end()
    prog.bytes += len(tail)
    yield tail
