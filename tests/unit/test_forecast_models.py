"""Each forecaster through the contract, plus what each one is for."""

from __future__ import annotations

import numpy as np
import pytest

from greennanny.errors import ConfigError
from greennanny.forecast.base import Forecaster, forecast_at_origins
from greennanny.forecast.models import ETS, MODELS, LastValue, SeasonalNaive, make_model
from greennanny.forecast.models.ets import EtsGrid
from greennanny.forecast.panel import Panel

NAN = np.nan
M = 96  # one day at 15 min


def _panel(values: np.ndarray) -> Panel:
    values = np.atleast_2d(values)
    return Panel(np.arange(values.shape[0]), 0, 900 * 10**9, values)


def _sine(n_steps: int, level: float = 20.0, amp: float = 3.0) -> np.ndarray:
    return level + amp * np.sin(2 * np.pi * np.arange(n_steps) / M)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_keeps_the_contract(name: str) -> None:
    model = make_model(name, 4)
    assert isinstance(model, Forecaster) and model.name == name
    with pytest.raises(RuntimeError, match="fit"):
        model.predict(3)
    rng = np.random.default_rng(0)
    values = rng.normal(10, 1, (3, 40))
    values[1, 10:20] = NAN
    values[2] = NAN
    before = values.copy()
    model.fit(_panel(values))
    np.testing.assert_array_equal(values, before)  # a model never writes into the panel
    single = values[1:2].copy()
    model.fit(_panel(single))  # one row: its transpose is contiguous too, still no write
    np.testing.assert_array_equal(single, before[1:2])
    model.fit(_panel(values))
    out = model.predict(7)
    assert out.shape == (3, 7) and out.dtype == np.float64
    assert np.isfinite(out[:2]).all()  # finite wherever the series had data
    model.update(_panel(np.concatenate([values, values[:, :4]], axis=1)))
    assert model.predict(2).shape == (3, 2)


def test_unknown_model_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown forecast model 'prophet'"):
        make_model("prophet", 96)


def test_seasonal_naive_repeats_yesterday_exactly() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(0, 1, (2, 3 * M))
    model = SeasonalNaive(M)
    model.fit(_panel(values))
    out = model.predict(2 * M + 5)
    expected = np.concatenate([values[:, -M:], values[:, -M:], values[:, -M : -M + 5]], axis=1)
    np.testing.assert_array_equal(out, expected)


def test_seasonal_naive_fills_holes_from_the_day_before_then_the_last_value() -> None:
    values = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, NAN, NAN, 8.0]])
    values_two_holes = np.array([[1.0, NAN, 3.0, 4.0, 5.0, NAN, 7.0, NAN]])
    model = SeasonalNaive(4)
    model.fit(_panel(values))
    np.testing.assert_array_equal(model.predict(4), [[5.0, 2.0, 3.0, 8.0]])
    model.fit(_panel(values_two_holes))
    # phase 1 is missing both days -> the last finite value (7); phase 3 comes from the day before
    np.testing.assert_array_equal(model.predict(4), [[5.0, 7.0, 7.0, 4.0]])
    model.fit(_panel(np.array([[NAN, 6.0]])))  # shorter than a season: the last value
    np.testing.assert_array_equal(model.predict(5), [[6.0] * 5])


def test_last_value_is_the_last_finite_value() -> None:
    model = LastValue()
    model.fit(_panel(np.array([[1.0, 2.0, NAN], [NAN, NAN, NAN]])))
    np.testing.assert_array_equal(model.predict(3), [[2.0, 2.0, 2.0], [NAN, NAN, NAN]])


def test_ets_recovers_a_noiseless_daily_sine() -> None:
    y = _sine(11 * M)
    history = y[: 10 * M].copy()
    history[5 * M + 7 : 5 * M + 40] = NAN  # a gap is carried through by the one-step forecast
    model = ETS(M)
    model.fit(_panel(history))
    np.testing.assert_allclose(model.predict(M)[0], y[10 * M :], atol=1e-3)
    damped = ETS(M, grid=EtsGrid(trend=((0.0, 1.0), (0.05, 0.9))), leads=(1,))
    damped.fit(_panel(history))
    np.testing.assert_allclose(damped.predict(M)[0], y[10 * M :], atol=1e-3)


