"""Exports that go somewhere: line protocol from a DuckDB store written over HTTP into a real
influxd and into a running node's own `/write`, read back and compared point by point; an export
of the InfluxDB backend; and `db export` through a running node's API (the node owns the file)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from greennanny.cli.main import app as cli
from greennanny.errors import NotSupported
from greennanny.runtime.broker import free_port
from greennanny.store.duckdb import DuckDBStore
from greennanny.store.export import ExportRequest, plan_export
from greennanny.store.influx_client import InfluxClient
from greennanny.store.influxdb import InfluxDBStore
from tests.integration.nodeproc import NodeProcess, write_config
from tests.unit.test_store_export import NOW, export, make_store

pytestmark = pytest.mark.integration


def points_by_key(store) -> dict[str, list[tuple[int, float, int]]]:
    """Every served point of a store, by series key: (ts, value, quality)."""
    infos = {s.id: s for s in store.series()}
    df = store.query_many(list(infos), None, None)
    out: dict[str, list[tuple[int, float, int]]] = {}
    for sid, ts, v, q in zip(df["series_id"], df["ts"], df["value"], df["quality"], strict=True):
        out.setdefault(str(infos[int(sid)].key), []).append((int(ts), float(v), int(q)))
    return {k: sorted(v) for k, v in out.items()}


def test_line_protocol_export_written_into_influxdb_reads_back_as_the_same_points(tmp_path: Path, influxd,
                                                                                   influx_database: str) -> None:
    src = make_store(tmp_path / "src.duckdb")
    body = export(src, "line-protocol", chunk_rows=50)
    dst = InfluxDBStore(InfluxClient(influxd.url, influx_database))  # creates the database
    try:
        r = httpx.post(f"{influxd.url}/write", params={"db": influx_database, "precision": "ns"}, content=body,
                       timeout=30)
        assert r.status_code == 204, r.text
        want = points_by_key(src)
        got = points_by_key(dst)
        assert got == want  # keys with spaces, commas and '=' intact; ns exact; values and quality equal
        assert sum(len(v) for v in got.values()) == 599
        # the InfluxDB backend exports too, through the same contract (no reasons: it keeps none)
        a = pd.read_csv(io.BytesIO(export(dst, "csv")), keep_default_na=False).drop(columns="reason")
        b = pd.read_csv(io.BytesIO(export(src, "csv")), keep_default_na=False).drop(columns="reason")
        key = ["site", "zone", "device", "quantity", "time"]
        assert a.sort_values(key, ignore_index=True).equals(b.sort_values(key, ignore_index=True))
        with pytest.raises(NotSupported, match="--include-missing"):
            plan_export(dst, ExportRequest("csv", include_missing=True), now_ns=NOW)
    finally:
        dst.close()
        src.close()


def test_line_protocol_into_a_nodes_own_write_and_export_through_its_api(mosquitto, tmp_path: Path) -> None:
    src = make_store(tmp_path / "src.duckdb")
    body = export(src, "line-protocol", chunk_rows=50)
    want = points_by_key(src)
    want_csv = pd.read_csv(io.BytesIO(export(src, "csv")), keep_default_na=False)
    src.close()
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    cfg = write_config(tmp_path / "node.toml", broker_url=mosquitto.url, api_port=port, data_dir=tmp_path / "data")
    node = NodeProcess(cfg, tmp_path / "node.log")
    node.start(api)
    try:
        r = httpx.post(f"{api}/write", params={"precision": "ns"}, content=body, timeout=30)
        assert r.status_code == 204, r.text
        out = tmp_path / "through-api.csv"
        res = CliRunner().invoke(cli, ["db", "export", "-c", str(cfg), "--via", "api", "--format", "csv", "--out",
                                       str(out), "--chunk-rows", "100"])
        assert res.exit_code == 0, res.output
        assert "exported 599 rows of 4 series" in res.output and "via api" in res.output
        bad = CliRunner().invoke(cli, ["db", "export", "-c", str(cfg), "--via", "api", "--format", "csv", "--out",
                                       str(tmp_path / "bad.csv"), "--end", "-1x"])
        assert bad.exit_code == 1 and "--end '-1x' is not a time before now" in bad.output
        assert not (tmp_path / "bad.csv").exists()
    finally:
        node.stop()
    got_csv = pd.read_csv(out, keep_default_na=False)
    key = ["site", "zone", "device", "quantity", "time"]
    # the node's /write flags the out-of-range value itself, in its own words: compare all but reason
    assert got_csv.drop(columns="reason").sort_values(key, ignore_index=True).equals(
        want_csv.drop(columns="reason").sort_values(key, ignore_index=True))
    dst = DuckDBStore(tmp_path / "data" / "greennanny.duckdb")
    try:
        assert points_by_key(dst) == want
        assert dst.outcome_counts() == {"stored": 1}  # one /write request, one ledger row
    finally:
        dst.close()
