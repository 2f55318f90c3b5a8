"""A real greenhouse: AGC 2018 cucumber, air temperature of the six compartments.

Hourly means of the last 35 days; the engine sees the first 34 and forecasts the final 24 h.
The automatic choice must beat the seasonal naive yardstick it is measured against. The data
stays in ../shared (nothing copied into the repository); without it the test is skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greennanny.forecast.quality import prepare_panel
from greennanny.forecast.runner import forecast_panel

DATA = Path("/work/shared/data/agc2018_cucumber_greenhouse_climate.csv.gz")
HOUR = 3600 * 10**9
DAY = 24 * HOUR


@pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} not present")
def test_agc2018_air_temperature_day_ahead() -> None:
    df = pd.read_csv(DATA, usecols=["compartment", "time_iso", "Tair"])
    ts = pd.to_datetime(df["time_iso"]).to_numpy("datetime64[ns]").view("int64")
    codes, names = pd.factorize(df["compartment"], sort=True)
    end = int(ts.max()) // DAY * DAY  # midnight before the last (partial) day
    panel = prepare_panel(
        codes, ts, df["Tair"].to_numpy(), step_ns=HOUR, end_ns=end, length=35 * 24
    ).panel
    assert panel.n_series == 6
    history, actual = panel.head(34 * 24), panel.values[:, 34 * 24 :]
    assert np.isfinite(actual).all()

    past = history.values
    scale = np.nanmean(np.abs(past[:, 24:] - past[:, :-24]), axis=1)

    def mase(models: tuple[str, ...]) -> np.ndarray:
        res = forecast_panel(history, horizon=24, season=24, models=models, now_ns=end)
        assert res.series_ids.tolist() == list(range(6)) and np.isfinite(res.mean).all()
        print("  chosen:", dict(zip(names, res.model)))
        return np.mean(np.abs(res.mean - actual), axis=1) / scale

    auto = mase(("seasonal_naive", "ets"))
    naive = mase(("seasonal_naive",))
    print(
        f"AGC 2018 Tair, 24 h ahead: mean MASE automatic {auto.mean():.3f}, "
        f"seasonal naive {naive.mean():.3f}"
    )
    assert auto.mean() < naive.mean()
