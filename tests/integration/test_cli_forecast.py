"""`greennanny forecast run|show|backtest` on the store file and through a running node's API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from greennanny.config import ForecastConfig
from greennanny.runtime.broker import free_port
from tests.integration.nodeproc import NodeProcess, write_config
from tests.integration.test_cli_both_ways import climate_csv

pytestmark = pytest.mark.integration


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "greennanny.cli.main", *args, "-c", str(cfg)],
                          capture_output=True, text=True, timeout=300, check=False)


def two_houses(tmp_path: Path, mosquitto) -> tuple[Path, int]:
    """A node config (API on a free port) whose store holds 4 days of two houses' air temperature."""
    port = free_port()
    cfg = write_config(tmp_path / "node.toml", broker_url=mosquitto.url, api_port=port,
                       data_dir=tmp_path / "data").resolve()
    imp = ["--time-col", "time", "--tz", "Europe/Amsterdam", "--zone-col", "zone", "--site", "gh",
           "--map", "T=air_temperature:degF", "--json"]
    for name, zone in (("a.csv", "house-1"), ("b.csv", "house-2")):
        r = cli(cfg, "import", str(climate_csv(tmp_path / name, 4, zone)), *imp)
        assert r.returncode == 0, r.stderr
    return cfg, port


def test_forecast_commands_on_the_file_and_through_the_node(tmp_path, mosquitto):
    cfg, port = two_houses(tmp_path, mosquitto)

    # No node: the CLI opens the file, and shows a progress bar while it works.
    r = cli(cfg, "forecast", "run", "--json")
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)
    assert run["series_considered"] == 2 and run["forecasts"] == 2 and run["fallbacks"] == 0, run
    assert sum(run["models"].values()) == 2 and set(run["models"]) <= set(ForecastConfig().models)

    r = cli(cfg, "forecast", "show", "1", "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["model"] in run["models"] and len(shown["mean"]) == 24 * 60 // 15  # 24 h at 15 min
    assert all(lo <= m <= hi for lo, m, hi in zip(shown["lo80"], shown["mean"], shown["hi80"]))

    r = cli(cfg, "forecast", "backtest", "--json")
    assert r.returncode == 0, r.stderr
    bt = json.loads(r.stdout)
    assert [row["series_id"] for row in bt["series"]] == [1, 2]
    for row in bt["series"]:
        assert row["choice"] in ForecastConfig().models and row["runner_up"] in ForecastConfig().models
        assert row[f"{row['choice']}_mase"] <= row[f"{row['runner_up']}_mase"]

    r = cli(cfg, "forecast", "backtest", "--models", "seasonal_naive,prophet")
    assert r.returncode != 0 and "unknown forecast model 'prophet'" in " ".join(r.stderr.split())

    r = cli(cfg, "forecast", "backtest", "--at", "-1d", "--json")  # the same relative times as db export
    assert r.returncode == 0, r.stderr
    assert [row["series_id"] for row in json.loads(r.stdout)["series"]] == [1, 2]
    r = cli(cfg, "forecast", "run", "--at", "-2x")
    assert r.returncode != 0 and "--at '-2x' is not a time before now" in " ".join(r.stderr.split())

    r = cli(cfg, "forecast", "run", "--at", "2001-01-01T00:00:00Z")
    assert r.returncode == 0 and "give --at" in " ".join(r.stderr.split()), r.stderr

    # With a node: the node runs it (the CLI waits); a new run id, the same series.
    node = NodeProcess(cfg, tmp_path / "node.log")
    node.start(f"http://127.0.0.1:{port}")
    try:
        r = cli(cfg, "forecast", "run", "--series", "2", "--via", "api", "--json")
        assert r.returncode == 0, r.stderr
        again = json.loads(r.stdout)
        assert again["series_considered"] == 1 and again["forecasts"] == 1 and again["run_id"] > run["run_id"]
        r = cli(cfg, "forecast", "backtest", "--series", "2", "--via", "api", "--json")
        assert r.returncode == 0, r.stderr
        assert [row["series_id"] for row in json.loads(r.stdout)["series"]] == [2]
        r = cli(cfg, "forecast", "run", "--series", "99", "--via", "api")
        assert r.returncode != 0 and "series [99] do not exist" in " ".join(r.stderr.split())
    finally:
        node.stop()