def test_ets_beats_seasonal_naive_on_a_noisy_sine_with_a_level_shift() -> None:
    rng = np.random.default_rng(2)
    n, t = 100, 15 * M
    y = _sine(t + M)[None, :] + rng.normal(0, 0.5, (n, t + M))
    y[:, t - M // 2 :] += 2.0  # the heating setpoint went up half a day ago
    history, future = _panel(y[:, :t]), y[:, t:]
    maes = {}
    for model in (ETS(M), SeasonalNaive(M)):
        model.fit(history)
        maes[model.name] = float(np.abs(model.predict(M) - future).mean())
    print(f"MAE ets {maes['ets']:.3f}, seasonal_naive {maes['seasonal_naive']:.3f}")
    assert maes["ets"] < 0.7 * maes["seasonal_naive"]


def test_ets_one_pass_backtest_equals_refitting() -> None:
    rng = np.random.default_rng(3)
    values = _sine(8 * M)[None, :] + rng.normal(0, 0.3, (4, 8 * M))
    values[1, 300:330] = NAN
    panel = _panel(values)
    origins = [6 * M, 7 * M, 8 * M]
    fast = ETS(M).forecast_origins(panel, origins, M)
    for j, origin in enumerate(origins):
        model = ETS(M)
        model.fit(panel.head(origin))
        np.testing.assert_allclose(fast[j], model.predict(M), rtol=0, atol=1e-9)


def test_ets_backtest_origin_inside_start_window_has_no_forecast() -> None:
    values = np.full((2, 6 * M), NAN)
    values[0] = _sine(6 * M)
    values[1, 3 * M :] = _sine(3 * M)  # starts half way: 2 seasons of start window end at 5*M
    out = forecast_at_origins(ETS(M), _panel(values), [4 * M, 6 * M], 8)
    assert np.isfinite(out[0, 0]).all() and np.isnan(out[0, 1]).all()
    assert np.isfinite(out[1]).all()


def test_ets_rejects_leads_longer_than_the_season() -> None:
    with pytest.raises(ValueError, match="leads"):
        ETS(4, leads=(5,))


def _noisy(n: int, t: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return _sine(t)[None, :] + rng.normal(0, 0.4, (n, t)).cumsum(axis=1) * 0.1 + rng.normal(0, 0.3, (n, t))


def test_ets_update_with_kept_parameters_equals_a_fit_on_a_one_point_grid() -> None:
    values = _noisy(4, 10 * M)
    values[1, 300:340] = NAN
    first = ETS(M)
    first.fit(_panel(values[:, : 9 * M]))
    kept = first.params()
    assert {tuple(sorted(p)) for p in kept} == {("alpha", "beta", "gamma", "phi")}
    later = ETS(M)
    later.use_params(kept)
    later.update(_panel(values))  # a day more data, no search
    for i, p in enumerate(kept):
        one = ETS(M, grid=EtsGrid(alpha=(p["alpha"],), gamma=(p["gamma"],), trend=((p["beta"], p["phi"]),)))
        one.fit(_panel(values[i : i + 1]))
        np.testing.assert_allclose(later.predict(M)[i], one.predict(M)[0], atol=1e-12)
    assert later.params() == kept


def test_ets_params_after_a_backtest_are_those_of_the_last_origin() -> None:
    values = _noisy(3, 10 * M, seed=5)
    model = ETS(M)
    model.forecast_origins(_panel(values), [8 * M, 10 * M, 9 * M], M)
    fitted = ETS(M)
    fitted.fit(_panel(values))
    assert model.params() == fitted.params()


@pytest.mark.parametrize("name", ["ets", "blend", "combo", "lagreg"])
def test_kept_parameters_reproduce_the_forecast_they_came_from(name: str) -> None:
    values = _noisy(5, 14 * M, seed=7)
    panel = _panel(values)
    model = make_model(name, M)
    model.fit(panel)
    again = make_model(name, M)
    again.use_params(model.params())  # type: ignore[attr-defined]
    again.update(panel)
    np.testing.assert_allclose(again.predict(M), model.predict(M), atol=1e-12)


def test_blend_update_keeps_its_weights_and_a_fit_chooses_them_again() -> None:
    values = _noisy(3, 14 * M, seed=11)
    model = make_model("blend", M)
    model.fit(_panel(values[:, : 13 * M]))
    weights = [{k: v for k, v in p.items() if k.startswith("w")} for p in model.params()]  # type: ignore[attr-defined]
    model.update(_panel(values))
    assert [{k: v for k, v in p.items() if k.startswith("w")} for p in model.params()] == weights  # type: ignore[attr-defined]
    model.fit(_panel(values))
    assert [{k: v for k, v in p.items() if k.startswith("w")} for p in model.params()] != weights  # type: ignore[attr-defined]


def test_parameters_missing_a_field_are_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'gamma'"):
        ETS(M).use_params([{"alpha": 0.1, "beta": 0.0, "phi": 1.0}])
    with pytest.raises(ValueError, match="'w2'"):
        make_model("blend", M).use_params([{"w0": 0.5, "w1": 0.5}])  # type: ignore[attr-defined]


def test_lagreg_backtest_in_one_design_equals_refitting_at_each_origin() -> None:
    from greennanny.forecast.panel import Exog

    values = _noisy(4, 12 * M, seed=13)
    values[2, 500:560] = NAN
    sun = np.sin(np.arange(13 * M) / 7.0)
    panel = Panel(np.arange(4), 0, 900 * 10**9, values,
                  {"sun": Exog(sun[: 12 * M]), "plan": Exog(sun[::-1].copy(), "known")}, tz="Europe/Amsterdam")
    origins = [11 * M, 9 * M + 5, 12 * M, 10 * M]
    for h in (M, 5, M + 7):  # within a day the forecasts come from the whole panel's features
        fast_model = make_model("lagreg", M)
        fast = fast_model.forecast_origins(panel, origins, h)  # type: ignore[attr-defined]
        slow = forecast_at_origins(_NoFastPath(make_model("lagreg", M)), panel, origins, h)
        np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-9)
        assert np.isfinite(fast).all()
        live = make_model("lagreg", M)
        live.fit(panel)
        np.testing.assert_allclose(fast_model.predict(h), live.predict(h), rtol=1e-9, atol=1e-9)  # left at the last


class _NoFastPath:
    """Hides a model's `forecast_origins`, so `forecast_at_origins` refits at each origin."""

    def __init__(self, model: Forecaster) -> None:
        self.model, self.name = model, model.name

    def fit(self, panel: Panel) -> None:
        self.model.fit(panel)

    def predict(self, h: int) -> np.ndarray:
        return self.model.predict(h)

    def update(self, panel: Panel) -> None:
        self.model.update(panel)
