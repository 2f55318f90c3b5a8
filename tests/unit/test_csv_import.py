"""Climate-computer CSV import: units, markers, clock changes, duplicates, bad files, real data.

Synthetic files are written to tmp_path so every expected value is known exactly; the real-data
tests read ../shared/data in place (never copied into the repo) and skip when it is absent.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.shared_paths import SHARED_DIR

from greennanny.errors import ConfigError, InputError
from greennanny.ingest.csv_import import (
    PRESET_FILES,
    PRESETS,
    ColumnMap,
    CsvImportSpec,
    RejectedCell,
    read_climate_csv,
)
from greennanny.model import Batch, Quality, SeriesKey

SHARED_DATA = SHARED_DIR / "data"


def _ns(iso_utc: str) -> int:
    return int(pd.Timestamp(iso_utc).value)


def _write(tmp_path: Path, text: str, name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _spec(**overrides: object) -> CsvImportSpec:
    base: dict[str, object] = {
        "time_col": "time",
        "tz": "UTC",
        "columns": [ColumnMap("T", "air_temperature", "degC")],
        "site": "lab",
        "zone": "House 1",
    }
    base.update(overrides)
    return CsvImportSpec(**base)  # type: ignore[arg-type]


def _series(batch: Batch, quantity: str, zone: str) -> tuple[list[int], list[float]]:
    """(ts_ns, values) of one series, in batch (time) order."""
    idx = [i for i, k in enumerate(batch.keys) if k.quantity == quantity and k.zone == zone]
    assert len(idx) == 1, batch.keys
    rows = batch.key_index == idx[0]
    return batch.ts_ns[rows].tolist(), batch.value[rows].tolist()


def test_degf_and_kelvin_are_converted_to_degc(tmp_path: Path) -> None:
    path = _write(tmp_path, "time,F,K\n2024-01-01T00:00:00,77,293.15\n2024-01-01T00:05:00,32,0\n")
    spec = _spec(
        columns=[ColumnMap("F", "air_temperature", "degF"), ColumnMap("K", "leaf_temperature", "K")]
    )
    batch, stats = read_climate_csv(path, spec)
    assert _series(batch, "air_temperature", "house-1")[1] == [25.0, 0.0]
    assert _series(batch, "leaf_temperature", "house-1")[1] == [20.0, -273.15]
    assert _series(batch, "air_temperature", "house-1")[0] == [
        _ns("2024-01-01T00:00Z"),
        _ns("2024-01-01T00:05Z"),
    ]
    # 0 K = -273.15 degC is below the physical range: stored, flagged, with a reason.
    assert stats.flagged == 1
    (row,) = np.flatnonzero(batch.quality == Quality.FLAGGED)
    assert "outside physical range" in batch.reasons[int(row)]
    assert batch.keys[0] == SeriesKey("lab", "house-1", "climate-computer", "air_temperature")


def test_missing_markers_skipped_and_junk_rejected_with_examples(tmp_path: Path) -> None:
    text = (
        "time,T,RH\n"
        "2024-01-01T00:00:00,NaN,50\n"
        "2024-01-01T00:05:00,,M1\n"
        "2024-01-01T00:10:00,21.5, \n"
        "2024-01-01T00:15:00,abc,NAN\n"
        "2024-01-01T00:20:00,588.999995,104\n"
    )
    spec = _spec(columns=[ColumnMap("T", "co2", "ppm"), ColumnMap("RH", "relative_humidity", "%")])
    batch, stats = read_climate_csv(_write(tmp_path, text), spec)
    assert stats.rows == 5
    assert stats.cells_missing == 5  # NaN, empty, M1, a lone space, NAN
    assert stats.cells_rejected == 1
    assert stats.rejected_examples == [RejectedCell("T", 5, "abc")]
    assert stats.cells_stored == len(batch) == 4
    assert _series(batch, "co2", "house-1")[1] == [21.5, 589.0]  # rounded to 0.1 ppm
    assert _series(batch, "relative_humidity", "house-1")[1] == [50.0, 104.0]
    assert stats.flagged == 1  # RH 104 % kept but flagged
    assert stats.per_series == {
        "lab/house-1/climate-computer/co2": 2,
        "lab/house-1/climate-computer/relative_humidity": 2,
    }


def _fall_back_rows(zone: str, start: str, first: str, periods: int) -> list[tuple[str, str]]:
    """(zone, local time) rows: `periods` 5-min steps from `start`, repeating `first`'s hour."""
    clock = pd.date_range(start, periods=periods, freq="5min")
    repeat = pd.date_range(first, periods=12, freq="5min")
    cut = clock.get_loc(repeat[-1]) + 1
    times = [*clock[:cut], *repeat, *clock[cut:]]
    return [(zone, t.strftime("%Y-%m-%dT%H:%M:%S")) for t in times]


