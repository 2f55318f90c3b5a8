"""`greennanny models events|accept|calibrate|retrain` on the store file: an operator resolves a
sensor fault and retrains a series by hand, each recorded with their login name and reason."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest

from greennanny.config import load_config
from greennanny.mlops.events import SENSOR_FAULT, Events, Finding
from greennanny.store.duckdb import DuckDBStore
from tests.integration.test_cli_forecast import cli, two_houses
from tests.integration.test_cli_models import ok_json

pytestmark = pytest.mark.integration


def test_an_operator_calibrates_and_accepts_faults_and_retrains_by_hand(tmp_path: Path, mosquitto) -> None:
    cfg, _ = two_houses(tmp_path, mosquitto)
    assert cli(cfg, "forecast", "run", "--json").returncode == 0
    store = DuckDBStore(load_config(cfg).store_path)
    last = store.series_by_id(1).last_ns
    Events(store).raise_(last, [Finding(1, SENSOR_FAULT, "step", last - 3600 * 10**9, {"jump": 3.1, "why": "test"}),
                                Finding(2, SENSOR_FAULT, "step", last - 7200 * 10**9, {"jump": -2.4, "why": "test"})])
    store.close()

    listed = ok_json(cfg, "models", "events", "--status", "open")["events"]
    assert [(e["event_id"], e["series_id"], e["kind"]) for e in listed] == [(2, 2, "step"), (1, 1, "step")]
    r = cli(cfg, "models", "events")
    assert r.returncode == 0 and "+3.1" in r.stdout + r.stderr and "calibrated" not in r.stdout + r.stderr, r.stderr
    cal = ok_json(cfg, "models", "calibrate", "1", "--offset", "-3.1", "--reason", "reference thermometer")
    assert (cal["status"], cal["calibration"], cal["resolved_by"]) == ("calibrated", -3.1, getpass.getuser())
    acc = ok_json(cfg, "models", "accept", "2", "--reason", "probe moved up to the crop's head")
    assert acc["status"] == "accepted" and acc["note"] == "probe moved up to the crop's head"
    r = cli(cfg, "models", "accept", "2", "--reason", "again")
    assert r.returncode != 0 and "event 2 is a accepted sensor_fault" in " ".join(r.stderr.split())
    r = cli(cfg, "models", "calibrate", "1", "--offset", "nan", "--reason", "x")
    assert r.returncode != 0

    done = ok_json(cfg, "models", "retrain", "2", "--reason", "new crop planted")
    assert (done["selected"], done["retrained"], done["registered"]) == (1, 1, 1)
    v = ok_json(cfg, "models", "show", "2")["versions"][-1]
    assert (v["version"], v["trained_by"], v["reason"]) == (2, getpass.getuser(), "manual: new crop planted")
    r = cli(cfg, "models", "retrain", "--reason", "x")
    assert r.returncode != 0 and "nothing selected" in " ".join(r.stderr.split())
    r = cli(cfg, "models", "retrain", "1", "--reason", "x", "--at", "2001-01-01T00:00:00Z")  # before any data
    assert r.returncode != 0 and "nothing to train on" in " ".join(r.stderr.split()), r.stderr
    r = cli(cfg, "models", "events", "--status", "all")
    assert r.returncode != 0 and "status" in r.stderr
    audit = [a["action"] for a in ok_json(cfg, "models", "audit")["audit"]]
    assert audit[-5:] == ["sensor_fault", "sensor_fault", "fault_calibrated", "fault_accepted", "register"] or \
        audit[-6:] == ["sensor_fault", "sensor_fault", "fault_calibrated", "fault_accepted", "register", "gate"]
    assert json.loads(cli(cfg, "models", "events", "--status", "open", "--json").stdout)["events"] == []
