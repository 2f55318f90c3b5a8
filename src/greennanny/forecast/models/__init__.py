"""The forecasting models, one module each, and the registry that names them.

The registry name is the one used in config (`models = ["seasonal_naive", "ets"]`), in
`ForecastResult.model` and in logs; each value builds a fresh model for a season length.
"""

from __future__ import annotations

from greennanny.errors import ConfigError
from greennanny.forecast.base import Forecaster, ForecasterFactory
from greennanny.forecast.models.combination import Blend, Combination
from greennanny.forecast.models.ets import ETS
from greennanny.forecast.models.last_value import LastValue
from greennanny.forecast.models.profile import DailyProfile
from greennanny.forecast.models.regression import LagRegression
from greennanny.forecast.models.seasonal_naive import SeasonalNaive

MODELS: dict[str, ForecasterFactory] = {
    SeasonalNaive.name: SeasonalNaive,
    ETS.name: ETS,
    LastValue.name: LastValue,
    DailyProfile.name: DailyProfile,
    Combination.name: Combination,
    Blend.name: Blend,
    LagRegression.name: LagRegression,
}


def make_model(name: str, season: int) -> Forecaster:
    """A fresh model by registry name; an unknown name is a config error listing the known ones."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ConfigError(
            f"unknown forecast model {name!r}; known: {', '.join(sorted(MODELS))}"
        ) from None
    return factory(season)


__all__ = ["ETS", "MODELS", "Blend", "Combination", "DailyProfile", "LagRegression", "LastValue", "SeasonalNaive", "make_model"]
