"""Read a greenhouse climate-computer CSV export into one columnar `Batch`.

Why a reader of its own: climate computers export wide CSVs, one row per time and compartment,
in the local wall clock, with vendor missing markers (`NaN`, `M1`, empty). This module is pure (no
store, no network) and returns an `ImportStats` saying what was dropped and why, so an import can
be reconciled with its file before anything is written.

Decisions worth knowing:
- Times are local wall clock in `spec.tz`. The hour repeated at the autumn clock change is resolved
  by row order per zone (first pass summer time, second pass standard time), because the loggers
  write rows in time order and the repeated hour is real data, not duplicates.
- Rows that still land on the same UTC instant in the same zone are last-wins as whole rows: the
  later row is the source's correction, and mixing cells of two rows would invent a row.
- Cells of rows whose time is unusable or superseded are not in the cell counters.
- Times with UTC offsets are refused: this reader is for wall-clock exports.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from greennanny.errors import ConfigError, InputError
from greennanny.model import (
    QUANTITIES,
    Batch,
    Quality,
    SeriesKey,
    check_physical_range,
    round_to_resolution,
)

_DAY_NS = 86_400 * 10**9
_EXAMPLES_PER_COLUMN = 5
# Source unit -> (canonical unit, scale, offset), canonical = value * scale + offset. A unit equal
# to the quantity's canonical unit needs no entry.
_CONVERSIONS: dict[str, tuple[str, float, float]] = {
    "degF": ("degC", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
    "K": ("degC", 1.0, -273.15),
}


@dataclass(frozen=True)
class ColumnMap:
    """One source column -> one canonical quantity; `unit` None means already canonical."""

    column: str
    quantity: str
    unit: str | None = None


@dataclass(frozen=True)
class CsvImportSpec:
    """How to read one export: which columns, which clock, and where the series belong.

    `time_format` None means ISO 8601 (`2018-08-14T00:00:00` or with a space); a strftime format
    otherwise. Set exactly one of `zone_col` (zone per row) and `zone` (one zone for the file).
    """

    time_col: str
    tz: str
    columns: list[ColumnMap]
    site: str
    zone_col: str | None = None
    zone: str | None = None
    device: str = "climate-computer"
    time_format: str | None = None
    na_values: tuple[str, ...] = ("NaN", "NAN", "nan", "", "M1", "NA", "null")


class RejectedCell(NamedTuple):
    """An example of text that could not be used; `line` is the file line (header is line 1)."""

    column: str
    line: int
    text: str


@dataclass
class ImportStats:
    """What happened to the file, so an import can be reconciled with its source."""

    rows: int
    cells_stored: int
    cells_missing: int
    duplicate_instants: int
    ambiguous_resolved: int
    nonexistent_shifted: int
    flagged: int
    per_series: dict[str, int]
    rows_rejected: int = 0  # unparseable time (or empty zone): the whole row is dropped
    cells_rejected: int = 0  # text that is neither a missing marker nor a finite number
    rejected_examples: list[RejectedCell] = field(default_factory=list)


def zone_slug(name: str) -> str:
    """Series-key form of a zone name: lower case, spaces (and slashes) as '-'."""
    return name.strip().lower().replace(" ", "-").replace("/", "-")


def _conversion(cm: ColumnMap) -> tuple[float, float]:
    """(scale, offset) taking `cm.unit` to the quantity's canonical unit, or a ConfigError."""
    if cm.quantity not in QUANTITIES:
        raise ConfigError(
            f"column {cm.column!r}: unknown quantity {cm.quantity!r}; "
            f"known: {', '.join(sorted(QUANTITIES))}"
        )
    target = QUANTITIES[cm.quantity].unit
    if cm.unit is None or cm.unit == target:
        return 1.0, 0.0
    conv = _CONVERSIONS.get(cm.unit)
    if conv is None or conv[0] != target:
        raise ConfigError(
            f"column {cm.column!r}: unit {cm.unit!r} cannot be converted to {target!r} "
            f"for quantity {cm.quantity!r}"
        )
    return conv[1], conv[2]


