"""Exogenous inputs: each role sees only what it may, an oracle is refused or labelled, and an
input that carries real information improves the forecast."""

from __future__ import annotations

import numpy as np
import pytest

from greennanny.forecast.base import forecast_at_origins
from greennanny.forecast.models import make_model
from greennanny.forecast.panel import Exog, Panel
from greennanny.forecast.refresh import remember
from greennanny.forecast.runner import forecast_panel

M = 24  # hourly
DAYS = 21


def _plan_driven(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Air temperature 18 + 2 sin(day) + 3 degC whenever the (random, hourly) lamp plan is on."""
    rng = np.random.default_rng(seed)
    t = np.arange((DAYS + 1) * M)
    plan = (rng.random(t.size) < 0.4).astype(float)
    y = 18 + 2 * np.sin(2 * np.pi * t / M) + 3 * plan + rng.normal(0, 0.2, t.size)
    return y, plan


def test_a_known_lighting_plan_makes_lagreg_far_better_than_without_it() -> None:
    y, plan = _plan_driven()
    end = DAYS * M
    without = Panel(np.array([1]), 0, 3600 * 10**9, y[None, :end])
    with_plan = Panel(np.array([1]), 0, 3600 * 10**9, y[None, :end], {"lamps": Exog(plan, "known")})
    err = {}
    for name, panel in (("without", without), ("with", with_plan)):
        model = make_model("lagreg", M)
        model.fit(panel)
        err[name] = float(np.mean(np.abs(model.predict(M)[0] - y[end:])))
    assert err["with"] < 0.3 * err["without"], err
    assert err["with"] < 0.4  # close to the 0.2 degC noise


def test_future_columns_of_a_lagged_input_never_reach_a_backtest_forecast() -> None:
    y, plan = _plan_driven(1)
    end = DAYS * M
    origins = [15 * M, 18 * M, end]
    changed = plan.copy()
    changed[15 * M:] = 1 - changed[15 * M:]  # everything from the first origin on is different
    out = []
    for x in (plan, changed):
        panel = Panel(np.array([1]), 0, 3600 * 10**9, y[None, :end], {"lamps": Exog(x[:end], "lagged")})
        out.append(forecast_at_origins(make_model("lagreg", M), panel, origins, M))
    np.testing.assert_array_equal(out[0][0], out[1][0])  # the first origin saw nothing that changed
    assert not np.allclose(out[0][1], out[1][1])  # later origins did see the changed past
    with pytest.raises(ValueError, match="'lamps' \\(lagged\\) has 528 steps, panel has 504"):
        Panel(np.array([1]), 0, 3600 * 10**9, y[None, :end], {"lamps": Exog(plan, "lagged")})


def test_an_oracle_input_is_refused_unless_asked_and_then_labelled_and_never_remembered() -> None:
    y, plan = _plan_driven(2)
    end = DAYS * M
    panel = Panel(np.array([7]), 0, 3600 * 10**9, y[None, :end], {"lamps": Exog(plan, "oracle")})
    with pytest.raises(ValueError, match="'lamps' carry future observed values"):
        forecast_panel(panel, horizon=M, season=M, models=("lagreg", "profile"), now_ns=0)
    res = forecast_panel(panel, horizon=M, season=M, models=("lagreg", "profile"), now_ns=0, oracle=True)
    assert res.oracle_inputs == ["lamps"] and res.model == ["lagreg"]
    with pytest.raises(ValueError, match="oracle run"):
        remember(res)
    honest = forecast_panel(Panel(np.array([7]), 0, 3600 * 10**9, y[None, :end]), horizon=M, season=M,
                            models=("lagreg", "profile"), now_ns=0)
    assert honest.oracle_inputs == [] and 7 in remember(honest)
