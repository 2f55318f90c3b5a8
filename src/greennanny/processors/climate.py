"""Crop-climate formulas: vapour pressure, VPD, dew point, absolute humidity, DLI, degree days.

Pure numpy on arrays (a point or a whole series), SI units in and out: degC, %RH (0-100), kPa,
g/m3, umol/m2/s, mol/m2/d. Each formula names its source. Inputs are checked at the edge
(`check_inputs`): humidity outside 0-100 %, a temperature outside what a greenhouse sensor reads,
a negative PPFD are refused with the field and the value named, never turned into a number.

Which saturation formula: controllers differ, and the shared real data shows it. The OSU 2024
controller's `VPD Air` column matches Tetens' form as FAO-56 gives it (`es_fao56`: mean absolute
difference 0.001 kPa over 41,713 rows, against 0.003 for Magnus-Sonntag); the AGC 2018 `HumDef`
column (g/m3) matches Alduchov & Eskridge's constants best (`es_alduchov`, 0.013 g/m3). Both are
offered by name (`formula=`); FAO-56 is the default, the one agronomy texts use.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from greennanny.errors import InputError

Array = np.ndarray | float
R_V = 461.5  # J/(kg K), specific gas constant of water vapour
ZERO_C = 273.15


def es_fao56(t: Array) -> np.ndarray:
    """Saturation vapour pressure over water, kPa: Tetens' form with FAO-56's constants (Allen et al.
    1998, FAO Irrigation and Drainage Paper 56, eq. 11): 0.6108 exp(17.27 T / (T + 237.3))."""
    t = np.asarray(t, dtype=np.float64)
    return 0.6108 * np.exp(17.27 * t / (t + 237.3))


def es_alduchov(t: Array) -> np.ndarray:
    """Saturation vapour pressure over water, kPa: Magnus form with Alduchov & Eskridge (1996)
    constants: 0.61094 exp(17.625 T / (T + 243.04))."""
    t = np.asarray(t, dtype=np.float64)
    return 0.61094 * np.exp(17.625 * t / (t + 243.04))


FORMULAS: dict[str, Callable[[Array], np.ndarray]] = {"fao56": es_fao56, "alduchov": es_alduchov}


def _es(formula: str) -> Callable[[Array], np.ndarray]:
    try:
        return FORMULAS[formula]
    except KeyError:
        raise InputError(f"formula: {formula!r} is not one of {', '.join(FORMULAS)}") from None


def check_inputs(**fields: Array) -> None:
    """Refuse impossible inputs, naming the field and the first bad value: relative humidity
    outside 0-100 %, a temperature outside -80..100 degC (where these formulas mean anything; a
    greenhouse sensor's own range is checked at ingest by the quantity table), a PPFD below 0 or
    above 3,000 umol/m2/s (full sun is ~2,000; a lux value in a PPFD field is caught here)."""
    limits = {"rh": (0.0, 100.0, "%"), "t": (-80.0, 100.0, "degC"), "t_leaf": (-80.0, 100.0, "degC"),
              "t_surface": (-80.0, 100.0, "degC"), "ppfd": (0.0, 3000.0, "umol/m2/s")}
    for name, value in fields.items():
        lo, hi, unit = limits[name]
        v = np.asarray(value, dtype=np.float64)
        bad = np.isfinite(v) & ((v < lo) | (v > hi))
        if bad.any():
            first = float(v[bad].flat[0])
            raise InputError(f"{name}: {first:g} {unit} is outside {lo:g}..{hi:g} {unit}")


def actual_vapour_pressure(t: Array, rh: Array, formula: str = "fao56") -> np.ndarray:
    """kPa: es(T) x RH/100 (FAO-56 eq. 19 with one RH)."""
    check_inputs(t=t, rh=rh)
    return _es(formula)(t) * np.asarray(rh, dtype=np.float64) / 100.0


def vpd_air(t: Array, rh: Array, formula: str = "fao56") -> np.ndarray:
    """Air vapour pressure deficit, kPa: es(T) - ea = es(T) (1 - RH/100)."""
    check_inputs(t=t, rh=rh)
    return _es(formula)(t) * (1.0 - np.asarray(rh, dtype=np.float64) / 100.0)


def vpd_leaf(t_air: Array, rh: Array, t_leaf: Array, formula: str = "fao56") -> np.ndarray:
    """Leaf-to-air VPD, kPa: es(T_leaf) - ea(T_air, RH), the leaf's stomata at saturation (Jones,
    Plants and Microclimate, 3rd ed., ch. 5). With no leaf sensor, give T_air + an offset
    (leaves under lamps run 1-3 degC warmer, at night cooler)."""
    check_inputs(t=t_air, rh=rh, t_leaf=t_leaf)
    es = _es(formula)
    return es(t_leaf) - es(t_air) * np.asarray(rh, dtype=np.float64) / 100.0


def dew_point(t: Array, rh: Array) -> np.ndarray:
    """degC, Magnus-Sonntag (a = 17.62, b = 243.12 degC; Sonntag 1990), from ln(RH/100) with RH as
    a fraction: the field fault BR-27 was a percentage put into ln(). Equal to T at 100 % RH, never
    above it; -inf (no dew point) at 0 % RH."""
    check_inputs(t=t, rh=rh)
    t = np.asarray(t, dtype=np.float64)
    a, b = 17.62, 243.12
    with np.errstate(divide="ignore"):
        g = np.log(np.asarray(rh, dtype=np.float64) / 100.0) + a * t / (b + t)
    return b * g / (a - g)


def dew_point_margin(t_surface: Array, t: Array, rh: Array) -> np.ndarray:
    """degC a surface (cover, leaf, fruit) is above the air's dew point; at or below 0 water condenses."""
    check_inputs(t_surface=t_surface)
    return np.asarray(t_surface, dtype=np.float64) - dew_point(t, rh)


