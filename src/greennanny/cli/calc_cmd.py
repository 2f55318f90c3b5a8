"""`greennanny calc vpd|leaf-vpd|dewpoint|humidity|dli`: one crop-climate figure from given inputs,
printed as JSON, for a grower's quick check (processors/climate.py; no node, no store)."""

from __future__ import annotations

from typing import Any

import typer

from greennanny.cli.common import friendly, print_json
from greennanny.processors import climate

app = typer.Typer(help="Crop-climate figures from given inputs (VPD, dew point, humidity, DLI), as JSON.",
                  no_args_is_help=True)
TOpt = typer.Option(..., "--t", help="Air temperature, degC.")
RhOpt = typer.Option(..., "--rh", help="Relative humidity, % (0-100).")
FormulaOpt = typer.Option("fao56", "--formula", help="Saturation vapour pressure: fao56 (Tetens, FAO-56) or "
                                                     "alduchov (Magnus, Alduchov & Eskridge).")


def _out(metric: str, value: Any, unit: str, inputs: dict[str, Any], **extra: Any) -> None:
    print_json({"metric": metric, "value": round(float(value), 4), "unit": unit, "inputs": inputs, **extra})


@app.command("vpd")
@friendly
def vpd(t: float = TOpt, rh: float = RhOpt, formula: str = FormulaOpt) -> None:
    """Air vapour pressure deficit (kPa)."""
    _out("vpd_air", climate.vpd_air(t, rh, formula), "kPa", {"t": t, "rh": rh}, formula=formula)


@app.command("leaf-vpd")
@friendly
def leaf_vpd(t: float = TOpt, rh: float = RhOpt,
             t_leaf: float = typer.Option(None, "--t-leaf", help="Measured leaf temperature, degC."),
             leaf_offset: float = typer.Option(None, "--leaf-offset", help="Or: leaf minus air temperature, degC."),
             formula: str = FormulaOpt) -> None:
    """Leaf-to-air vapour pressure deficit (kPa), from a leaf temperature or an offset to the air's."""
    if (t_leaf is None) == (leaf_offset is None):
        raise climate.InputError("give --t-leaf or --leaf-offset (one of them)")
    leaf = t_leaf if t_leaf is not None else t + float(leaf_offset)
    _out("vpd_leaf", climate.vpd_leaf(t, rh, leaf, formula), "kPa", {"t": t, "rh": rh, "t_leaf": leaf},
         formula=formula)


@app.command("dewpoint")
@friendly
def dewpoint(t: float = TOpt, rh: float = RhOpt,
             t_surface: float = typer.Option(None, "--t-surface", help="A cover or leaf temperature, degC: "
                                                                        "also print its margin above the dew point.")) -> None:
    """Dew point (degC, Magnus-Sonntag), and a surface's margin above it (condensation at <= 0)."""
    extra = {} if t_surface is None else {"margin_degC": round(float(climate.dew_point_margin(t_surface, t, rh)), 4)}
    _out("dew_point", climate.dew_point(t, rh), "degC", {"t": t, "rh": rh, "t_surface": t_surface},
         formula="magnus-sonntag (17.62, 243.12)", **extra)


@app.command("humidity")
@friendly
def humidity(t: float = TOpt, rh: float = RhOpt, formula: str = FormulaOpt) -> None:
    """Absolute humidity and humidity deficit (g/m3)."""
    _out("absolute_humidity", climate.absolute_humidity(t, rh, formula), "g/m3", {"t": t, "rh": rh},
         formula=formula, humidity_deficit_g_m3=round(float(climate.humidity_deficit(t, rh, formula)), 4))


@app.command("dli")
@friendly
def dli(ppfd: float = typer.Option(..., "--ppfd", help="Mean PPFD over the photoperiod, umol/m2/s."),
        hours: float = typer.Option(..., "--hours", min=0, max=24, help="Photoperiod, hours.")) -> None:
    """Daily light integral (mol/m2/d) of a mean PPFD held for a photoperiod."""
    climate.check_inputs(ppfd=ppfd)
    _out("dli", ppfd * hours * 3600 / 1e6, "mol/m2/d", {"ppfd": ppfd, "hours": hours})
