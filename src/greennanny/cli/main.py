"""The `greennanny` command: one typer app, one module per command group."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from greennanny import __version__
from greennanny.cli import (
    alerts_cmd,
    calc_cmd,
    config_cmd,
    data_cmds,
    db_cmd,
    devices_cmd,
    forecast_cmd,
    models_cmd,
    series_cmd,
)
from greennanny.cli.common import ConfigOpt, friendly, resolve_config, stop_on_sigterm

app = typer.Typer(help="greennanny: edge node for greenhouses and vertical farms.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(config_cmd.app, name="config")
app.add_typer(series_cmd.app, name="series")
app.add_typer(data_cmds.deadletters_app, name="deadletters")
app.add_typer(devices_cmd.app, name="devices")
app.add_typer(db_cmd.app, name="db")
app.add_typer(forecast_cmd.app, name="forecast")
app.add_typer(models_cmd.app, name="models")
app.add_typer(calc_cmd.app, name="calc")
app.add_typer(alerts_cmd.app, name="alerts")
app.command("import")(data_cmds.import_cmd)
app.command("replay")(data_cmds.replay_cmd)
app.command("decode")(data_cmds.decode_cmd)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command("version")
def version() -> None:
    """Print the version."""
    print(__version__)


@app.command("run")
@friendly
def run(config: Path = ConfigOpt, verbose: bool = typer.Option(False, "-v", "--verbose", help="Log debug messages.")) -> None:
    """Run the edge node: MQTT ingest, store, forecasts and the API, until Ctrl-C."""
    from greennanny.runtime.server import serve_node

    stop_on_sigterm()
    _logging(verbose)
    serve_node(resolve_config(config))


@app.command("demo")
@friendly
def demo(once: bool = typer.Option(False, "--once", help="Run to completion, print the summary, exit."),
         broker: str = typer.Option(None, help="Use this broker (mqtt://host:port) instead of a private Mosquitto."),
         data_dir: Path = typer.Option(Path("demo-data"), help="Demo data directory (recreated on each run)."),
         port: int = typer.Option(0, help="API/dashboard port (0: a free one)."),
         simulator: bool = typer.Option(False, help="Use the built-in greenhouse simulator even when real data is present."),
         shared: Path = typer.Option(None, help="Folder with the shared real data (default: ../shared beside the checkout)."),
         as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
         verbose: bool = typer.Option(False, "-v", "--verbose", help="Log debug messages.")) -> None:
    """Broker + node + API on real greenhouse data (or the simulator): import, replay, forecast, serve."""
    from greennanny.runtime.demo import run_demo

    stop_on_sigterm()
    _logging(verbose)
    if not verbose:
        logging.getLogger().setLevel(logging.WARNING)
    run_demo(once=once, broker=broker, data_dir=data_dir, port=port, simulator=simulator, shared=shared,
             as_json=as_json)


if __name__ == "__main__":
    app()
