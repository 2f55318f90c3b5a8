"""`greennanny db export` (store/export.py): Parquet, CSV and line protocol from a real DuckDB
store, read back and compared with the store's own queries; chunking, missing rows, escaping,
the API route, the CLI and bad arguments."""

from __future__ import annotations

import io
import math
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from greennanny.api.app import create_app
from greennanny.cli.backend import InProcessTransport
from greennanny.cli.main import app as cli
from greennanny.config import config_from_dict
from greennanny.decoders.line_protocol import parse
from greennanny.errors import ConfigError
from greennanny.ingest.timeparse import iso_to_ns
from greennanny.model import Batch, SeriesKey
from greennanny.store.duckdb import DuckDBStore
from greennanny.store.export import FORMATS, ExportRequest, export_bytes, plan_export, read_chunk

T0 = 1_767_225_600_123_456_789  # 2026-01-01T00:00:00.123456789Z: ns digits a float would lose
MIN = 60 * 10**9
NOW = T0 + 10 * 86_400 * 10**9
KEYS = [
    SeriesKey("gh", "house 1", "probe,1", "air_temperature"),  # space and comma
    SeriesKey("gh", "zone=a", "probe 2=b", "relative_humidity"),  # equals signs and a space
    SeriesKey("gh", "house-2", "co2-9", "co2"),
    SeriesKey("lab", "bench", "probe-1", "air_temperature"),
]


def make_store(path: Path, n: int = 600) -> DuckDBStore:
    """Four series over three days (n rows at 7-min steps, interleaved), a flagged row with its
    reason, a missing row with its reason, and values that are not exact in binary."""
    store = DuckDBStore(path)
    k = np.arange(n) % len(KEYS)
    ts = T0 + np.arange(n, dtype=np.int64) * 7 * MIN + k  # a few ns apart per series
    value = np.round(np.where(k == 2, 400 + np.arange(n) * 0.1, 20 + np.sin(np.arange(n) / 9) * 5), 2)
    value[10] = 25.0  # a whole number: line protocol must still write 25.0
    quality = np.zeros(n, np.uint8)
    value[8], quality[8] = 95.5, 2  # flagged: beyond air_temperature's range
    value[12], quality[12] = np.nan, 1  # missing
    reasons = {8: "air_temperature: 95.5 is above 70", 12: "air_temperature='err' is not a number"}
    store.write(Batch(KEYS, k.astype(np.int32), ts, value, quality, reasons))
    return store


@pytest.fixture
def store(tmp_path: Path):
    st = make_store(tmp_path / "greennanny.duckdb")
    yield st
    st.close()


def export(store: DuckDBStore, fmt: str, **kw) -> bytes:
    plan = plan_export(store, ExportRequest(fmt, **kw), now_ns=NOW)
    return b"".join(export_bytes(store, plan))


def stored(store: DuckDBStore, **kw) -> pd.DataFrame:
    """What query_many serves, with the series key parts, sorted like an export of one window."""
    infos = {s.id: s for s in store.series()}
    df = store.query_many(list(infos), None, None, **kw)
    df["key"] = [str(infos[int(s)].key) for s in df["series_id"]]
    return df.sort_values(["key", "ts"], ignore_index=True)


def test_parquet_reads_back_with_pyarrow_as_the_stores_query(store: DuckDBStore) -> None:
    table = pq.read_table(io.BytesIO(export(store, "parquet")))
    assert str(table.schema.field("time").type) == "timestamp[ns, tz=UTC]"
    got = table.to_pandas()
    got["ts"] = table["time"].cast("int64").to_numpy()
    got["key"] = got["site"] + "/" + got["zone"] + "/" + got["device"] + "/" + got["quantity"]
    got = got.sort_values(["key", "ts"], ignore_index=True)
    want = stored(store)
    assert got["ts"].tolist() == want["ts"].tolist()  # exact to the nanosecond
    assert got["key"].tolist() == want["key"].tolist()
    assert got["value"].tolist() == want["value"].tolist()  # the stored decimals, bit for bit
    assert got["quality"].tolist() == ["flagged" if q == 2 else "ok" for q in want["quality"]]
    assert set(got["unit"]) == {"degC", "%", "ppm"}
    flagged = got[got["quality"] == "flagged"]
    assert flagged["reason"].tolist() == ["air_temperature: 95.5 is above 70"]
    assert got["reason"].isna().sum() == len(got) - 1
    assert len(got) == 599  # the missing row is not exported by default


