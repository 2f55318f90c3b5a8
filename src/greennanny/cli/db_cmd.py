"""`greennanny db stats|maintain|export`: what the store holds and keeps, through the node that owns it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import typer
from rich.table import Table

from greennanny.cli.backend import Backend, open_backend
from greennanny.cli.common import ConfigOpt, ViaOpt, console, friendly, print_json, progress_bar, resolve_config
from greennanny.errors import GreennannyError
from greennanny.store.export import DEFAULT_CHUNK_ROWS, ExportRequest, export_bytes, plan_export
from greennanny.store.export import Progress as ExportProgress

app = typer.Typer(help="Store statistics, compaction and retention.", no_args_is_help=True)

_ROWS = [
    ("series", "series"), ("raw points", "raw_points"), ("  hot (DuckDB rows)", "hot_points"),
    ("  cold (Parquet days)", "cold_points"), ("cold days", "cold_days"), ("cold bytes", "cold_bytes"),
    ("cold bytes per point", "cold_bytes_per_point"), ("DuckDB file bytes", "file_bytes"),
    ("  free blocks in it", "file_free_bytes"), ("WAL bytes", "wal_bytes"),
    ("1-min rollup rows", "rollup_1m_rows"), ("  bytes (day and month files + table)", "rollup_1m_bytes"),
    ("  closed days in Parquet", "rollup_1m_days"),
    ("  closed months in Parquet (stores from before day files)", "rollup_1m_months"), ("1-h rollup rows", "rollup_1h_rows"),
    ("  bytes (month files + table)", "rollup_1h_bytes"), ("  closed months in Parquet", "rollup_1h_months"),
    ("all bytes per raw point", "bytes_per_point"), ("forecasts stored (run x series)", "forecast_runs"), ("ledger rows", "ledger_rows"),
    ("dead letters", "deadletters"), ("free bytes on its disk", "free_bytes"),
]


@app.command("stats")
@friendly
def stats(as_json: bool = typer.Option(False, "--json", help="Print JSON (the API's body)."), config: Path = ConfigOpt,
          via: str = ViaOpt) -> None:
    """Points, series and bytes on disk per tier, and bytes per point."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body: dict[str, Any] = b.get("/db/stats")
    if as_json:
        print_json(body)
        return
    t = Table("", "value")
    for label, key in _ROWS:
        v = body.get(key)
        t.add_row(label, "" if v is None else f"{v:,}" if isinstance(v, int) else str(v))
    console.print(t)


@app.command("maintain")
@friendly
def maintain(as_json: bool = typer.Option(False, "--json", help="Print JSON (the API's body)."), config: Path = ConfigOpt,
             via: str = ViaOpt) -> None:
    """Compact closed days into Parquet and apply retention now (the node does it every interval)."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body: dict[str, Any] = b.post("/db/maintain")
    if as_json:
        print_json(body)
        return
    for k, v in body.items():
        console.print(f"{k}: {v:,}")


@app.command("export")
@friendly
def export(
    fmt: str = typer.Option(..., "--format", help="parquet, csv or line-protocol (InfluxDB 1.x /write and greennanny's own)."),
    out: Path = typer.Option(..., "--out", help="File to write; written as FILE.part and renamed once complete."),
    series: list[str] = typer.Option([], "--series", help="A series id or site/zone/device/quantity, * for any part; repeat for more."),
    site: str = typer.Option(None, help="Only this site."),
    zone: str = typer.Option(None, help="Only this zone."),
    device: str = typer.Option(None, help="Only this device."),
    quantity: str = typer.Option(None, help="Only this quantity, e.g. air_temperature."),
    start: str = typer.Option(None, help="From (inclusive): ISO 8601 with offset (2026-01-01T00:00:00Z), now, or -7d, -12h."),
    end: str = typer.Option(None, help="Until (exclusive), same forms as --start."),
    every: str = typer.Option(None, help="One row per bucket of this width (30s, 15m, 1h, 1d), epoch-aligned."),
    agg: str = typer.Option(None, help="Aggregate per bucket with --every: min, mean (default), max, last, count."),
    include_missing: bool = typer.Option(False, "--include-missing", help="Also export missing and quarantined rows with their reason (csv, parquet; DuckDB store)."),
    chunk_rows: int = typer.Option(DEFAULT_CHUNK_ROWS, help="Rows read from the store per chunk (bounds memory)."),
    config: Path = ConfigOpt,
    via: str = ViaOpt,
) -> None:
    """Export points to Parquet, CSV or line protocol, streamed from the store in chunks."""
    req = ExportRequest(fmt, tuple(series), site, zone, device, quantity, start, end, every, agg, include_missing,
                        chunk_rows)
    part = out.with_name(out.name + ".part")
    try:
        with open_backend(resolve_config(config), prefer=via) as b:
            if b.store is not None:  # no node runs: stream from the file, no HTTP in between
                rows, n_series = _export_from_store(b.store, req, part)
            else:
                rows, n_series = _export_from_api(b, req, part)
        part.replace(out)
    finally:
        part.unlink(missing_ok=True)
    console.print(f"exported {rows:,} rows of {n_series:,} series to {out} ({out.stat().st_size:,} bytes, {fmt}, "
                  f"via {b.via})", highlight=False)



def _export_from_store(store: Any, req: ExportRequest, part: Path) -> tuple[int, int]:
    plan = plan_export(store, req, now_ns=time.time_ns())
    prog = ExportProgress()
    with part.open("wb") as fh, progress_bar(after="{task.fields[info]}") as bar:
        task = bar.add_task("exporting chunks", total=max(len(plan.chunks), 1), info="")
        for data in export_bytes(store, plan, prog):
            fh.write(data)
            bar.update(task, completed=prog.chunks_done, info=f"{prog.rows:,} rows, {prog.bytes:,} bytes")
    return prog.rows, len(plan.series)


def _export_from_api(b: Backend, req: ExportRequest, part: Path) -> tuple[int, int]:
    params: list[tuple[str, str | int | float | bool | None]] = [("format", req.format)]
    params += [("series", s) for s in req.series]
    for name in ("site", "zone", "device", "quantity", "start", "end", "every", "agg"):
        if getattr(req, name):
            params.append((name, getattr(req, name)))
    params += [("include_missing", str(req.include_missing).lower()), ("chunk_rows", str(req.chunk_rows))]
    lines = 0
    try:
        with b.client.stream("GET", "/db/export", params=params) as r:
            if r.status_code >= 400:
                r.read()
                b.json_of(r)  # raises ApiError with the API's message
            with part.open("wb") as fh, progress_bar(after="{task.fields[info]}") as bar:
                task = bar.add_task("exporting through the node's API", total=None, info="")
                for data in r.iter_bytes():
                    fh.write(data)
                    lines += data.count(b"\n")
                    bar.update(task, info=f"{fh.tell():,} bytes")
            n_series = int(r.headers.get("x-export-series", "0"))
    except httpx.HTTPError as exc:
        raise GreennannyError(f"the export from the node stopped early ({exc}); nothing was written to "
                              f"{part.with_suffix('')}") from None
    if req.format == "parquet":
        return pq.ParquetFile(part).metadata.num_rows, n_series
    return (lines - 1 if req.format == "csv" else lines), n_series
