"""MLflow export (issue 6 point 3): one model version with its lineage, metrics and artifact
round-trips into a real `mlflow server` (sqlite:/// backend, artifacts proxied) on a loopback port.

The server runs from its own virtual environment, `.venv-mlflow` beside the project's (built on
first use: MLflow is a server the team runs, not a dependency of the node; ~40 s and ~850 MB).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from greennanny.config import ForecastConfig
from greennanny.errors import ExportFailed, UnknownVersion
from greennanny.forecast.service import ForecastService
from greennanny.mlops.mlflow_export import MlflowExport, model_name
from greennanny.mlops.registry import Registry
from greennanny.runtime.broker import free_port
from greennanny.runtime.clock import SystemClock
from tests.unit.test_model_registry import END, _daily_store

pytestmark = pytest.mark.integration
MLFLOW = "mlflow==3.17.2"
VENV = Path(os.environ.get("GREENNANNY_MLFLOW_VENV", Path(__file__).resolve().parents[2] / ".venv-mlflow"))


def _mlflow_bin() -> Path:
    done = VENV / ".installed"
    if not done.exists() or done.read_text().strip() != MLFLOW:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", MLFLOW], check=True, timeout=900)
        done.write_text(MLFLOW)
    return VENV / "bin" / "mlflow"


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen([str(_mlflow_bin()), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_a_model_version_round_trips_into_mlflow_with_its_lineage_metrics_and_artifact(tmp_path: Path,
                                                                                    mlflow_url: str) -> None:
    store = _daily_store(tmp_path / "s.duckdb")
    ForecastService(store, ForecastConfig(step_min=60, horizon_h=6), SystemClock()).run_once(END + 1)
    reg = Registry(store)
    sid = store.series()[0].id
    v = reg.versions(sid)[0]
    ex = MlflowExport(mlflow_url, experiment="greenhouse-test")
    try:
        out = ex.export(reg, sid, live={"mase": 0.71})
        again = ex.export(reg, sid)  # a second export: the same registered model, its next MLflow version
        with pytest.raises(UnknownVersion, match="has no version 9"):
            ex.export(reg, sid, 9)
    finally:
        ex.close()
    assert out["registered_model"] == model_name(str(store.series()[0].key)) == again["registered_model"]
    assert (out["mlflow_version"], again["mlflow_version"]) == ("1", "2")
    api = f"{mlflow_url}/api/2.0/mlflow"
    mv = httpx.get(f"{api}/model-versions/get", params={"name": out["registered_model"], "version": "1"}).json()
    assert mv["model_version"]["run_id"] == out["run_id"] and mv["model_version"]["source"] == out["source"]
    run = httpx.get(f"{api}/runs/get", params={"run_id": out["run_id"]}).json()["run"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert metrics["backtest_mase"] == pytest.approx(v["backtest_mase"]) and metrics["live_mase"] == pytest.approx(0.71)
    assert params["model"] == v["model"] and params["data_points"] == str(v["data_points"])
    if v["params"]:
        assert {k[len("param."):] for k in params if k.startswith("param.")} == set(json.loads(v["params"]))
    assert tags["greennanny.data_sha256"] == v["data_sha256"] and tags["greennanny.version"] == "1"
    sha = store.reader().execute("SELECT sha256 FROM model_artifacts").fetchall()[0][0]
    assert tags["greennanny.artifact_sha256"] == sha and run["info"]["status"] == "FINISHED"
    rel = run["info"]["artifact_uri"][len("mlflow-artifacts:/"):]
    blob = httpx.get(f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{rel}/model/{v['artifact']}").content
    assert hashlib.sha256(blob).hexdigest() == sha  # the artifact's bytes, unchanged
    store.close()


def test_an_mlflow_server_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    store = _daily_store(tmp_path / "s.duckdb")
    ForecastService(store, ForecastConfig(step_min=60, horizon_h=6), SystemClock()).run_once(END + 1)
    ex = MlflowExport(f"http://127.0.0.1:{free_port()}", timeout=2)
    try:
        with pytest.raises(ExportFailed, match="MLflow at http://127.0.0.1:.*: finding the experiment failed: Connect"):
            ex.export(Registry(store), store.series()[0].id)
    finally:
        ex.close()
    store.close()


def test_models_mlflow_on_the_cli_exports_the_production_version_and_audits_it(tmp_path: Path, mosquitto,
                                                                                 mlflow_url: str) -> None:
    from tests.integration.test_cli_forecast import cli, two_houses

    cfg, _ = two_houses(tmp_path, mosquitto)
    assert cli(cfg, "forecast", "run", "--json").returncode == 0
    r = cli(cfg, "models", "mlflow", "2", "--tracking-uri", mlflow_url, "--experiment", "cli-test", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["series_id"], out["version"], out["mlflow_version"]) == (2, 1, "1")
    run = httpx.get(f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": out["run_id"]}).json()["run"]
    assert {t["key"]: t["value"] for t in run["data"]["tags"]}["greennanny.series_id"] == "2"
    r = cli(cfg, "models", "audit", "--json")
    last = json.loads(r.stdout)["audit"][-1]
    assert last["action"] == "mlflow_export" and last["detail"]["run_id"] == out["run_id"]
    r = cli(cfg, "models", "mlflow", "2", "--tracking-uri", f"http://127.0.0.1:{free_port()}")
    assert r.returncode != 0 and "finding the experiment failed" in " ".join(r.stderr.split())