def test_csv_parses_back_to_the_stores_query(store: DuckDBStore) -> None:
    got = pd.read_csv(io.BytesIO(export(store, "csv")), dtype={"reason": str}, keep_default_na=False)
    assert list(got.columns) == ["time", "site", "zone", "device", "quantity", "unit", "value", "quality", "reason"]
    assert all(t.endswith("Z") for t in got["time"])
    got["ts"] = [iso_to_ns(t) for t in got["time"]]
    got["key"] = got["site"] + "/" + got["zone"] + "/" + got["device"] + "/" + got["quantity"]
    got = got.sort_values(["key", "ts"], ignore_index=True)
    want = stored(store)
    assert got["ts"].tolist() == want["ts"].tolist()
    assert got["key"].tolist() == want["key"].tolist()
    assert got["value"].astype(float).tolist() == want["value"].tolist()
    assert got.loc[got["quality"] == "flagged", "reason"].tolist() == ["air_temperature: 95.5 is above 70"]


def test_missing_rows_are_left_out_unless_asked_for_and_then_carry_their_reason(store: DuckDBStore) -> None:
    got = pd.read_csv(io.BytesIO(export(store, "csv", include_missing=True)), keep_default_na=False)
    assert len(got) == 600
    missing = got[got["quality"] == "missing"]
    assert len(missing) == 1 and missing["value"].tolist() == [""]
    assert missing["reason"].tolist() == ["air_temperature='err' is not a number"]
    table = pq.read_table(io.BytesIO(export(store, "parquet", include_missing=True)))
    rows = table.to_pylist()
    gone = [r for r in rows if r["quality"] == "missing"]
    assert len(rows) == 600 and len(gone) == 1 and gone[0]["value"] is None


def test_line_protocol_escapes_tags_writes_floats_and_exact_nanoseconds(store: DuckDBStore) -> None:
    body = export(store, "line-protocol")
    lines = body.decode().splitlines()
    assert r"air_temperature,device=probe\,1,site=gh,zone=house\ 1 value=" in body.decode()
    assert r"relative_humidity,device=probe\ 2\=b,site=gh,zone=zone\=a value=" in body.decode()
    assert any(" value=25.0,quality=0i " in ln for ln in lines)  # a whole number still a float
    assert not any("i," in ln.split(" value=")[1].split(",quality")[0] for ln in lines)
    result = parse(body, precision="ns", default_time_ns=0)  # greennanny's own line-protocol reader
    assert not result.errors
    got = sorted((str(SeriesKey(p.tags["site"], p.tags["zone"], p.tags["device"], p.measurement)), p.time_ns,
                  {k: (kind, raw) for k, kind, raw in p.fields}) for p in result.points)
    want = stored(store)
    assert [(k, t) for k, t, _ in got] == list(zip(want["key"], want["ts"], strict=True))
    assert [f["value"] for _, _, f in got] == [("float", v) for v in want["value"]]
    assert [f["quality"][1] for _, _, f in got] == [int(q) for q in want["quality"]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_small_chunk_size_reads_many_chunks_and_gives_the_same_export(store: DuckDBStore, fmt: str) -> None:
    plan = plan_export(store, ExportRequest(fmt, chunk_rows=25), now_ns=NOW)
    assert len(plan.chunks) >= 20  # 600 rows in chunks of about 25
    sizes = [read_chunk(store, plan, c).num_rows for c in plan.chunks]
    assert sum(sizes) == 599 and max(sizes) <= 2 * 25
    small = b"".join(export_bytes(store, plan))
    whole = export(store, fmt)
    if fmt == "parquet":  # row groups differ; the rows may not
        a, b = pq.read_table(io.BytesIO(small)), pq.read_table(io.BytesIO(whole))
        assert a.num_rows == b.num_rows == 599
        key = ["site", "zone", "device", "quantity", "time"]
        assert a.sort_by([(c, "ascending") for c in key]).equals(b.sort_by([(c, "ascending") for c in key]))
    else:
        assert sorted(small.splitlines()) == sorted(whole.splitlines())
        assert len(small.splitlines()) == 599 + (fmt == "csv")


def test_downsampled_export_equals_query_many_per_bucket(store: DuckDBStore) -> None:
    table = pq.read_table(io.BytesIO(export(store, "parquet", every="1h", agg="max", chunk_rows=10)))
    got = table.to_pandas()
    got["ts"] = table["time"].cast("int64").to_numpy()
    got["key"] = got["site"] + "/" + got["zone"] + "/" + got["device"] + "/" + got["quantity"]
    got = got.sort_values(["key", "ts"], ignore_index=True)
    want = stored(store, every_ns=60 * MIN, agg="max")
    assert got["ts"].tolist() == want["ts"].tolist() and got["value"].tolist() == want["value"].tolist()
    assert got["quality"].isna().all()  # a bucket has no quality of its own


def test_filters_selectors_and_time_range(store: DuckDBStore) -> None:
    start, end = "2026-01-01T12:00:00Z", "2026-01-02T00:00:00+00:00"
    body = export(store, "csv", series=("gh/*/*/air_temperature", "3"), start=start, end=end)
    got = pd.read_csv(io.BytesIO(body))
    ids = {s.id: s for s in store.series()}
    air = next(i for i, s in ids.items() if s.key == KEYS[0])
    want = store.query_many(sorted({air, 3}), iso_to_ns(start), iso_to_ns(end))
    assert len(got) == len(want) > 0
    assert set(got["device"]) == {"probe,1", ids[3].key.device}
    lab = pd.read_csv(io.BytesIO(export(store, "csv", site="lab", start="-10d", end="now")))
    assert set(lab["site"]) == {"lab"} and len(lab) == 150


@pytest.mark.parametrize(("kw", "message"), [
    ({"format": "xml"}, "--format 'xml' is not one of parquet, csv, line-protocol"),
    ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
     "--end '2026-01-01T00:00:00Z' is not after --start '2026-01-02T00:00:00Z'"),
    ({"series": ("gh/house 9/x/co2",)}, "--series 'gh/house 9/x/co2' matches no series"),
    ({"series": ("99",)}, "--series '99' matches no series"),
    ({"series": ("gh/co2",)}, "--series 'gh/co2' is neither a series id nor site/zone/device/quantity"),
    ({"site": "nowhere"}, "no series match --site 'nowhere'"),
    ({"start": "2026-01-01T00:00:00"}, "--start '2026-01-01T00:00:00' has no UTC offset"),
    ({"start": "yesterday"}, "--start 'yesterday' is not a time"),
    ({"start": "-7x"}, "--start '-7x' is not a time before now"),
    ({"every": "1x"}, "--every '1x' is not a duration"),
    ({"agg": "max"}, "--agg 'max' needs --every"),
    ({"every": "1h", "agg": "median"}, "--agg 'median' is not one of min, mean, max, last, count"),
    ({"format": "line-protocol", "include_missing": True}, "--include-missing does not go with --format line-protocol"),
])
def test_bad_arguments_name_the_argument_and_its_value(store: DuckDBStore, kw: dict, message: str) -> None:
    fmt = kw.pop("format", "csv")
    with pytest.raises(ConfigError) as err:
        plan_export(store, ExportRequest(fmt, **kw), now_ns=NOW)
    assert message in str(err.value)