def test_amsterdam_fall_back_night_keeps_both_hours(tmp_path: Path) -> None:
    rows = _fall_back_rows("A", "2018-10-28 01:00", "2018-10-28 02:00", 36)  # 01:00-03:55
    text = "zone,time,T\n" + "".join(f"{z},{t},{i}\n" for i, (z, t) in enumerate(rows))
    spec = _spec(tz="Europe/Amsterdam", zone=None, zone_col="zone")
    batch, stats = read_climate_csv(_write(tmp_path, text), spec)
    ts, values = _series(batch, "air_temperature", "a")
    assert stats.ambiguous_resolved == 24
    assert stats.duplicate_instants == 0
    assert len(ts) == len(set(ts)) == 48
    assert values == [float(i) for i in range(48)]  # file order == UTC order: nothing swapped
    first_0200, second_0200 = values.index(12.0), values.index(24.0)
    assert ts[first_0200] == _ns("2018-10-28T00:00Z")  # 02:00 CEST
    assert ts[second_0200] == _ns("2018-10-28T01:00Z")  # 02:00 CET
    assert ts[0] == _ns("2018-10-27T23:00Z") and ts[-1] == _ns("2018-10-28T02:55Z")
    assert np.all(np.diff(ts) == 5 * 60 * 10**9)


def test_new_york_fall_back_per_zone_with_interleaved_zones(tmp_path: Path) -> None:
    a = _fall_back_rows("KoPilot", "2024-11-03 00:00", "2024-11-03 01:00", 36)
    b = _fall_back_rows("Reference", "2024-11-03 00:00", "2024-11-03 01:00", 36)
    rows = [r for pair in zip(a, b, strict=True) for r in pair]  # zones alternate row by row
    text = "zone,time,T\n" + "".join(f"{z},{t},{i // 2}\n" for i, (z, t) in enumerate(rows))
    spec = _spec(tz="America/New_York", zone=None, zone_col="zone")
    batch, stats = read_climate_csv(_write(tmp_path, text), spec)
    assert stats.ambiguous_resolved == 48
    assert stats.duplicate_instants == 0
    for zone in ("kopilot", "reference"):
        ts, values = _series(batch, "air_temperature", zone)
        assert len(set(ts)) == 48
        assert ts[values.index(12.0)] == _ns("2024-11-03T05:00Z")  # 01:00 EDT
        assert ts[values.index(24.0)] == _ns("2024-11-03T06:00Z")  # 01:00 EST
        assert np.all(np.diff(ts) == 5 * 60 * 10**9)


def test_second_pass_detected_after_a_gap_in_the_first(tmp_path: Path) -> None:
    # First pass stops at 02:30 (logger gap); the second pass's 02:35-02:55 must not be read as
    # summer time just because it is later than anything seen in the first pass.
    first = [f"2018-10-28T02:{m:02d}:00" for m in range(0, 35, 5)]
    second = [f"2018-10-28T02:{m:02d}:00" for m in range(0, 60, 5)]
    text = "time,T\n" + "".join(f"{t},{i}\n" for i, t in enumerate(first + second))
    batch, stats = read_climate_csv(_write(tmp_path, text), _spec(tz="Europe/Amsterdam"))
    ts, values = _series(batch, "air_temperature", "house-1")
    assert stats.ambiguous_resolved == 19 and stats.duplicate_instants == 0
    assert ts[values.index(18.0)] == _ns("2018-10-28T01:55Z")  # second-pass 02:55 CET


def test_spring_forward_gap_time_is_shifted_and_counted(tmp_path: Path) -> None:
    text = "time,T\n2019-03-31T01:55:00,1\n2019-03-31T02:30:00,2\n2019-03-31T03:00:00,3\n"
    batch, stats = read_climate_csv(_write(tmp_path, text), _spec(tz="Europe/Amsterdam"))
    assert stats.nonexistent_shifted == 1
    assert batch.ts_ns.tolist() == [
        _ns("2019-03-31T00:55Z"),
        _ns("2019-03-31T01:00Z"),  # 03:00 CEST
        _ns("2019-03-31T01:30Z"),  # 02:30 read with the CET offset (= 03:30 CEST)
    ]
    assert batch.value.tolist() == [1.0, 3.0, 2.0]


def test_duplicate_instants_last_row_wins_per_zone(tmp_path: Path) -> None:
    text = (
        "zone,time,T,RH\n"
        "a,2024-01-01T00:00:00,10,50\n"
        "b,2024-01-01T00:00:00,30,70\n"
        "a,2024-01-01T00:00:00,11,NaN\n"
        "a,2024-01-01T00:05:00,12,52\n"
    )
    spec = _spec(
        zone=None,
        zone_col="zone",
        columns=[ColumnMap("T", "air_temperature"), ColumnMap("RH", "relative_humidity")],
    )
    batch, stats = read_climate_csv(_write(tmp_path, text), spec)
    assert stats.duplicate_instants == 1
    assert _series(batch, "air_temperature", "a")[1] == [11.0, 12.0]
    # Whole-row last-wins: the later row had no RH, so 00:00 has no RH for zone a.
    assert _series(batch, "relative_humidity", "a") == ([_ns("2024-01-01T00:05Z")], [52.0])
    assert _series(batch, "air_temperature", "b")[1] == [30.0]
    assert stats.cells_missing == 1 and stats.cells_stored == 5


