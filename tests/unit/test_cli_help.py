"""Every command has --help, and every option says what it does (docs stay true)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from greennanny.cli.main import app


def commands() -> list[tuple[list[str], Any]]:
    root = typer.main.get_command(app)
    out: list[tuple[list[str], Any]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        out.append((path, cmd))
        if hasattr(cmd, "commands"):  # typer's own click fork: duck-type groups
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])

    walk(root, [])
    return out


ALL = commands()


def test_the_issue_2_commands_exist():
    names = {" ".join(p) for p, _ in ALL}
    for c in ("run", "demo", "import", "replay", "decode", "config init", "config check", "series list",
              "series points", "series forecast", "deadletters list"):
        assert c in names


@pytest.mark.parametrize("path,cmd", ALL, ids=[" ".join(p) or "greennanny" for p, _ in ALL])
def test_help_exists_and_every_option_is_described(path, cmd):
    r = CliRunner().invoke(app, [*path, "--help"])
    assert r.exit_code == 0 and "Usage" in r.output
    assert cmd.help, f"{path} has no docstring"
    for p in cmd.params:
        if getattr(p, "param_type_name", "") == "option" and p.name != "help":
            assert p.help, f"greennanny {' '.join(path)} {p.opts[0]} has no help text"
