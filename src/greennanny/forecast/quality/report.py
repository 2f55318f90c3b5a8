"""What the data-quality step found per series, the rules it applied, and the triage of a grid.

Why a report per series rather than a log line: the runner needs the flags to pick a lane
(constant, too short), the forecast carries the reasons so a grower sees why a line is flat or
missing, and the MLOps work (issue 6) turns the same counts and spans into sensor-fault events.
One dataclass serves all three, so nobody re-derives "was it stuck" from the raw data again.

Reasons are short strings naming the value and the span (UTC, minute precision), because they
end up in an API response and a dashboard tooltip, not in a debugger.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

_DAY_NS = 86_400 * 10**9
_MIN_NS = 60 * 10**9


@dataclass(frozen=True, slots=True)
class QualityRules:
    """The knobs of the preparation (from `[forecast]` in config.py via `from_config`).

    `max_gap_steps`: longest run of empty grid steps filled by linear interpolation.
    `stuck_factor`, `stuck_min_ns`: a run of identical raw values is stuck when it has at least
    `stuck_factor` times the points of the series' normal long run (its 99.9th-percentile run)
    and lasts at least `stuck_min_ns` from its first to its last point.
    `min_history_steps`: finite grid steps a series needs before models are selected for it;
    None means two seasons (the runner's default).
    """

    max_gap_steps: int = 4
    stuck_factor: float = 4.0
    stuck_min_ns: int = 60 * _MIN_NS
    min_history_steps: int | None = None

    def __post_init__(self) -> None:
        if self.max_gap_steps < 0 or self.stuck_factor < 1.0 or self.stuck_min_ns < 0:
            raise ValueError(
                f"max_gap_steps >= 0, stuck_factor >= 1 and stuck_min_ns >= 0 are needed, got "
                f"{self.max_gap_steps}, {self.stuck_factor}, {self.stuck_min_ns}"
            )
        if self.min_history_steps is not None and self.min_history_steps < 2:
            raise ValueError(f"min_history_steps must be >= 2, got {self.min_history_steps}")

    @classmethod
    def for_grid(
        cls,
        step_ns: int,
        *,
        max_gap_min: int,
        stuck_factor: float,
        stuck_after_min: int,
        min_history_days: float,
    ) -> QualityRules:
        """Rules in grid steps from the config's minutes and days (rounded down, history up)."""
        return cls(
            max_gap_steps=max_gap_min * _MIN_NS // step_ns,
            stuck_factor=stuck_factor,
            stuck_min_ns=stuck_after_min * _MIN_NS,
            min_history_steps=max(2, -(-int(min_history_days * _DAY_NS) // step_ns)),
        )


@dataclass(frozen=True, slots=True)
class StuckSpan:
    """A run of `points` identical raw values `value`, first to last point (inclusive), UTC ns."""

    first_ns: int
    last_ns: int
    points: int
    value: float

    def describe(self) -> str:
        return (
            f"stuck at {self.value:g} for {self.points} points, {iso_minute(self.first_ns)} to "
            f"{iso_minute(self.last_ns)}: masked from training"
        )


@dataclass(slots=True)
class QualityReport:
    """What preparation did to one series of the grid; `reasons` says it in words.

    Counts are raw points (`points`, `duplicates`, `stuck_points`) or grid steps (the rest).
    `masked_gap_steps` are empty steps between the first and last reported step that were too
    long a gap to interpolate; `silent_steps` are the empty steps after the last report (a
    sensor that stopped). `observed_steps` are the finite steps the models see.
    """

    series_id: int
    points: int = 0
    duplicates: int = 0
    stuck_points: int = 0
    stuck_steps: int = 0
    interpolated_steps: int = 0
    masked_gap_steps: int = 0
    longest_gap_steps: int = 0
    silent_steps: int = 0
    observed_steps: int = 0
    constant: bool = False
    too_short: bool = False
    stuck_spans: list[StuckSpan] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def note(self) -> str | None:
        """The reasons as one string (None when there is nothing to say)."""
        return "; ".join(self.reasons) if self.reasons else None


@dataclass(slots=True)
class Triage:
    """Per row of a grid: finite count, and the constant / too-short flags with their reasons."""

    count: np.ndarray  # (n,) finite steps
    constant: np.ndarray  # (n,) bool: enough history, every finite value equal
    too_short: np.ndarray  # (n,) bool: some but fewer than min_history finite steps
    reasons: dict[int, str]  # row -> reason, for the constant and too-short rows


def triage(values: np.ndarray, min_history: int) -> Triage:
    """Flag the rows a model should not be fitted to, with the reason the runner stores.

    Too short wins over constant: a probe with three equal readings is new, not constant.
    A row without any finite value is neither (the runner skips it with its own reason).
    """
    count = np.isfinite(values).sum(axis=1)
    has = count > 0
    too_short = has & (count < min_history)
    span = np.zeros(values.shape[0])
    if has.any():
        with np.errstate(invalid="ignore"):
            span[has] = np.nanmax(values[has], axis=1) - np.nanmin(values[has], axis=1)
    constant = has & ~too_short & (span == 0)
    reasons: dict[int, str] = {}
    for r in np.flatnonzero(too_short):
        c = int(count[r])
        reasons[int(r)] = f"too short: {c} observation{'s' * (c != 1)}, need {min_history}"
    for r in np.flatnonzero(constant):
        value = float(np.nanmax(values[r]))
        reasons[int(r)] = f"constant series: all {int(count[r])} values are {value:g}"
    return Triage(count, constant, too_short, reasons)


def iso_minute(ts_ns: int) -> str:
    """`2018-10-17T03:30Z`: short enough for a reason string, exact to the minute."""
    return pd.Timestamp(int(ts_ns), unit="ns", tz="UTC").strftime("%Y-%m-%dT%H:%MZ")