def _check_spec(spec: CsvImportSpec, available: list[str]) -> list[tuple[float, float]]:
    """Fail before reading the body: a config mistake should name the key, not crash midway."""
    try:
        ZoneInfo(spec.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"tz {spec.tz!r} is not an IANA time zone") from None
    if (spec.zone_col is None) == (spec.zone is None):
        raise ConfigError("set exactly one of zone_col (zone per row) and zone (fixed zone)")
    wanted = [spec.time_col, *([spec.zone_col] if spec.zone_col else [])]
    wanted += [cm.column for cm in spec.columns]
    for name in wanted:
        if name not in available:
            raise ConfigError(f"column {name!r} is not in the file; available: {available}")
    if not spec.columns:
        raise ConfigError("columns is empty: map at least one source column to a quantity")
    seen: dict[str, str] = {}
    for cm in spec.columns:
        if cm.quantity in seen:
            raise ConfigError(
                f"columns {seen[cm.quantity]!r} and {cm.column!r} both map to {cm.quantity!r}; "
                "a zone has one series per quantity"
            )
        seen[cm.quantity] = cm.column
    return [_conversion(cm) for cm in spec.columns]


def _examples(
    column: str, mask: np.ndarray, text: np.ndarray, lines: np.ndarray
) -> list[RejectedCell]:
    idx = np.flatnonzero(mask)[:_EXAMPLES_PER_COLUMN]
    return [RejectedCell(column, int(lines[i]), str(text[i])) for i in idx]


