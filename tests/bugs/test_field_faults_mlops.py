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


def test_BR_22_a_feature_all_missing_in_the_reference_window_is_a_warning_and_the_others_are_still_monitored(
        tmp_path: Path) -> None:
    import numpy as np

    from greennanny.mlops.events import Events
    from greennanny.model import Batch, SeriesKey

    store = _daily_store(tmp_path / "s.duckdb")  # three air temperatures, 14 days hourly, with models
    cfg = ForecastConfig(step_min=60, horizon_h=6, refit_h=24, quantities=["air_temperature", "co2"])
    svc = ForecastService(store, cfg, SystemClock())
    svc.run_once(END + 1)
    # the case: co2 was offline for the whole reference window, present in the analysis window (48 h)
    t = END - np.arange(48, 0, -1, dtype=np.int64) * H
    key = SeriesKey("gh", "z0", "co2-1", "co2")
    store.write(Batch([key], np.zeros(48, np.int32), t, np.linspace(420, 900, 48).round(1), np.zeros(48, np.uint8), {}))
    svc.run_once(END + 2)
    got = svc.after_run(END + 2)  # no exception
    co2 = next(s.id for s in store.series(quantity="co2"))
    assert got is not None and any(w.startswith(f"series {co2} ") and "no reference data" in w for w in got.warnings)
    assert not [e for e in Events(store).list() if e["series_id"] == co2]  # no drift alert for it
    assert len(Registry(store).production()) == 3  # the temperatures still have their models, monitored
    store.close()
