"""The last finite value, repeated: the forecaster of last resort.

Why it exists: it needs a single observation and cannot fail, so every series that has any data
gets a finite forecast, however little history or however broken the other models are.
"""

from __future__ import annotations

import numpy as np

from greennanny.forecast.panel import Panel, last_finite


class LastValue:
    """Forecasts the last finite value of each series at every step."""

    name = "last_value"

    def __init__(self, season: int = 1) -> None:
        # `season` is accepted so every model is built the same way; a flat line has none.
        self.season = season
        self._last: np.ndarray | None = None

    def fit(self, panel: Panel) -> None:
        self._last = last_finite(panel.values)

    def predict(self, h: int) -> np.ndarray:
        if self._last is None:
            raise RuntimeError("last_value: fit() before predict()")
        return np.repeat(self._last[:, None], h, axis=1)

    def update(self, panel: Panel) -> None:
        self.fit(panel)