def _second_pass(local_ns: np.ndarray, zone_code: np.ndarray) -> np.ndarray:
    """For ambiguous rows in file order: True where the row is in the repeated (standard) hour.

    Within one zone and one repeated window (the local date), a row is the second pass once the
    wall clock has gone back, i.e. from the first row whose time is <= an earlier row's time on.
    """
    frame = pd.DataFrame({"z": zone_code, "d": local_ns // _DAY_NS, "t": local_ns})
    keys = [frame["z"], frame["d"]]
    prior_max = frame["t"].groupby(keys).cummax().groupby(keys).shift(1)
    backstep = (frame["t"] <= prior_max).astype(np.int8)
    return backstep.groupby(keys).cummax().to_numpy().astype(bool)


def _to_utc_ns(
    local: pd.DatetimeIndex, zone_code: np.ndarray, tz: str
) -> tuple[np.ndarray, int, int]:
    """UTC epoch ns for naive local times (int64 throughout), plus ambiguous/nonexistent counts."""
    local_ns = local.asi8
    if tz == "UTC":
        return local_ns.copy(), 0, 0
    n = len(local)
    dst = local.tz_localize(tz, ambiguous=np.ones(n, bool), nonexistent="NaT").asi8
    std = local.tz_localize(tz, ambiguous=np.zeros(n, bool), nonexistent="NaT").asi8
    utc = dst.copy()
    amb = np.flatnonzero(dst != std)
    if amb.size:
        second = amb[_second_pass(local_ns[amb], zone_code[amb])]
        utc[second] = std[second]
    gap = np.flatnonzero(dst == np.iinfo(np.int64).min)
    if gap.size:
        # A time inside the spring-forward gap is read with the offset in force just before the
        # gap (a logger that has not switched yet), which shifts it forward by the gap's length.
        edge = local[gap].tz_localize(tz, nonexistent="shift_forward").asi8 - 1
        edge_local = pd.DatetimeIndex(edge).tz_localize("UTC").tz_convert(tz).tz_localize(None)
        utc[gap] = local_ns[gap] - (edge_local.asi8 - edge)
    return utc, int(amb.size), int(gap.size)


def _csv(path: Path, **kwargs: object) -> pd.DataFrame:
    """pd.read_csv with its errors translated: a wrong path is config, a broken file is input."""
    try:
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise ConfigError(f"CSV file {str(path)!r} does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV: {exc}", reason="csv_unreadable") from exc


def _rows(
    body: pd.DataFrame, spec: CsvImportSpec, lines: np.ndarray
) -> tuple[np.ndarray, np.ndarray, pd.Index, pd.DatetimeIndex, list[RejectedCell]]:
    """Rows with a usable time and zone: (row positions, zone codes, zone names, local times)."""
    time_text = body[spec.time_col].str.strip()
    # Checked on the text, before parsing: pandas 2 warns about mixed offsets, pandas 3 raises.
    if time_text.str.contains(r"(?:[Zz]|[+-]\d\d:?\d\d)$", regex=True, na=False).any():
        raise InputError(
            f"column {spec.time_col!r} has UTC offsets; this reader takes local wall-clock times",
            reason="time_offsets",
        )
    try:
        with warnings.catch_warnings():  # mixed offsets: pandas warns, then we refuse them below
            warnings.simplefilter("ignore", FutureWarning)
            parsed = pd.to_datetime(
                time_text, format=spec.time_format or "ISO8601", errors="coerce"
            )
    except ValueError as exc:  # a bad strftime directive (newer pandas: also mixed offsets)
        raise ConfigError(
            f"column {spec.time_col!r}, time_format {spec.time_format!r}: cannot parse: {exc}"
        ) from exc
    if not (isinstance(parsed.dtype, np.dtype) and parsed.dtype.kind == "M"):
        raise InputError(
            f"column {spec.time_col!r} has UTC offsets; this reader takes local wall-clock times",
            reason="time_offsets",
        )
    bad = parsed.isna().to_numpy()
    examples = _examples(spec.time_col, bad, time_text.to_numpy(), lines)
    if spec.zone_col:
        zone_text = body[spec.zone_col].map(zone_slug).to_numpy()
        no_zone = (zone_text == "") & ~bad
        examples += _examples(spec.zone_col, no_zone, body[spec.zone_col].to_numpy(), lines)
        keep = np.flatnonzero(~(bad | no_zone))
        zone_code, zone_names = pd.factorize(zone_text[keep])
    else:
        keep = np.flatnonzero(~bad)
        zone_code, zone_names = np.zeros(keep.size, np.intp), pd.Index([zone_slug(str(spec.zone))])
    local = pd.DatetimeIndex(parsed.to_numpy()[keep]).as_unit("ns")  # ns whatever pandas inferred
    return keep, zone_code, zone_names, local, examples


def _assemble(
    keys: list[SeriesKey], key_index: np.ndarray, ts: np.ndarray, values: np.ndarray
) -> Batch:
    """Sort by series then time, round to storage resolution, flag what is physically impossible."""
    order = np.lexsort((ts, key_index))
    key_index, ts = key_index[order].astype(np.int32), ts[order]
    quantities = [k.quantity for k in keys]
    values = round_to_resolution(values[order], quantities, key_index)
    vmin = np.array([QUANTITIES[q].valid_min for q in quantities] or [0.0])[key_index]
    vmax = np.array([QUANTITIES[q].valid_max for q in quantities] or [0.0])[key_index]
    flagged = np.flatnonzero((values < vmin) | (values > vmax))
    quality = np.zeros(values.size, np.uint8)
    quality[flagged] = Quality.FLAGGED
    reasons = {
        int(i): check_physical_range(QUANTITIES[quantities[key_index[i]]], float(values[i]))[1]
        or "outside physical range"
        for i in flagged
    }
    return Batch.from_columns(keys, key_index, ts, values, quality, reasons)


def read_climate_csv(path: str | Path, spec: CsvImportSpec) -> tuple[Batch, ImportStats]:
    """Read `path` per `spec` into a Batch sorted by series then time, and its ImportStats."""
    path = Path(path)
    conversions = _check_spec(spec, [str(c) for c in _csv(path, nrows=0).columns])
    usecols = {spec.time_col, spec.zone_col, *(cm.column for cm in spec.columns)}
    # Text, not numbers: missing markers, junk and real values must be told apart per cell.
    body = _csv(
        path, usecols=lambda c: c in usecols, dtype=str, keep_default_na=False, na_filter=False
    )
    lines = np.arange(2, len(body) + 2)
    keep, zone_code, zone_names, local, examples = _rows(body, spec, lines)
    utc, n_amb, n_gap = _to_utc_ns(local, zone_code, spec.tz)
    superseded = pd.DataFrame({"z": zone_code, "t": utc}).duplicated(keep="last").to_numpy()
    rows, zone_code, utc = keep[~superseded], zone_code[~superseded], utc[~superseded]

    n_cols = len(spec.columns)
    parts_combo, parts_ts, parts_val = [], [], []
    cells_missing = cells_rejected = 0
    for j, (cm, (scale, offset)) in enumerate(zip(spec.columns, conversions, strict=True)):
        text = body[cm.column].to_numpy()[rows]
        stripped = pd.Series(text, dtype=object).str.strip()
        missing = stripped.isin(spec.na_values).to_numpy()
        value = pd.to_numeric(stripped.where(~missing), errors="coerce").to_numpy(np.float64)
        finite = np.isfinite(value)
        junk = ~missing & ~finite
        cells_missing += int(missing.sum())
        cells_rejected += int(junk.sum())
        examples += _examples(cm.column, junk, text, lines[rows])
        parts_combo.append(zone_code[finite].astype(np.int64) * n_cols + j)
        parts_ts.append(utc[finite])
        parts_val.append(value[finite] * scale + offset)

    present, key_index = np.unique(np.concatenate(parts_combo), return_inverse=True)
    keys = [
        SeriesKey(
            spec.site, str(zone_names[c // n_cols]), spec.device, spec.columns[c % n_cols].quantity
        )
        for c in present.tolist()
    ]
    batch = _assemble(keys, key_index, np.concatenate(parts_ts), np.concatenate(parts_val))
    counts = np.bincount(batch.key_index, minlength=len(keys))
    stats = ImportStats(
        rows=len(body),
        cells_stored=len(batch),
        cells_missing=cells_missing,
        duplicate_instants=int(superseded.sum()),
        ambiguous_resolved=n_amb,
        nonexistent_shifted=n_gap,
        flagged=int((batch.quality == Quality.FLAGGED).sum()),
        per_series={str(k): int(c) for k, c in zip(keys, counts, strict=True)},
        rows_rejected=len(body) - keep.size,
        cells_rejected=cells_rejected,
        rejected_examples=examples,
    )
    return batch, stats


def _climate_columns(temp: str, rh: str, co2: str) -> list[ColumnMap]:
    return [
        ColumnMap(temp, "air_temperature", "degC"),
        ColumnMap(rh, "relative_humidity", "%"),
        ColumnMap(co2, "co2", "ppm"),
    ]


# Specs for the shared real-data files (see ../shared/data/README.md); the file each one reads is
# in PRESET_FILES so a command can find it without repeating the name.
PRESETS: dict[str, CsvImportSpec] = {
    "agc2018": CsvImportSpec(
        time_col="time_iso",
        tz="Europe/Amsterdam",
        zone_col="compartment",
        columns=_climate_columns("Tair", "RHair", "CO2air"),
        site="bleiswijk",
    ),
    "osu2024": CsvImportSpec(
        time_col="time_iso",
        tz="America/New_York",
        zone_col="zone",
        columns=_climate_columns("T Air", "RH", "CO2"),
        site="columbus",
    ),
}
PRESET_FILES: dict[str, str] = {
    "agc2018": "agc2018_cucumber_greenhouse_climate.csv.gz",
    "osu2024": "osu2024_tomato_greenhouse_environment.csv.gz",
}