def test_a_tag_line_protocol_cannot_carry_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "s.duckdb")
    key = SeriesKey("gh", "house\\1", "probe", "co2")
    store.write(Batch.from_columns([key], np.zeros(1, np.int32), np.array([T0]), np.array([400.0])))
    with pytest.raises(ConfigError, match=r"cannot be written as line protocol.*backslash"):
        plan_export(store, ExportRequest("line-protocol"), now_ns=NOW)
    assert pd.read_csv(io.BytesIO(export(store, "csv")))["zone"].tolist() == ["house\\1"]
    store.close()


def test_the_api_route_streams_the_same_bytes_and_refuses_bad_arguments(tmp_path: Path) -> None:
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path)}}, base_dir=tmp_path)
    store = make_store(cfg.store_path)
    try:
        with httpx.Client(transport=InProcessTransport(create_app(cfg, store)), base_url="http://local") as c:
            for fmt in FORMATS:
                r = c.get("/db/export", params={"format": fmt, "chunk_rows": 40})
                assert r.status_code == 200 and r.headers["x-export-series"] == "4"
                assert r.content == export(store, fmt, chunk_rows=40)  # the same module, byte for byte
            bad = c.get("/db/export", params={"format": "csv", "start": "2026-01-01"})
            assert bad.status_code == 400
            assert "--start '2026-01-01' has no UTC offset" in bad.json()["error"]["message"]
    finally:
        store.close()


def test_cli_exports_from_the_file_and_names_a_bad_argument(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\n[api]\nport = 1\n'
                                        'token_file = ""\n')
    make_store(tmp_path / "data" / "greennanny.duckdb").close()
    out = tmp_path / "out.csv"
    runner = CliRunner()
    res = runner.invoke(cli, ["db", "export", "-c", str(tmp_path / "node.toml"), "--format", "csv", "--out", str(out),
                              "--quantity", "co2", "--chunk-rows", "30"])
    assert res.exit_code == 0, res.output
    assert "exported 150 rows of 1 series" in res.output and "via file" in res.output
    got = pd.read_csv(out)
    assert len(got) == 150 and set(got["quantity"]) == {"co2"} and not math.isnan(got["value"].sum())
    assert not (tmp_path / "out.csv.part").exists()
    res = runner.invoke(cli, ["db", "export", "-c", str(tmp_path / "node.toml"), "--format", "csv", "--out",
                              str(tmp_path / "x.csv"), "--series", "gh/none/x/co2"])
    assert res.exit_code == 2 and "--series 'gh/none/x/co2' matches no series" in res.output
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.csv.part").exists()
