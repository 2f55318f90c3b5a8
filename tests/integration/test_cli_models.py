"""`greennanny models list|show|rollback|audit` on the store file and through a running node, which
resumes from the registered versions and takes a rollback at once (design 005)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest

from tests.integration.nodeproc import NodeProcess
from tests.integration.test_cli_forecast import cli, two_houses

pytestmark = pytest.mark.integration


def ok_json(cfg: Path, *args: str) -> dict:
    r = cli(cfg, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_models_commands_register_show_roll_back_and_a_node_resumes_from_them(tmp_path, mosquitto):
    cfg, port = two_houses(tmp_path, mosquitto)
    r = cli(cfg, "models", "list")
    assert r.returncode == 0 and "no model is registered yet" in r.stdout + r.stderr, r.stderr
    first = ok_json(cfg, "forecast", "run")
    second = ok_json(cfg, "forecast", "run")
    assert first["registered"] == 2 and second["registered"] == 2

    listed = ok_json(cfg, "models", "list")["models"]
    # the second run refit on the same data: the gate kept v1 in production, v2 is the candidate
    assert [(m["series_id"], m["version"], m["trained_by"]) for m in listed] == [(1, 1, "manual (cli)"),
                                                                                (2, 1, "manual (cli)")]
    assert (second["promoted"], second["kept"]) == (0, 2)
    assert all(len(m["data_sha256"]) == 64 and m["data_points"] > 0 and m["artifact"].endswith(".parquet")
               for m in listed)
    shown = ok_json(cfg, "models", "show", "1")
    assert [v["version"] for v in shown["versions"]] == [1, 2] and shown["candidate"] == 2
    assert [(h["alias"], h["version"], h["previous_version"]) for h in shown["history"]] == [
        ("production", 1, None), ("candidate", 2, None)]
    gate = shown["gate"][0]
    assert (gate["candidate_version"], gate["production_version"], gate["promoted"]) == (2, 1, False)
    assert gate["reason"].startswith("gate: candidate MASE") and gate["reason"].endswith("kept")
    r = cli(cfg, "models", "show", "1")  # the table form names the series, its versions and the gate's numbers
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 0 and "production v1" in out and "candidate v2" in out and "promotion gate" in out, r.stderr

    took = ok_json(cfg, "models", "rollback", "1", "--to", "2", "--reason", "take the candidate")  # by hand
    assert took["moved"] == [{"series_id": 1, "from": 1, "to": 2}]
    back = ok_json(cfg, "models", "rollback", "1", "--reason", "v2 overshoots the night")
    assert back["moved"] == [{"series_id": 1, "from": 2, "to": 1}] and back["node_reloaded"] is None
    r = cli(cfg, "models", "rollback", "2", "--to", "7", "--reason", "x")
    assert r.returncode != 0 and "series 2 have no version 7" in " ".join(r.stderr.split())
    r = cli(cfg, "models", "rollback", "--reason", "x")
    assert r.returncode != 0 and "give series ids or --all" in " ".join(r.stderr.split())
    scored = ok_json(cfg, "models", "score")  # the forecasts run to the future: nothing to score yet
    assert scored["forecast_steps"] == 0 and scored["series"] == 0
    hl = ok_json(cfg, "models", "health", "--all")
    assert hl["counts"] == {"ok": 0, "degraded": 0, "no data": 2}
    assert [(h["series_id"], h["production_version"], h["n"]) for h in hl["series"]] == [(1, 1, 0), (2, 1, 0)]
    r = cli(cfg, "models", "health")
    assert r.returncode == 0 and "0 ok, 0 degraded, 2 without enough scored forecasts" in " ".join((r.stdout + r.stderr).split())
    got = ok_json(cfg, "models", "card")["cards"]
    assert sum(c["production_series"] for c in got) == 2 and all(c["intended_use"] for c in got)
    r = cli(cfg, "models", "card")
    assert r.returncode == 0 and r.stdout.count("# Model card: ") == len(got) and "## Known limits" in r.stdout
    audit = ok_json(cfg, "models", "audit")["audit"]
    assert [a["action"] for a in audit] == ["register", "register", "gate", "rollback", "rollback"]
    assert audit[-1]["actor"] == getpass.getuser() and audit[-1]["detail"]["reason"] == "v2 overshoots the night"

    node = NodeProcess(cfg, tmp_path / "node.log")
    node.start(f"http://127.0.0.1:{port}")
    try:
        # the node resumed from the registry: a run within refit_h refreshes, registering nothing
        run = ok_json(cfg, "forecast", "run", "--via", "api")
        assert (run["refit"], run["refreshed"], run["registered"]) == (False, 2, 0), run
        moved = ok_json(cfg, "models", "rollback", "--all", "--to", "2", "--reason", "undo", "--via", "api")
        assert moved["node_reloaded"] == 2 and [m["to"] for m in moved["moved"]] == [2, 2]
        assert [m["version"] for m in ok_json(cfg, "models", "list", "--via", "api")["models"]] == [2, 2]
    finally:
        node.stop()
