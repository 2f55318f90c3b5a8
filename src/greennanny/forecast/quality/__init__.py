"""Data quality for forecasting: raw points -> a clean regular grid, with a report per series.

The one implementation of the preparation real greenhouse data needs (issue 5), reused by the
MLOps work (issue 6) to tell sensor faults from drift:

- `prepare_panel`: resampling to the UTC grid (mean per half-open bin), duplicate instants (last
  write wins, counted), stuck sensors (a run of identical raw values far longer than the series
  normally shows; masked from training, span recorded), bounded linear interpolation of short
  gaps (longer gaps stay NaN, counted);
- `triage`: the constant and too-short flags the runner routes on, with the reason it stores;
- `local_calendar` / `local_day_ns`: hour, day-of-week and daily slot in the site's IANA zone.

Spikes are not detected here: on the shared AGC 2018 and OSU 2024 data, single-point swings of
8-20 times the mean step are control oscillations (vents, CO2 dosing), up to 217 per series, so
a one-series rule would mask real climate. Telling them apart needs the related series of the
zone (issue 6).
"""

from greennanny.forecast.quality.local_time import LocalCalendar, local_calendar, local_day_ns
from greennanny.forecast.quality.prepare import PreparedPanel, interpolate_gaps, prepare_panel
from greennanny.forecast.quality.report import (
    QualityReport,
    QualityRules,
    StuckSpan,
    Triage,
    iso_minute,
    triage,
)

__all__ = [
    "LocalCalendar",
    "PreparedPanel",
    "QualityReport",
    "QualityRules",
    "StuckSpan",
    "Triage",
    "interpolate_gaps",
    "iso_minute",
    "local_calendar",
    "local_day_ns",
    "prepare_panel",
    "triage",
]
