"""Level steps in one series' raw readings: the sudden offset a knocked or recalibrated sensor makes.

Why this shape: on the shared AGC 2018 data (six compartments, Aug-Dec, 5-min readings) air
temperature changes of 2 degC within 30 minutes happen ~200 times per series (heating, vents,
screens), and the compartments' daily differences to each other move by 3-7 degC as the teams
change strategy, so neither a window mean nor a peer difference tells an offset from climate.
What does: a change **within one reading interval** (`min_step` or more between two consecutive
readings), that **stays** (the median of the next hour and of the next three hours both sit
0.7-1.5 jumps from the half hour before, measured against the same time a day earlier where the
series was read then, so a morning's warming does not hide an offset; a spike comes back, an
offset does not), while the
**related series do not move** at that instant (the same quantity elsewhere on the site, and
the zone's other quantities: a real change of the air moves humidity and CO2 too). On that data
the rule finds at most one step per series per month for air temperature (0-2 per series over
the four months), and every +3 degC offset injected into it (tests/e2e/test_season.py).

This module finds the candidate steps of one series (`find_steps`) and measures a related
series' change at an instant (`change_at`); `mlops.faults` joins them into sensor-fault events.
Pure numpy, no clock: times are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_NS = 60 * 10**9
DAY_NS = 24 * 60 * MIN_NS


@dataclass(frozen=True, slots=True)
class StepRules:
    min_step: float  # in the quantity's unit: smallest jump between two readings that is looked at
    before_ns: int = 30 * MIN_NS
    after_short_ns: int = 60 * MIN_NS
    after_long_ns: int = 180 * MIN_NS  # a step is judged only once this much has passed after it
    keep: tuple[float, float] = (0.7, 1.5)  # (level after - level before) / jump, both windows
    max_interval_ns: int = 20 * MIN_NS  # consecutive readings further apart are not a jump
    calm: float = 0.25  # a related series moving less than this fraction of the jump is calm


@dataclass(frozen=True, slots=True)
class StepCandidate:
    at_ns: int  # the first reading at the new level
    jump: float  # between the two readings
    before: float  # median of the `before_ns` before
    after_short: float  # median of the `after_short_ns` from `at_ns`
    after_long: float  # median of the `after_long_ns` from `at_ns`


def _median_in(t: np.ndarray, x: np.ndarray, lo: int, hi: int) -> tuple[float, int]:
    a, b = np.searchsorted(t, lo, "left"), np.searchsorted(t, hi, "left")
    seg = x[a:b]
    seg = seg[np.isfinite(seg)]
    return (float(np.median(seg)), int(seg.size)) if seg.size else (float("nan"), 0)


def find_steps(t: np.ndarray, x: np.ndarray, rules: StepRules, *, scan_from_ns: int, scan_to_ns: int) -> list[StepCandidate]:
    """Steps of one series (`t` sorted UTC ns, `x` values) whose first new reading is in
    [scan_from_ns, scan_to_ns) and which stayed for `after_long_ns` (needs readings up to then)."""
    ok = np.isfinite(x)
    t, x = t[ok], x[ok]
    if t.size < 3:
        return []
    jumps = np.diff(x)
    gaps = np.diff(t)
    idx = np.flatnonzero((np.abs(jumps) >= rules.min_step) & (gaps <= rules.max_interval_ns)) + 1
    # the daily cycle taken out where yesterday was read: a +3 offset on a morning that warms 1.5
    # degC an hour stays +3 against yesterday, while the raw 3-hour median runs away from it
    day_ago = np.interp(t - DAY_NS, t, x)
    detrended = np.where(t - DAY_NS >= t[0], x - day_ago, np.nan)
    out = []
    for i in idx.tolist():
        at = int(t[i])
        if not scan_from_ns <= at < scan_to_ns or t[-1] < at + rules.after_long_ns - rules.max_interval_ns:
            continue  # outside the scan, or not yet held for `after_long_ns`
        j = float(jumps[i - 1])
        before, nb = _median_in(t, x, at - rules.before_ns, at)
        short, ns = _median_in(t, x, at, at + rules.after_short_ns)
        long_, nl = _median_in(t, x, at, at + rules.after_long_ns)
        if min(nb, ns, nl) < 2:
            continue
        lo, hi = rules.keep
        d_before, db = _median_in(t, detrended, at - rules.before_ns, at)
        d_short, ds = _median_in(t, detrended, at, at + rules.after_short_ns)
        d_long, dl = _median_in(t, detrended, at, at + rules.after_long_ns)
        if min(db, ds, dl) >= 2 and np.isfinite(detrended[max(0, np.searchsorted(t, at - rules.before_ns)):]).all():
            held = lo <= (d_short - d_before) / j <= hi and lo <= (d_long - d_before) / j <= hi
        else:  # no yesterday to compare with: the raw levels
            held = lo <= (short - before) / j <= hi and lo <= (long_ - before) / j <= hi
        if held:
            out.append(StepCandidate(at, j, before, short, long_))
    return out


def jump_at(t: np.ndarray, x: np.ndarray, at_ns: int, max_interval_ns: int = 20 * MIN_NS) -> tuple[float, float] | None:
    """(the change between the readings either side of `at_ns`, the series' median change between
    consecutive readings): a related series that jumped at the very instant, compared with how it
    usually moves from one reading to the next. None without readings close on both sides."""
    ok = np.isfinite(x)
    t, x = t[ok], x[ok]
    i = int(np.searchsorted(t, at_ns, "left"))
    if i == 0 or i >= t.size or t[i] - t[i - 1] > max_interval_ns or t.size < 3:
        return None
    d = np.abs(np.diff(x))
    return float(x[i] - x[i - 1]), float(np.median(d))


def typical_change(t: np.ndarray, x: np.ndarray, until_ns: int, span_ns: int, half_ns: int = 15 * MIN_NS) -> float | None:
    """The median |change_at| of a series over the `span_ns` before `until_ns`, sampled every
    `half_ns`: how much it moves in ordinary times (CO2 under dosing moves a lot)."""
    at = np.arange(until_ns - span_ns + half_ns, until_ns - half_ns, half_ns, dtype=np.int64)
    moves = [abs(m) for a in at.tolist() if (m := change_at(t, x, a, half_ns)) is not None]
    return float(np.median(moves)) if moves else None


def change_at(t: np.ndarray, x: np.ndarray, at_ns: int, half_ns: int = 15 * MIN_NS) -> float | None:
    """How much a series moved at `at_ns`: median of `half_ns` after minus median of `half_ns`
    before (None without readings on both sides)."""
    before, nb = _median_in(t, x, at_ns - half_ns, at_ns)
    after, na = _median_in(t, x, at_ns, at_ns + half_ns)
    return after - before if nb and na else None