def _grams_per_m3(vapour_kpa: np.ndarray, t: Array) -> np.ndarray:
    """Water vapour density, g/m3, of a vapour pressure at air temperature `t`: e / (R_v T_K)."""
    return vapour_kpa * 1e6 / (R_V * (np.asarray(t, dtype=np.float64) + ZERO_C))


def absolute_humidity(t: Array, rh: Array, formula: str = "fao56") -> np.ndarray:
    """g/m3 of water vapour: ea / (R_v T_K), the ideal gas law."""
    return _grams_per_m3(actual_vapour_pressure(t, rh, formula), t)


def humidity_deficit(t: Array, rh: Array, formula: str = "fao56") -> np.ndarray:
    """g/m3 the air could still take up: saturated minus actual absolute humidity (growers' 'HD'),
    i.e. the VPD as a vapour density."""
    return _grams_per_m3(vpd_air(t, rh, formula), t)


def dli(ts_ns: np.ndarray, ppfd: np.ndarray, *, day_start_ns: int, end_ns: int | None = None,
        max_gap_s: float = 900.0) -> float:
    """mol/m2 received between `day_start_ns` and `end_ns` (default 24 h later): PPFD integrated over time
    (left Riemann sum: each reading holds until the next, as a controller's counter adds it).

    The window is the grower's photoperiod day (a configured start, or a rolling 24 h), not a fixed
    midnight: under lamps that run past midnight a midnight reset splits one photoperiod in two.
    A reading followed by a gap longer than `max_gap_s` counts for `max_gap_s` only, so an outage
    does not stretch one reading over hours (the day's figure is then a lower bound)."""
    ts = np.asarray(ts_ns, dtype=np.int64)
    p = np.asarray(ppfd, dtype=np.float64)
    check_inputs(ppfd=p)
    end = day_start_ns + 86_400 * 10**9 if end_ns is None else int(end_ns)
    keep = (ts >= day_start_ns) & (ts < end) & np.isfinite(p)
    ts, p = ts[keep], p[keep]
    if ts.size == 0:
        return float("nan")
    nxt = np.append(ts[1:], end)
    hold = np.minimum((nxt - ts) / 1e9, max_gap_s)
    return float(np.sum(p * hold) / 1e6)


def growing_degree_days(t_daily_mean: Array, base: float = 10.0) -> np.ndarray:
    """degC-days per day: max(0, daily mean - base) (the averaging method; base 10 degC for tomato
    and cucumber is common)."""
    return np.maximum(0.0, np.asarray(t_daily_mean, dtype=np.float64) - base)
