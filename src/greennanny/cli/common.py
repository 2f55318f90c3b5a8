"""Shared CLI plumbing: config loading, JSON printing, error translation to exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from greennanny.config import Config, config_from_dict, load_config
from greennanny.errors import ConfigError, GreennannyError

# Results (tables, confirmations) go to stdout, so that they pipe (`| less`, `> file`, `| grep`);
# errors, notes and progress bars go to stderr. Off a terminal rich assumes 80 columns and folds a
# table's cells, so a pipe gets a wide console unless COLUMNS says otherwise.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

ViaOpt = typer.Option("auto", "--via", help="auto: the node's API if one runs, else the file; api; file.")
ConfigOpt = typer.Option(None, "--config", "-c", help="Config file (default: $GREENNANNY_CONFIG or ./greennanny.toml).")


def resolve_config(path: Path | None) -> Config:
    """The named file, else $GREENNANNY_CONFIG, else ./greennanny.toml, else built-in defaults."""
    if path is not None:
        return load_config(path)
    env = os.environ.get("GREENNANNY_CONFIG")
    if env:
        return load_config(env)
    if Path("greennanny.toml").exists():
        return load_config("greennanny.toml")
    return config_from_dict({}, base_dir=Path.cwd())


def stop_on_sigterm() -> None:
    """SIGTERM (systemd stop, docker stop) shuts down like Ctrl-C: flush, close, stop the broker."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def friendly(fn: F) -> F:
    """Our errors become one red line and exit code 2 (config) or 1 (anything else), no traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
            raise typer.Exit(2) from None
        except GreennannyError as exc:
            err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def progress_bar(*, after: str = "", remaining: bool = False, transient: bool = True) -> Progress:
    """The CLI's one progress bar: description, bar, done/total, `after` (a text or a
    `{task.fields[...]}` template), then the time left or elapsed. Drawn only on a terminal: in a
    log or a pipe a bar is noise, cut to the 80 columns rich assumes there."""
    cols: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if after:
        cols.append(TextColumn(after))
    cols.append(TimeRemainingColumn() if remaining else TimeElapsedColumn())
    return Progress(*cols, console=err, disable=not err.is_terminal, transient=transient)


def relative_time(text: str | None, option: str, now_ns: int) -> str | None:
    """`now` and times before now (`-7d`, `-12h`, as `db export` takes them) as epoch ns text;
    anything else unchanged, for the API (ISO 8601 or an epoch number), which names a bad value."""
    if text is None or not (text.strip().startswith("-") or text.strip().lower() == "now"):
        return text
    from greennanny.store.export import parse_time

    return str(parse_time(text, option=option, now_ns=now_ns))
