"""Each store-reading CLI command, run through a running node's API and through the file.

While a node runs it owns the DuckDB file; the CLI must go through its API. With no node, the
CLI opens the file itself. Both ways must print the same JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from greennanny.config import ForecastConfig
from greennanny.runtime.broker import free_port
from tests.integration.nodeproc import NodeProcess, write_config

pytestmark = pytest.mark.integration


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "greennanny.cli.main", *args, "-c", str(cfg)],
                          capture_output=True, text=True, timeout=120, check=False)


def climate_csv(path: Path, days: int, zone: str) -> Path:
    """A climate-computer export ending now: local Amsterdam time, degF, a missing marker."""
    end = pd.Timestamp.now(tz="Europe/Amsterdam").floor("5min")
    t = pd.date_range(end=end, periods=days * 288, freq="5min")
    hours = t.hour + t.minute / 60
    temp_c = 20 + 4 * np.sin((hours - 9) / 24 * 2 * np.pi)
    df = pd.DataFrame({"time": t.tz_localize(None).strftime("%Y-%m-%d %H:%M:%S"),
                       "zone": zone, "T": np.round(temp_c * 9 / 5 + 32, 2).astype(str)})
    df.loc[5, "T"] = "NaN"
    df.to_csv(path, index=False)
    return path


def test_each_command_both_ways_gives_the_same_json(tmp_path, mosquitto):
    port = free_port()
    cfg = write_config(tmp_path / "node.toml", broker_url=mosquitto.url, api_port=port,
                       data_dir=tmp_path / "data").resolve()
    cfg.write_text(cfg.read_text().replace("[forecast]\nenabled = false", "[forecast]\nenabled = true"))
    imp = ["--time-col", "time", "--tz", "Europe/Amsterdam", "--zone-col", "zone", "--site", "gh",
           "--map", "T=air_temperature:degF", "--json"]

    # No node: import opens the file.
    r = cli(cfg, "import", str(climate_csv(tmp_path / "a.csv", 4, "house-1")), *imp)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["via"] == "file" and first["points_stored"] == 4 * 288 - 1 and first["cells_missing"] == 1

    node = NodeProcess(cfg, tmp_path / "node.log")
    node.start(f"http://127.0.0.1:{port}")
    try:
        # With a node: import goes through its API (the node owns the file).
        r = cli(cfg, "import", str(climate_csv(tmp_path / "b.csv", 4, "house-2")), *imp)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["via"] == "api"
        # The node's forecast loop runs its first refresh a few seconds after start.
        end = time.monotonic() + 60
        while time.monotonic() < end:
            ids = [s["id"] for s in httpx.get(f"http://127.0.0.1:{port}/series").json()]
            if len(ids) == 2 and all(httpx.get(f"http://127.0.0.1:{port}/series/{i}/forecast").status_code == 200
                                     for i in ids):
                break
            time.sleep(1)
        commands = [["series", "list", "--json"], ["series", "points", "1", "--json"],
                    ["series", "points", "2", "--every", "3600", "--json"], ["series", "forecast", "2", "--json"],
                    ["deadletters", "list", "--json"]]
        via_api = {}
        for c in commands:
            r = cli(cfg, *c, "--via", "api")
            assert r.returncode == 0, (c, r.stderr)
            via_api[" ".join(c)] = json.loads(r.stdout)
        r = cli(cfg, "series", "forecast", "999", "--via", "api")
        assert r.returncode == 1 and "series 999 does not exist (HTTP 404, not_found)" in r.stderr, r.stderr
        # While the node runs, the file is the node's: --via file must fail with a clear error.
        r = cli(cfg, "series", "list", "--json", "--via", "file")
        assert r.returncode == 1 and "is a node running" in r.stderr.lower()
    finally:
        node.stop()
    for c in commands:
        r = cli(cfg, *c, "--via", "file")
        assert r.returncode == 0, (c, r.stderr)
        assert json.loads(r.stdout) == via_api[" ".join(c)], c
    r = cli(cfg, "series", "forecast", "999", "--via", "file")  # the same API in-process: no HTTP to name
    assert r.returncode == 1 and "series 999 does not exist (not_found)" in r.stderr and "HTTP" not in r.stderr
    listing = via_api["series list --json"]
    assert [(s["zone"], s["quantity"], s["unit"]) for s in listing] == [
        ("house-1", "air_temperature", "degC"), ("house-2", "air_temperature", "degC")]
    fc = via_api["series forecast 2 --json"]
    assert len(fc["mean"]) == 96 and fc["model"] in ForecastConfig().models
    # degF was converted: the series' values sit around 20 degC, not 68.
    pts = via_api["series points 1 --json"]
    assert 15 < np.mean(pts["value"]) < 25 and len(pts["value"]) == 4 * 288 - 1
    # The same relative times and durations as `db export`: 1h is 3600 s, -36500d..now is everything.
    r = cli(cfg, "series", "points", "2", "--every", "1h", "--json", "--via", "file")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == via_api["series points 2 --every 3600 --json"]
    r = cli(cfg, "series", "points", "1", "--start", "-36500d", "--end", "now", "--json", "--via", "file")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["value"] == pts["value"]
    r = cli(cfg, "series", "points", "1", "--every", "1.5h", "--via", "file")
    assert r.returncode == 2 and "--every '1.5h'" in r.stderr
