"""`greennanny series list|points|forecast`: the API's /series routes on the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from greennanny.cli.backend import open_backend
from greennanny.cli.common import ConfigOpt, ViaOpt, console, friendly, print_json, relative_time, resolve_config
from greennanny.errors import ConfigError

app = typer.Typer(help="List series, read points and forecasts.", no_args_is_help=True)


@app.command("list")
@friendly
def list_(site: str = typer.Option(None, help="Only this site."), zone: str = typer.Option(None, help="Only this zone."),
          quantity: str = typer.Option(None, help="Only this quantity, e.g. air_temperature."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON (the API's body)."), config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Series with their latest value and unit."""
    with open_backend(resolve_config(config), prefer=via) as b:
        rows: list[dict[str, Any]] = b.get("/series", site=site, zone=zone, quantity=quantity)
    if as_json:
        print_json(rows)
        return
    t = Table("id", "site", "zone", "device", "quantity", "last", "value", "unit", "points")
    for r in rows:
        t.add_row(str(r["id"]), r["site"], r["zone"], r["device"], r["quantity"], r["last"] or "",
                  "" if r["last_value"] is None else f"{r['last_value']:g}", r["unit"], str(r["points"]))
    console.print(t)


@app.command("points")
@friendly
def points(series_id: int, start: str = typer.Option(None, help="ISO 8601, epoch, now, or before now: -7d, -12h"),
           end: str = typer.Option(None, help="ISO 8601, epoch, now, or before now (exclusive)"),
           every: str = typer.Option(None, help="bucket: 300, 5m, 1h, 1d (mean per bucket)"),
           as_json: bool = typer.Option(False, "--json", help="Print JSON (the API's body)."),
           config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Points of one series in a time range, optionally averaged per bucket."""
    from greennanny.store.export import parse_duration

    now = time.time_ns()

    def when(text: str | None, option: str) -> str | None:
        return relative_time(text, option, now)

    every_s = None
    if every is not None:
        ns = parse_duration(every, option="--every")
        if ns % 1_000_000_000:
            raise ConfigError(f"--every {every!r} is not a whole number of seconds")
        every_s = ns // 1_000_000_000
    with open_backend(resolve_config(config), prefer=via) as b:
        body = b.get(f"/series/{series_id}/points", start=when(start, "--start"), end=when(end, "--end"),
                     every=every_s)
    if as_json:
        print_json(body)
        return
    for ts, v in zip(body["ts"], body["value"]):
        print(f"{ts}\t{v}")


@app.command("forecast")
@friendly
def forecast(series_id: int, as_json: bool = typer.Option(False, "--json", help="Print JSON (the API's body)."), config: Path = ConfigOpt,
             via: str = ViaOpt) -> None:
    """The latest forecast of a series: model, backtest error, mean and intervals."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body = b.get(f"/series/{series_id}/forecast")
    if as_json:
        print_json(body)
        return
    mase = "-" if body["backtest_mase"] is None else f"{body['backtest_mase']:.3g}"
    console.print(f"model {body['model']} (backtest MASE {mase}, runner-up {body['runner_up'] or '-'}), "
                  f"as of {body['made_at']}")
    for ts, m, lo, hi in zip(body["ts"], body["mean"], body["lo80"], body["hi80"]):
        print(f"{ts}\t{m}\t[{lo}, {hi}]")
