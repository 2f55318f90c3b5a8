"""`greennanny config init|check`."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import typer

from greennanny.cli.common import console, friendly
from greennanny.config import load_config, write_token
from greennanny.config_sample import sample_config
from greennanny.errors import ConfigError

app = typer.Typer(help="Write and check the config file.", no_args_is_help=True)


@app.command("init")
@friendly
def init(path: Path = typer.Argument(Path("greennanny.toml"), help="Where to write the config."),
         force: bool = typer.Option(False, help="Overwrite an existing file."),
         data_dir: str = typer.Option("./data", help="Data directory written into the config.")) -> None:
    """Write a commented sample config and a new API token file (mode 0600)."""
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; use --force to overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sample_config(data_dir))
    token = path.parent / "api_token"
    if not token.exists() or force:
        write_token(token)
        said = f"wrote {path} and a new API token {token} (mode 0600)"
    else:
        mode = stat.S_IMODE(token.stat().st_mode)
        if mode != 0o600:
            os.chmod(token, 0o600)
        said = (f"wrote {path}; kept the existing API token {token}"
                + (f" and set its mode from {mode:04o} to 0600" if mode != 0o600 else " (mode 0600)"))
    load_config(path)  # the sample must validate
    console.print(said)


@app.command("check")
@friendly
def check(path: Path = typer.Argument(Path("greennanny.toml"), help="Config file to validate.")) -> None:
    """Validate a config file; errors name the dotted key and the value."""
    cfg = load_config(path)
    console.print(f"{path}: ok ({len(cfg.devices)} devices, {len(cfg.mqtt.subscriptions)} subscriptions, "
                  f"store {cfg.store_path})")
