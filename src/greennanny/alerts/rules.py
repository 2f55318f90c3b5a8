"""Rule conditions as arrays: level with hysteresis, rate of change, staleness, forecast crossing.

Pure numpy on one series' samples; the engine feeds the results to `machine.Track.step`. Each
function returns `breach` (the alert's condition holds) and `clear` (the value is back past the
clear level); samples that are neither leave the state as it is (hysteresis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from greennanny.alerts.config import RuleConfig

Z80 = 1.2815515655446004  # the 90th percentile of the standard normal: an 80 % interval is +-Z80 sigma
Z95 = 1.959963984540054
HOUR_NS = 3_600_000_000_000
_erf = np.frompyfunc(math.erf, 1, 1)


def level(values: np.ndarray, rule: RuleConfig) -> tuple[np.ndarray, np.ndarray]:
    """Threshold with a separate clear level: above `value` breaches, below `clear` clears."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v)
    if rule.op == "above":
        return ok & (v > rule.value), ok & (v < rule.clear_level)
    return ok & (v < rule.value), ok & (v > rule.clear_level)


def rate_per_hour(ts: np.ndarray, values: np.ndarray, window_ns: int) -> np.ndarray:
    """Change per hour over the last `window_ns` at each sample: (v(t) - v(t - w)) / w, with
    v(t - w) interpolated between the readings around it; NaN where the series does not reach back
    a whole window (a rate from a shorter span is noise on a 1-minute sensor)."""
    t = np.asarray(ts, np.int64)
    v = np.asarray(values, np.float64)
    out = np.full(len(t), np.nan)
    if len(t) < 2:
        return out
    back = t - window_ns
    has = back >= t[0]
    if has.any():
        prev = np.interp(back[has].astype(np.float64), t.astype(np.float64), v)
        out[has] = (v[has] - prev) / (window_ns / HOUR_NS)
    return out


def stale_after_ns(rule: RuleConfig, interval_s: int, ts: np.ndarray) -> int:
    """How old the newest reading may be: the rule's own figure, else stale_factor x the device's
    expected interval, else stale_factor x the series' median spacing (at least 5 minutes)."""
    if rule.stale_after_s:
        return rule.stale_after_s * 1_000_000_000
    if interval_s:
        return int(rule.stale_factor * interval_s * 1e9)
    spacing = float(np.median(np.diff(ts))) if len(ts) > 2 else 300e9
    return int(max(rule.stale_factor * spacing, 300e9))


@dataclass(slots=True)
class Crossing:
    """What a forecast says about a level within the horizon."""

    probability: float  # highest probability, over the steps, that the value is beyond the level
    expected_ns: int | None  # first step whose central forecast is beyond the level
    likely_ns: int | None  # first step whose probability reaches the rule's
    extreme: float  # the central forecast's maximum (above) or minimum (below) in the horizon
    made_ns: int

    def as_dict(self) -> dict[str, object]:
        return {"probability": round(self.probability, 4), "expected_ns": self.expected_ns,
                "likely_ns": self.likely_ns, "forecast_extreme": round(self.extreme, 4),
                "forecast_made_ns": self.made_ns}


def step_probability(mean: np.ndarray, lo80: np.ndarray, hi80: np.ndarray, level_: float, above: bool) -> np.ndarray:
    """P(value beyond `level_`) at each step, from a normal whose sigma is read off the 80 %
    interval on the level's side (intervals from conformal residuals are not symmetric; the side
    that faces the level is the one that matters). A zero-width interval gives 0 or 1."""
    m = np.asarray(mean, np.float64)
    half = (np.asarray(hi80, np.float64) - m) if above else (m - np.asarray(lo80, np.float64))
    sigma = np.maximum(half, 0.0) / Z80
    d = (level_ - m) if above else (m - level_)  # distance still to go; <= 0: the centre is beyond
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sigma > 0, d / sigma, np.where(d < 0, -np.inf, np.where(d > 0, np.inf, 0.0)))
    p = 0.5 * (1.0 - np.asarray(_erf(z / math.sqrt(2.0)), dtype=np.float64))
    return np.where(np.isfinite(m), p, np.nan)


def crossing(points: pd.DataFrame, now_ns: int, horizon_ns: int, rule: RuleConfig, made_ns: int) -> Crossing | None:
    """The crossing of `rule.value` by a forecast (columns ts, mean, lo80, hi80) in (now, now +
    horizon]: the probability is the highest of the steps' (a lower bound of the chance that
    any step crosses; steps are strongly correlated, so the bound is close). None without steps."""
    ts = points["ts"].to_numpy(np.int64)
    sel = (ts > now_ns) & (ts <= now_ns + horizon_ns)
    if not sel.any():
        return None
    above = rule.op == "above"
    m = points["mean"].to_numpy(np.float64)[sel]
    p = step_probability(m, points["lo80"].to_numpy(np.float64)[sel], points["hi80"].to_numpy(np.float64)[sel],
                         rule.value, above)
    t = ts[sel]
    fin = np.isfinite(p)
    if not fin.any():
        return None
    beyond = (m > rule.value) if above else (m < rule.value)
    likely = fin & (p >= rule.probability)
    return Crossing(float(np.nanmax(p)), int(t[beyond.argmax()]) if beyond.any() else None,
                    int(t[likely.argmax()]) if likely.any() else None,
                    float(np.nanmax(m) if above else np.nanmin(m)), made_ns)
