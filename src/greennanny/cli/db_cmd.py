"""`greennanny db stats|maintain`: what the store holds and keeps, through the node that owns it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from greennanny.cli.backend import open_backend
from greennanny.cli.common import ConfigOpt, ViaOpt, console, friendly, print_json, resolve_config

app = typer.Typer(help="Store statistics, compaction and retention.", no_args_is_help=True)

_ROWS = [
    ("series", "series"), ("raw points", "raw_points"), ("  hot (DuckDB rows)", "hot_points"),
    ("  cold (Parquet days)", "cold_points"), ("cold days", "cold_days"), ("cold bytes", "cold_bytes"),
    ("cold bytes per point", "cold_bytes_per_point"), ("DuckDB file bytes", "file_bytes"), ("WAL bytes", "wal_bytes"),
    ("1-min rollup rows", "rollup_1m_rows"), ("  bytes (month files + table)", "rollup_1m_bytes"),
    ("  closed months in Parquet", "rollup_1m_months"), ("1-h rollup rows", "rollup_1h_rows"),
    ("  bytes (month files + table)", "rollup_1h_bytes"), ("  closed months in Parquet", "rollup_1h_months"),
    ("all bytes per raw point", "bytes_per_point"), ("forecast runs", "forecast_runs"), ("ledger rows", "ledger_rows"),
    ("dead letters", "deadletters"),
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
