"""Unknown device -> dead letters -> `devices list --unknown` -> `devices onboard` -> points."""

from __future__ import annotations

import base64
import json

from typer.testing import CliRunner

from greennanny.cli.main import app
from greennanny.config import load_config
from greennanny.model import Uplink
from greennanny.runtime.clock import FakeClock
from greennanny.runtime.node import build_pipeline
from greennanny.store.duckdb import DuckDBStore

EUI = "24e124136b31aaaa"
T0 = 1_710_064_800 * 10**9


def uplink(i: int) -> Uplink:
    frame = bytes.fromhex("01755C0367") + (300 + i).to_bytes(2, "little") + bytes.fromhex("046865")
    body = {"deduplicationId": f"id-{i}", "time": f"2024-03-10T10:{i:02d}:00Z", "fCnt": i, "fPort": 85,
            "deviceInfo": {"devEui": EUI, "applicationId": "app"}, "data": base64.b64encode(frame).decode()}
    return Uplink(f"application/app/device/{EUI}/event/up", json.dumps(body).encode(), T0 + i * 10**9)


def test_unknown_device_is_kept_listed_with_samples_then_onboarded_and_replayed(tmp_path):
    cfg_path = tmp_path / "g.toml"
    cfg_path.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\n[api]\nport = 1\n')
    cfg = load_config(cfg_path)
    store = DuckDBStore(cfg.store_path)
    store.commit_ingest(build_pipeline(cfg, store, FakeClock(T0)).process([uplink(i) for i in range(5)]))
    assert store.deadletter_counts() == {"unknown_device": 5} and store.count_points() == 0
    store.close()

    run = CliRunner()
    r = run.invoke(app, ["devices", "list", "--unknown", "--json", "-c", str(cfg_path), "--via", "file"])
    assert r.exit_code == 0, r.output
    (u,) = json.loads(r.stdout)
    assert (u["device"], u["messages"], len(u["samples"])) == (EUI, 5, 3)
    assert json.loads(u["samples"][0])["deviceInfo"]["devEui"] == EUI

    r = run.invoke(app, ["devices", "onboard", EUI, "--codec", "milesight", "--model", "EM300-TH", "--zone", "house-3",
                         "-c", str(cfg_path), "--via", "file"])
    assert r.exit_code == 0, r.output
    assert '"stored": 5' in r.output and '"still_dead": 0' in r.output

    store = DuckDBStore(cfg.store_path)
    try:
        assert store.deadletter_counts() == {}
        assert store.outcome_counts() == {"stored": 5}  # the ledger row took the new outcome
        temps = next(s for s in store.series(quantity="air_temperature"))
        assert (temps.key.zone, temps.points, temps.last_value) == ("house-3", 5, 30.4)
    finally:
        store.close()


def test_onboarding_with_an_unknown_model_is_refused_naming_it(tmp_path):
    cfg_path = tmp_path / "g.toml"
    cfg_path.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\n[api]\nport = 1\n')
    r = CliRunner().invoke(app, ["devices", "onboard", EUI, "--codec", "milesight", "--model", "EM999", "--zone", "z",
                                 "-c", str(cfg_path), "--via", "file"])
    assert r.exit_code == 1 and "EM999" in r.output


def test_devices_import_from_csv(tmp_path):
    cfg_path = tmp_path / "g.toml"
    cfg_path.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\n[api]\nport = 1\n')
    csv = tmp_path / "devices.csv"
    csv.write_text("dev_eui,codec,model,field_map,zone,interval_s\n"
                   f"{EUI},milesight,EM300-TH,,house-1,600\n7894e80000027b84,,,rbs305-ath,outside,3600\n")
    run = CliRunner()
    r = run.invoke(app, ["devices", "import", str(csv), "-c", str(cfg_path), "--via", "file"])
    assert r.exit_code == 0 and "onboarded 2" in r.output
    r = run.invoke(app, ["devices", "show", "7894e80000027b84", "-c", str(cfg_path), "--via", "file"])
    d = json.loads(r.stdout)
    assert (d["field_map"], d["zone"], d["interval_s"], d["source"]) == ("rbs305-ath", "outside", 3600, "api")
