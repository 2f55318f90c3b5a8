"""`greennanny devices import|list|show|onboard`: the device registry, through the store owner."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from greennanny.cli.backend import open_backend
from greennanny.cli.common import ConfigOpt, ViaOpt, console, friendly, print_json, resolve_config
from greennanny.errors import ConfigError

app = typer.Typer(help="The device registry: devEUI -> codec or field map, site, zone.", no_args_is_help=True)
FIELDS = ("dev_eui", "codec", "model", "field_map", "site", "zone", "name", "interval_s")


def read_devices(path: Path) -> list[dict[str, Any]]:
    """Devices from a CSV (header with FIELDS) or a TOML file with [devices."EUI"] tables."""
    if path.suffix == ".toml":
        data = tomllib.loads(path.read_text())
        return [{"dev_eui": eui, **d} for eui, d in data.get("devices", {}).items()]
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "dev_eui" not in rows[0]:
        raise ConfigError(f"{path}: a CSV needs a header with dev_eui and zone, and codec/model or field_map "
                          f"(columns: {', '.join(FIELDS)})")
    out = []
    for i, row in enumerate(rows, start=2):
        extra = set(row) - set(FIELDS)
        if extra:
            raise ConfigError(f"{path}: line {i}: unknown columns {sorted(extra)}")
        d: dict[str, Any] = {k: v.strip() for k, v in row.items() if v and v.strip()}
        if "interval_s" in d:
            d["interval_s"] = int(d["interval_s"])
        out.append(d)
    return out


@app.command("import")
@friendly
def import_(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV or TOML file of devices."),
            config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Register many devices at once (a later import of the same devEUI replaces it)."""
    devices = read_devices(file)
    with open_backend(resolve_config(config), prefer=via) as b:
        res = b.post("/devices", devices)
    console.print(f"onboarded {res['onboarded']} devices via {b.via}")


@app.command("onboard")
@friendly
def onboard(dev_eui: str = typer.Argument(..., help="16 hex digits."),
            zone: str = typer.Option(..., help="Zone the device is in."),
            codec: str = typer.Option("", help="Payload codec, e.g. milesight."),
            model: str = typer.Option("", help="Device model for the codec, e.g. EM300-TH."),
            field_map: str = typer.Option("", help="Field map for a network-server-decoded object."),
            site: str = typer.Option("", help="Site (default: node.site)."),
            name: str = typer.Option("", help="Human name."),
            interval_s: int = typer.Option(0, help="Expected reporting interval in seconds."),
            replay: bool = typer.Option(True, help="Then replay its kept unknown_device dead letters."),
            config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Register one device; its messages kept as unknown_device become points (deadletters replay)."""
    d = {"dev_eui": dev_eui, "codec": codec, "model": model, "field_map": field_map, "site": site, "zone": zone,
         "name": name, "interval_s": interval_s}
    with open_backend(resolve_config(config), prefer=via) as b:
        b.post("/devices", [d])
        console.print(f"onboarded {dev_eui} via {b.via}")
        if replay:
            res = b.post("/deadletters/replay?reason=unknown_device")
            console.print("replayed unknown_device dead letters: " + json.dumps(res), soft_wrap=True)


@app.command("list")
@friendly
def list_(unknown: bool = typer.Option(False, "--unknown", help="Devices seen but not registered, with samples."),
          as_json: bool = typer.Option(False, "--json", help="Print JSON (the API's body)."),
          config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Registered devices, or (--unknown) unregistered ones with three sample payloads each."""
    with open_backend(resolve_config(config), prefer=via) as b:
        rows = b.get("/devices/unknown" if unknown else "/devices")
    if as_json:
        print_json(rows)
        return
    if unknown:
        for u in rows:
            console.print(f"[bold]{u['device']}[/]  {u['messages']} messages  {u['first']} .. {u['last']}  "
                          f"{', '.join(u['topics'])}")
            for s in u["samples"]:
                console.print(f"    {s[:200]}", highlight=False, markup=False)
        return
    t = Table(*FIELDS)
    for d in rows:
        t.add_row(*(str(d[k]) for k in FIELDS))
    console.print(t)


@app.command("show")
@friendly
def show(dev_eui: str = typer.Argument(..., help="16 hex digits."), config: Path = ConfigOpt,
         via: str = ViaOpt) -> None:
    """One device: its record, its series with latest values, its recent events (JSON)."""
    with open_backend(resolve_config(config), prefer=via) as b:
        print_json(b.get(f"/devices/{dev_eui}"))
