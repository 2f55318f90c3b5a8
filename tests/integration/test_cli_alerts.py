"""`greennanny alerts list|show|ack|silence|rules|add-rule|delete-rule|deliveries` on the store
file: an operator sees a heat alert with its values, takes it, silences a rule, adds a rule."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from pathlib import Path

from greennanny.alerts.engine import AlertEngine
from greennanny.config import load_config
from greennanny.model import BatchBuilder, SeriesKey
from greennanny.store.duckdb import DuckDBStore

S = 1_000_000_000
T0 = 1_780_000_000 * S

CONFIG = """
[node]
data_dir = "data"
site = "gh"
[api]
port = 1
token_file = ""
[[alerts.rules]]
name = "heat"
quantity = "air_temperature"
value = 30.0
clear = 28.0
for_s = 300
severity = "critical"
[[alerts.profiles]]
name = "tomato"
zones = ["z1"]
bands = { relative_humidity = { low = 60, high = 90 } }
[[alerts.notifiers]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9/alerts"
"""


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "greennanny.cli.main", *args, "-c", str(cfg), "--via", "file"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "COLUMNS": "200"})


def ok_json(cfg: Path, *args: str) -> dict:
    r = cli(cfg, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_an_operator_lists_acknowledges_and_silences_alerts(tmp_path: Path) -> None:
    cfg_path = tmp_path / "node.toml"
    cfg_path.write_text(CONFIG)
    cfg = load_config(cfg_path)
    store = DuckDBStore(cfg.store_path)
    b = BatchBuilder()
    for i in range(40):
        b.add(SeriesKey("gh", "z1", "th1", "air_temperature"), T0 + i * 60 * S, 33.0 if i >= 10 else 25.0)
        b.add(SeriesKey("gh", "z1", "th1", "relative_humidity"), T0 + i * 60 * S, 75.0)
    store.write(b.build())
    AlertEngine(store, cfg.alerts).run(T0 + 40 * 60 * S)
    store.close()

    body = ok_json(cfg_path, "alerts", "list")
    assert [(a["alert_id"], a["rule"], a["state"], a["severity"], a["value"]) for a in body["alerts"]] == \
        [(1, "heat", "firing", "critical", 33.0)]
    assert body["alerts"][0]["fired"] == "2026-05-28T20:41:40Z"  # T0 20:26:40 + minute 10 + for_s 300 s
    r = cli(cfg_path, "alerts", "list")
    # the table goes to stdout, whole: a pipe gets the series key unfolded (rich would fold it at 80 columns)
    assert r.returncode == 0 and "heat" in r.stdout and "gh/z1/th1/air_temperature" in r.stdout and not r.stderr, r.stderr

    r = cli(cfg_path, "alerts", "ack", "1", "-m", "vents open")
    assert r.returncode == 0, r.stderr
    assert f"acknowledged by {getpass.getuser()}" in r.stdout
    r = cli(cfg_path, "alerts", "ack", "1")
    assert r.returncode != 0 and "already acknowledged" in " ".join(r.stderr.split())
    r = cli(cfg_path, "alerts", "ack", "99")
    assert r.returncode != 0 and "no alert 99" in " ".join(r.stderr.split())
    shown = json.loads(cli(cfg_path, "alerts", "show", "1").stdout)
    assert shown["acked_by"] == getpass.getuser() and shown["ack_note"] == "vents open"
    assert (shown["zone"], shown["quantity"], shown["unit"], shown["op"]) == ("z1", "air_temperature", "degC", "above")
    assert ok_json(cfg_path, "alerts", "list", "--state", "unacked")["alerts"] == []

    r = cli(cfg_path, "alerts", "silence", "heat", "--minutes", "60", "--reason", "repairing the vent motor")
    assert r.returncode == 0, r.stderr
    assert ok_json(cfg_path, "alerts", "list")["silences"][0]["reason"] == "repairing the vent motor"
    r = cli(cfg_path, "alerts", "silence", "nope", "--minutes", "30", "--reason", "x")
    assert r.returncode != 0 and "no rule 'nope'" in " ".join(r.stderr.split())

    rules = {r["name"]: r for r in ok_json(cfg_path, "alerts", "rules")["rules"]}
    assert set(rules) == {"heat", "tomato.z1.relative_humidity.low", "tomato.z1.relative_humidity.high"}
    assert rules["heat"]["series"] == 1 and rules["heat"]["source"] == "config"
    r = cli(cfg_path, "alerts", "add-rule", '{"name": "dry", "quantity": "relative_humidity", "op": "below", "value": 50}')
    assert r.returncode == 0, r.stderr
    r = cli(cfg_path, "alerts", "add-rule", '{"name": "co2", "quantity": "co2", "value": 1500}')
    assert r.returncode != 0 and "no series of quantity 'co2'" in " ".join(r.stderr.split())
    r = cli(cfg_path, "alerts", "add-rule", '{"name": "bad", "quantity": "air_temperature", "value": 30, "clear": 31}')
    assert r.returncode != 0 and "clear = 31 must be at or below value = 30" in " ".join(r.stderr.split()), r.stderr
    assert ok_json(cfg_path, "alerts", "rules")["rules"][-1]["source"] == "api"
    assert cli(cfg_path, "alerts", "delete-rule", "dry").returncode == 0
    r = cli(cfg_path, "alerts", "delete-rule", "heat")
    assert r.returncode != 0 and "config file" in r.stderr

    dl = ok_json(cfg_path, "alerts", "deliveries")["deliveries"]
    assert sorted((d["kind"], d["notifier"], d["status"]) for d in dl) == [
        ("acknowledged", "hook", "pending"), ("firing", "hook", "pending")]
    audit = DuckDBStore(cfg.store_path, read_only=True)
    try:
        acts = [a for (a,) in audit.reader().execute("SELECT action FROM audit_log WHERE action LIKE 'alert%' "
                                                     "ORDER BY seq").fetchall()]
    finally:
        audit.close()
    assert acts == ["alert_ack", "alert_silence", "alert_rule_add", "alert_rule_delete"]
