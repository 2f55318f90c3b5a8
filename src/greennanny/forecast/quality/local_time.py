"""Calendar features of a UTC grid in the site's local time.

Why local time: a greenhouse lives by the local clock (lights on at 06:00, heating setpoints by
the hour), so hour-of-day and day-of-week features must follow it across clock changes, while
the grid and the store stay in UTC so that no instant is lost or doubled. Two consequences,
both pinned by tests: the spring-forward day in Europe/Amsterdam has 23 hourly steps and no
local hour 2; the fall-back night in America/New_York has two distinct UTC steps both labelled
local hour 1. A feature is a label of a UTC step; it is never used to index the grid.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from greennanny.errors import ConfigError


@dataclass(frozen=True, slots=True)
class LocalCalendar:
    """Per grid step: local `hour` (0-23), `dow` (0 = Monday), `slot` of the local day.

    `slot` is the local minute of day // step (0..slots_per_day-1), the daily-profile index a
    sub-hourly model uses; at an hourly step it equals `hour`. `date` is the local date as
    numpy datetime64[D].
    """

    hour: np.ndarray  # int8
    dow: np.ndarray  # int8
    slot: np.ndarray  # int16
    date: np.ndarray  # datetime64[D]


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"tz {tz!r} is not an IANA time zone") from None


def local_calendar(start_ns: int, step_ns: int, n_steps: int, tz: str) -> LocalCalendar:
    """Local calendar labels of the steps starting at `start_ns + k*step_ns` (UTC ns)."""
    _zone(tz)
    utc = start_ns + step_ns * np.arange(n_steps, dtype=np.int64)
    local = pd.DatetimeIndex(utc.view("datetime64[ns]")).tz_localize("UTC").tz_convert(tz)
    minute = local.hour.to_numpy() * 60 + local.minute.to_numpy()
    step_min = max(1, step_ns // (60 * 10**9))
    return LocalCalendar(
        hour=local.hour.to_numpy().astype(np.int8),
        dow=local.day_of_week.to_numpy().astype(np.int8),
        slot=(minute // step_min).astype(np.int16),
        date=local.tz_localize(None).to_numpy().astype("datetime64[D]"),
    )


def local_day_ns(day: dt.date, tz: str) -> tuple[int, int]:
    """UTC ns of local midnight starting `day` and of the next one (23, 24 or 25 h apart)."""
    zone = _zone(tz)

    def midnight(d: dt.date) -> int:
        t = dt.datetime(d.year, d.month, d.day, tzinfo=zone)
        return int(pd.Timestamp(t).tz_convert("UTC").value)

    return midnight(day), midnight(day + dt.timedelta(days=1))
