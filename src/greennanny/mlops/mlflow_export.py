"""Export of a registered model version to an MLflow tracking server, for teams that use MLflow.

Why over MLflow's REST API and not its Python package: the export needs seven HTTP calls, and
the `mlflow` package would bring ~800 MB (scikit-learn, matplotlib, a web server) onto an edge
node for them. Tested against `mlflow server` 3.17 (tests/integration/test_mlflow_export.py).

What MLflow gets for one version: a run in the experiment (default `greennanny`) named after the
series and version, with the lineage as tags (series, version, training run, data window and
sha256, code version, who trained it and why, the artifact's name and sha256), the model's
choice and parameters as params, the backtest figures (and the live ones, when scored) as
metrics, the run's artifact file uploaded under `model/`, and a version of a registered model
named after the series whose source is that upload. Credentials come from the environment as
MLflow's own clients take them (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD) and are never logged.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import httpx

from greennanny.errors import ExportFailed, UnknownVersion
from greennanny.mlops.registry import Registry


def _auth() -> tuple[dict[str, str], httpx.BasicAuth | None]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if token:
        return {"authorization": f"Bearer {token}"}, None
    return {}, httpx.BasicAuth(user, password or "") if user else None


def model_name(key: str) -> str:
    """The registered model's name for a series key (site/zone/device/quantity)."""
    return "greennanny." + re.sub(r"[^A-Za-z0-9_.-]+", "_", key.replace("/", "."))


class MlflowExport:
    def __init__(self, tracking_uri: str, *, experiment: str = "greennanny", timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers, auth = _auth()
        self.base = tracking_uri.rstrip("/")
        self.experiment = experiment
        self.http = httpx.Client(base_url=self.base, headers=headers, auth=auth, timeout=timeout, transport=transport)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, what: str, *, ok_codes: tuple[str, ...] = (), **kw: Any) -> dict[str, Any]:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ExportFailed(f"MLflow at {self.base}: {what} failed: {type(exc).__name__}: {exc}") from exc
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = {"message": r.text[:200]}
            if body.get("error_code") in ok_codes:
                return body
            raise ExportFailed(f"MLflow at {self.base}: {what} answered HTTP {r.status_code}: "
                               f"{body.get('error_code', '')} {body.get('message', '')}".rstrip())
        return r.json() if r.content else {}

    def _experiment_id(self) -> str:
        got = self._call("GET", "/api/2.0/mlflow/experiments/get-by-name", "finding the experiment",
                         ok_codes=("RESOURCE_DOES_NOT_EXIST",), params={"experiment_name": self.experiment})
        if "experiment" in got:
            return str(got["experiment"]["experiment_id"])
        return str(self._call("POST", "/api/2.0/mlflow/experiments/create", "creating the experiment",
                              json={"name": self.experiment})["experiment_id"])

    def export(self, registry: Registry, series_id: int, version: int | None = None,
               live: dict[str, Any] | None = None) -> dict[str, Any]:
        """Export `version` of a series (default: its production version); returns where it went."""
        rows = registry.versions(series_id)
        if version is None:
            prod = registry.production([series_id])
            version = prod[0]["version"] if prod else None
        v = next((r for r in rows if r["version"] == version), None)
        if v is None:
            raise UnknownVersion(f"series {series_id} has no version {version if version is not None else '(none registered)'}")
        info = registry.store.series_by_id(series_id)
        key = str(info.key) if info is not None else f"series-{series_id}"
        sha = registry.store.reader().execute("SELECT sha256 FROM model_artifacts WHERE artifact = ?",
                                              [v["artifact"]]).fetchall()
        exp = self._experiment_id()
        run = self._call("POST", "/api/2.0/mlflow/runs/create", "creating the run", json={
            "experiment_id": exp, "run_name": f"{key} v{version}", "start_time": v["created_ns"] // 10**6,
            "tags": [{"key": k, "value": str(x)} for k, x in {
                "greennanny.series_id": series_id, "greennanny.series": key, "greennanny.version": version,
                "greennanny.training_run": v["run_id"], "greennanny.data_sha256": v["data_sha256"],
                "greennanny.code_version": v["code_version"], "greennanny.trained_by": v["trained_by"],
                "greennanny.reason": v["reason"], "greennanny.artifact": v["artifact"],
                "greennanny.artifact_sha256": sha[0][0] if sha else "(removed by retention)",
                "mlflow.source.name": "greennanny"}.items()]})["run"]["info"]
        params = {"model": v["model"], "step_ns": v["step_ns"], "horizon": v["horizon"],
                  "data_start_ns": v["data_start_ns"], "data_end_ns": v["data_end_ns"],
                  "data_points": v["data_points"], "runner_up": v["runner_up"]}
        if v["params"]:
            params.update({f"param.{k}": x for k, x in json.loads(v["params"]).items()})
        metrics = {"backtest_mae": v["backtest_mae"], "backtest_mase": v["backtest_mase"],
                   "runner_up_mase": v["runner_up_mase"], **{f"live_{k}": x for k, x in (live or {}).items()}}
        ts = v["created_ns"] // 10**6
        self._call("POST", "/api/2.0/mlflow/runs/log-batch", "logging params and metrics", json={
            "run_id": run["run_id"], "params": [{"key": k, "value": str(x)} for k, x in params.items()],
            "metrics": [{"key": k, "value": float(x), "timestamp": ts, "step": 0} for k, x in metrics.items()
                        if x is not None and math.isfinite(x)]})
        source = f"{run['artifact_uri']}/model"
        path = registry.directory / v["artifact"]
        if path.exists() and run["artifact_uri"].startswith("mlflow-artifacts:/"):
            rel = run["artifact_uri"][len("mlflow-artifacts:/"):].lstrip("/")
            self._call("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{rel}/model/{v['artifact']}",
                       "uploading the artifact", content=path.read_bytes())
        self._call("POST", "/api/2.0/mlflow/runs/update", "finishing the run",
                   json={"run_id": run["run_id"], "status": "FINISHED", "end_time": ts})
        name = model_name(key)
        self._call("POST", "/api/2.0/mlflow/registered-models/create", "creating the registered model",
                   ok_codes=("RESOURCE_ALREADY_EXISTS",), json={"name": name})
        mv = self._call("POST", "/api/2.0/mlflow/model-versions/create", "creating the model version", json={
            "name": name, "source": source, "run_id": run["run_id"],
            "description": f"greennanny {v['model']} for {key}, version {version} (training run {v['run_id']})",
            "tags": [{"key": "greennanny.version", "value": str(version)}]})["model_version"]
        return {"series_id": series_id, "version": version, "tracking_uri": self.base, "experiment_id": exp,
                "run_id": run["run_id"], "registered_model": name, "mlflow_version": mv["version"], "source": source}
