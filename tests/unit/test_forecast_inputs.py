"""The node's exogenous inputs ([[forecast.inputs]]): found per series in its site, a lagged
input never reaches past the origin, a known plan is read for the horizon, and config refuses
an oracle."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from greennanny.config import ForecastConfig
from greennanny.forecast.service import ForecastService
from greennanny.model import Batch, SeriesKey
from greennanny.runtime.clock import SystemClock
from greennanny.store.duckdb import DuckDBStore

STEP = 300 * 10**9
END = 1_767_225_600 * 10**9  # 2026-01-01T00:00Z
NOW = END + 1
DAYS = 10


def _store(path, *, outside_shift: float = 0.0, after_now: float | None = None, plan_flip: bool = False) -> DuckDBStore:
    """Inside air temperature driven by the outside one (site gh, zone z0) and by a lamp plan,
    a second site without any outside sensor, and a plan stored a day ahead."""
    store = DuckDBStore(path)
    rng = np.random.default_rng(3)
    t = END - np.arange(DAYS * 288, 0, -1, dtype=np.int64) * STEP
    ahead = END + np.arange(0, 288, dtype=np.int64) * STEP
    hours = (t // 10**9 % 86_400) / 3600
    outside = 5 + 4 * np.sin((hours - 9) / 24 * 2 * np.pi) + rng.normal(0, 1.0, t.size).cumsum() * 0.05 + outside_shift
    block = np.concatenate([t, ahead]) // (3 * 3600 * 10**9)  # the plan switches the lamps per 3 h block,
    plan_all = (np.random.default_rng(11).random(block.max() - block.min() + 1) < 0.5)[block - block.min()].astype(float)  # not the same every day
    if plan_flip:
        plan_all[t.size:] = 1 - plan_all[t.size:]
    inside = 18 + 0.3 * outside + 2.0 * plan_all[: t.size] + rng.normal(0, 0.1, t.size)
    keys = [SeriesKey("gh", "z0", "in", "air_temperature"), SeriesKey("gh", "outside", "ws", "air_temperature"),
            SeriesKey("gh", "z0", "lamps", "vent_opening"), SeriesKey("far", "z0", "in", "air_temperature")]
    parts = [(0, t, inside), (1, t, outside), (2, np.concatenate([t, ahead]), 100 * plan_all), (3, t, inside[::-1].copy())]
    if after_now is not None:  # the weather station kept reporting after the forecast's `now`
        parts.append((1, ahead + STEP, np.full(ahead.size, after_now)))
    idx = np.concatenate([np.full(p[1].size, p[0]) for p in parts]).astype(np.int32)
    ts = np.concatenate([p[1] for p in parts])
    val = np.round(np.concatenate([p[2] for p in parts]), 2)
    store.write(Batch(keys, idx, ts, val, np.zeros(idx.size, np.uint8), {}))
    return store


def _cfg(*inputs: dict) -> ForecastConfig:
    return ForecastConfig(horizon_h=6, quantities=["air_temperature"], models=["lagreg"], tz="Europe/Amsterdam",
                          inputs=list(inputs))


OUTSIDE = {"name": "outside_temperature", "quantity": "air_temperature", "zone": "outside"}
PLAN = {"name": "lamps", "quantity": "vent_opening", "role": "known", "for_quantities": ["air_temperature"]}


def _forecast(store: DuckDBStore, cfg: ForecastConfig, sid: int = 1) -> np.ndarray:
    ForecastService(store, cfg, SystemClock()).run_once(NOW)
    got = store.latest_forecast(sid)
    assert got is not None
    return got[1]["mean"].to_numpy(np.float64)


def test_a_lagged_input_is_used_and_nothing_after_now_reaches_the_forecast(tmp_path) -> None:
    base = _forecast(_store(tmp_path / "a.duckdb"), _cfg(OUTSIDE))
    later = _forecast(_store(tmp_path / "b.duckdb", after_now=40.0), _cfg(OUTSIDE))
    np.testing.assert_array_equal(base, later)  # the station's readings after `now` changed nothing
    warmer = _forecast(_store(tmp_path / "c.duckdb", outside_shift=3.0), _cfg(OUTSIDE))
    none = _forecast(_store(tmp_path / "d.duckdb"), _cfg())
    assert not np.allclose(base, none, atol=1e-6) and not np.allclose(base, warmer, atol=1e-6)


def test_a_known_plan_is_read_for_the_horizon_and_a_site_without_a_provider_still_forecasts(tmp_path) -> None:
    a = _store(tmp_path / "a.duckdb")
    b = _store(tmp_path / "b.duckdb", plan_flip=True)
    on, off = _forecast(a, _cfg(OUTSIDE, PLAN)), _forecast(b, _cfg(OUTSIDE, PLAN))
    assert np.max(np.abs(on - off)) > 1.0  # the plan ahead moves the forecast (the lamps add 2 degC)
    far = a.latest_forecast(4)  # site "far": no station, no plan; its forecast is still made
    assert far is not None and np.isfinite(far[1]["mean"].to_numpy(np.float64)).all()
    assert far[0]["model"] == "lagreg"


def test_config_refuses_an_oracle_input_an_unknown_quantity_and_a_bad_time_zone() -> None:
    with pytest.raises(ValidationError, match="role 'oracle' must be lagged or known"):
        ForecastConfig(inputs=[{**OUTSIDE, "role": "oracle"}])
    with pytest.raises(ValidationError, match="unknown quantity 'outside_temp'"):
        ForecastConfig(inputs=[{**OUTSIDE, "quantity": "outside_temp"}])
    with pytest.raises(ValidationError, match="'Europe/Amsterdamm' is not an IANA time zone"):
        ForecastConfig(tz="Europe/Amsterdamm")
    with pytest.raises(ValidationError, match="given more than once"):
        ForecastConfig(inputs=[OUTSIDE, OUTSIDE])
