"""Field faults of ../shared/cases/field-faults.md about operating models (BR-23)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from tests.unit.test_model_registry import END, H, _daily_store

from greennanny.config import ForecastConfig
from greennanny.errors import ArtifactRefused
from greennanny.forecast.service import ForecastService
from greennanny.mlops import artifacts
from greennanny.mlops.registry import Registry
from greennanny.runtime.clock import SystemClock

PICKLE_6 = b"\x80\x06K\x01."  # the case's bytes: a pickle of a protocol newer than any runtime's


def test_BR_23_a_registered_artifact_that_is_a_newer_pickle_is_refused_naming_the_protocol_and_forecasts_go_on(
        tmp_path: Path) -> None:
    store = _daily_store(tmp_path / "s.duckdb")
    cfg = ForecastConfig(step_min=60, horizon_h=6, refit_h=24)
    first = ForecastService(store, cfg, SystemClock()).run_once(END + 1)
    reg = Registry(store)
    name = artifacts.artifact_name(first.run_id)
    # the registered artifact *is* those bytes (its recorded sha256 matches them): only their content is wrong
    (reg.directory / name).write_bytes(PICKLE_6)
    store.transaction(lambda con: con.execute("UPDATE model_artifacts SET sha256 = ? WHERE artifact = ?",
                                              [hashlib.sha256(PICKLE_6).hexdigest(), name]))
    with pytest.raises(ArtifactRefused, match="a Python pickle, protocol 6, which greennanny never loads"):
        artifacts.load(reg.directory, name, hashlib.sha256(PICKLE_6).hexdigest())
    # the node keeps running: the series are refit and forecast, and the refusal is one audit row
    run = ForecastService(store, cfg, SystemClock(), resume=True).run_once(END + H + 1)
    assert run.forecasts == 3 and run.refreshed == 0 and run.registered == 3
    falls = [a for a in reg.audit() if a["action"] == "fallback"]
    assert len(falls) == 1 and "protocol 6" in falls[0]["detail"]["reason"] and falls[0]["detail"]["refit"] == 3
    for s in store.series():
        meta, pts = store.latest_forecast(s.id)
        assert meta["run_id"] == run.run_id and len(pts) == 6 and pts["mean"].notna().all()
    store.close()
