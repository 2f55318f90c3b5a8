"""`greennanny demo --once` as a user runs it: real Mosquitto, real node, real data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.e2e
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "chirpstack_archive_outcomes.json"


def run_demo(tmp_path: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "greennanny.cli.main", "demo", "--once", "--json",
                           "--data-dir", str(tmp_path / "demo"), *args],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_demo_once_on_the_shared_data_accounts_for_every_point_and_event(tmp_path, shared_dir):
    s = run_demo(tmp_path, "--shared", str(shared_dir))
    agc = shared_dir / "data" / "agc2018_cucumber_greenhouse_climate.csv.gz"
    # Independent count: every non-missing Tair/RHair/CO2air cell of the source file.
    expected = int(pd.read_csv(agc, usecols=["Tair", "RHair", "CO2air"]).notna().sum().sum())
    assert s["points_stored"]["import:agc2018_cucumber_greenhouse_climate.csv.gz"] == expected == 593833
    pinned = json.loads(FIXTURE.read_text())
    assert s["messages_in"] == s["messages_published"] == 14207
    assert s["outcome_detail"] == pinned["outcomes"]
    assert s["deadletters"] == {"codec_error": 4}
    # Every AGC climate series (3 quantities x 6 compartments) got a forecast.
    assert s["forecasts"]["series_forecast"] >= 18
    assert s["dashboard"].startswith("http://127.0.0.1:")
    # Derived series: a VPD point at every air temperature reading of the six compartments (its RH
    # partner within 300 s), and the demo's rules fired on the real history, the forecast one too.
    from greennanny.store.duckdb import DuckDBStore

    tair = int(pd.read_csv(agc, usecols=["Tair"])["Tair"].notna().sum())
    store = DuckDBStore(tmp_path / "demo" / "node" / "greennanny.duckdb", read_only=True)
    try:
        vpd = store.series(site="bleiswijk", quantity="vpd")
        served = store.query_many([x.id for x in vpd], None, None)
    finally:
        store.close()
    assert len(vpd) == 6 and len(served) == tair == 197946
    assert served["value"].between(0, 10).all()
    al = s["derived_and_alerts"]
    assert al["alerts_fired"] > 0 and al["by_rule"].get("heat", 0) >= 1 and al["by_rule"].get("heat-ahead", 0) >= 1


def test_demo_config_keeps_the_demo_data_through_maintenance(tmp_path, shared_dir):
    """Fresh-clone finding: the demo's greennanny.toml lacked the demo's retention, so
    `db maintain -c demo/greennanny.toml` deleted every (historical) point it had stored."""
    run_demo(tmp_path, "--shared", str(shared_dir))  # history from 2018: older than every default tier
    cfg = tmp_path / "demo" / "greennanny.toml"

    def cli(*args: str) -> dict:
        p = subprocess.run([sys.executable, "-m", "greennanny.cli.main", *args, "-c", str(cfg), "--via", "file",
                            "--json"], capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
        assert p.returncode == 0, p.stderr[-2000:]
        return json.loads(p.stdout)

    rules = {r["name"]: r["source"] for r in cli("alerts", "rules")["rules"]}  # the demo's rules are in its config
    assert rules["heat"] == rules["heat-ahead"] == "config" and "cucumber.vpd.low" in rules
    before = cli("db", "stats")
    done = cli("db", "maintain")
    assert before["raw_points"] > 0 and before["forecast_runs"] > 0
    removed = {k: v for k, v in done.items() if k.endswith("_removed") and v}
    assert removed == {}  # second fresh-clone finding: the forecasts (made as of 2018) went at 30 days
    after = cli("db", "stats")
    assert (after["raw_points"], after["forecast_runs"]) == (before["raw_points"], before["forecast_runs"])


def test_demo_without_shared_data_runs_the_simulator(tmp_path):
    s = run_demo(tmp_path, "--simulator")
    assert s["data"] == "built-in simulator"
    days = 14
    assert s["deadletters"] == {"unknown_device": days, "decode_error": days}
    assert s["outcome_detail"]["stored:up"] == s["messages_in"] - 2 * days
    assert s["forecasts"]["series_forecast"] >= 8  # temperature and humidity of 4 devices, CO2 of 2
    assert s["forecasts"]["models"].get("last_value", 0) == 0


def test_demo_stays_up_serving_the_dashboard_until_ctrl_c(tmp_path):
    import re
    import signal
    import socket
    import time

    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "greennanny.cli.main", "demo", "--simulator",
                             "--data-dir", str(tmp_path / "demo")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)  # the summary (a few KB) waits in the stdout pipe
    try:
        url = None
        end = time.monotonic() + 300
        assert proc.stderr is not None
        seen = []
        while url is None and time.monotonic() < end:
            line = proc.stderr.readline()
            seen.append(line)
            m = re.search(r"dashboard:\s+(http://127\.0\.0\.1:\d+)/", line)
            url = m.group(1) if m else None
            assert line or proc.poll() is None, "".join(seen)[-3000:]
        assert url, "".join(seen)[-3000:]
        assert httpx.get(url + "/health").json()["status"] == "ok"
        page = httpx.get(url + "/")
        assert page.status_code == 200 and "plotly.min.js" in page.text
        assert len(httpx.get(url + "/series").json()) >= 10
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout is not None
        out = proc.stdout.read()  # the summary is a result: stdout; notes and the dashboard line: stderr
        assert "greennanny demo summary" in out and "greennanny demo summary" not in "".join(seen)
        broker_port = int(re.search(r"mqtt://127\.0\.0\.1:(\d+)", out).group(1))
        # Ctrl-C stopped the private broker too.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", broker_port), timeout=1).close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