def test_unparseable_times_rejected_with_examples(tmp_path: Path) -> None:
    text = "time,T\n2024-01-01T00:00:00,1\nnot a time,2\n,3\n2024-13-01T00:00:00,4\n"
    batch, stats = read_climate_csv(_write(tmp_path, text), _spec())
    assert stats.rows == 4 and stats.rows_rejected == 3
    assert stats.rejected_examples == [
        RejectedCell("time", 3, "not a time"),
        RejectedCell("time", 4, ""),
        RejectedCell("time", 5, "2024-13-01T00:00:00"),
    ]
    assert batch.value.tolist() == [1.0]


def test_utc_offsets_and_bad_time_format_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "time,T\n2024-01-01T00:00:00+01:00,1\n2024-07-01T00:00:00+02:00,2\n")
    with pytest.raises(InputError, match=r"column 'time' has UTC offsets"):
        read_climate_csv(path, _spec())
    naive = _write(tmp_path, "time,T\n2024-01-01T00:00:00,1\n")
    with pytest.raises(ConfigError, match=r"time_format '%Q'"):
        read_climate_csv(naive, _spec(time_format="%Q"))


def test_missing_column_error_names_column_and_lists_available(tmp_path: Path) -> None:
    path = _write(tmp_path, "time,Tair\n2024-01-01T00:00:00,1\n")
    with pytest.raises(ConfigError, match=r"'T'.*available: \['time', 'Tair'\]"):
        read_climate_csv(path, _spec())
    with pytest.raises(ConfigError, match=r"'stamp'.*available"):
        read_climate_csv(path, _spec(time_col="stamp", columns=[ColumnMap("Tair", "co2")]))


def test_unknown_unit_or_quantity_names_the_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "time,T\n2024-01-01T00:00:00,1\n")
    with pytest.raises(ConfigError, match=r"column 'T': unit 'degR'"):
        read_climate_csv(path, _spec(columns=[ColumnMap("T", "air_temperature", "degR")]))
    with pytest.raises(ConfigError, match=r"column 'T': unit 'degF'"):
        read_climate_csv(path, _spec(columns=[ColumnMap("T", "co2", "degF")]))
    with pytest.raises(ConfigError, match=r"column 'T': unknown quantity 'temp'"):
        read_climate_csv(path, _spec(columns=[ColumnMap("T", "temp")]))


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not present (needs the shared data folder beside the repo)")
    return path


def test_agc2018_cells_match_an_independent_count() -> None:
    path = _shared(PRESET_FILES["agc2018"])
    batch, stats = read_climate_csv(path, PRESETS["agc2018"])
    cols = ["Tair", "RHair", "CO2air"]
    frame = pd.read_csv(path)
    superseded = frame.duplicated(["compartment", "time_iso"], keep="last")
    expected = int(frame[cols].notna().sum().sum()) - int(
        frame.loc[superseded, cols].notna().sum().sum()
    )
    print(f"agc2018: independent non-missing cells {expected}, imported {stats.cells_stored}")
    assert stats.cells_stored == len(batch) == expected
    assert stats.rows == len(frame) == 198_798
    assert stats.rows_rejected == stats.cells_rejected == 0
    assert len(batch.keys) == 18  # 6 compartments x 3 quantities


def test_osu2024_keeps_its_duplicated_dst_timestamps_as_distinct_instants() -> None:
    path = _shared(PRESET_FILES["osu2024"])
    batch, stats = read_climate_csv(path, PRESETS["osu2024"])
    frame = pd.read_csv(path)
    repeated = frame[frame.duplicated(["zone", "time_iso"], keep=False)]
    per_zone = repeated.groupby("zone")["time_iso"].nunique().to_dict()
    print(
        f"osu2024: repeated local timestamps per zone {per_zone}, stats {stats.ambiguous_resolved}"
    )
    assert per_zone == {"KoPilot": 12, "Reference": 12}
    assert stats.ambiguous_resolved == 48 and stats.duplicate_instants == 0
    ts, values = _series(batch, "air_temperature", "kopilot")
    assert len(ts) == len(set(ts)) == 41_713  # every row of the zone kept
    at = dict(zip(ts, values, strict=True))
    assert at[_ns("2024-11-03T05:00Z")] == 20.5  # first 01:00 (EDT) in the file
    assert at[_ns("2024-11-03T06:00Z")] == 19.3  # second 01:00 (EST)


def test_gzip_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "export.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("time,T\n2024-01-01T00:00:00,1.234\n")
    batch, _ = read_climate_csv(path, _spec())
    assert batch.value.tolist() == [1.23]
