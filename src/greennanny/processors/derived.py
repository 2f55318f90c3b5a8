"""Derived crop-climate series per zone (issue 7): VPD, dew point, leaf VPD, DLI, degree days...,
each a series of its own, SeriesKey(site, zone, "derived", quantity), computed from the store.

Why rounds over the store, not a processor in the ingest path: one derived point needs readings of
several devices (a T/RH probe, a leaf sensor, a light sensor) that arrive in different messages;
the store is where they meet, deduplicated and range-checked. Why watermarks from the store: the
last derived instant of each derived series (`SeriesInfo.last_ns`, missing rows included) is
where the next round starts, so a restart continues where it stopped and never emits a point
twice, with no state of its own (a store that keeps no missing rows, InfluxDB, may write a missing
point again: same series and instant, last write wins). Why columnar: a zone's round is a few numpy
arrays, matched with searchsorted and put through each formula of processors/climate.py once;
Python loops only over the rare rows that need a reason and over DLI/GDD windows (an hour or a day).

Choices:
- One sensor per input and zone, chosen by device name, so the choice is the same every round
  and after a restart: air temperature from the first device (by name) that has reported in the
  last day (else the first of all), humidity from that same device when it measures it (T and RH
  of one probe belong together: RH is relative to that probe's temperature; averaging two probes'
  RH is not the RH of their mean temperature), else from the first by name; the same for leaf
  temperature and light. A device that stops for a day is passed over; name a zone's reference
  probe so it sorts first. Device "derived" is never an input (derived series do not feed themselves).
- Points are stamped at the air temperature's readings (the driving input); a partner is the
  nearest reading (a tie goes to the earlier) within `tolerance_s`. Only OK readings are used: no
  partner that close, a partner flagged at ingest (outside the physical range) or one that
  climate.check_inputs refuses gives a MISSING point (NaN) whose reason names the input and why,
  never a number made from a stale or a faulty value. A flagged air temperature gives missing
  points too (a flagged input is kept in the store, never trusted).
- A point is derived once its partners have settled: a partner has a reading at or after it, or
  `tolerance_s` has passed (a partner arriving late within tolerance is waited for, not missed).
- Leaf VPD: a measured leaf temperature where the zone has one (its gaps are missing points),
  else air temperature + `leaf_offset_c` when configured, else no leaf VPD. Dew point margin: of
  the measured leaf temperature only (the surface where condensation matters; an offset is a guess).
- Light: ppfd, else illuminance x `lux_to_ppfd` (a mean spectrum's factor, a lower-grade figure).
- DLI: climate.dli over each window ('rolling': the last 24 h at every local hour; 'HH:MM': the
  light day in local time `tz`, 23 or 25 h across a DST change, stamped at its end). Each reading
  holds until the next, at most max(900 s, 1.5 x the median step): a window whose readings
  cover less than `min_coverage` of it is missing, with the coverage named.
- GDD: per local calendar day, climate.growing_degree_days of the time-weighted mean air
  temperature (weights as for DLI, same coverage rule), stamped at the day's end (next midnight).
- A derived value outside its quantity's physical range is stored FLAGGED with the reason.
- A new derived series starts at its inputs' first readings (less the tolerance), never before a
  sensor existed; a round derives at most `catch_up_s` of a zone, so a first start on a long
  history catches up over several rounds (a longer gap without air readings is stepped over).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from greennanny.alerts.config import DerivedConfig
from greennanny.errors import ConfigError, InputError, StoreError
from greennanny.model import QUANTITIES, Batch, Quality, SeriesKey
from greennanny.processors import climate
from greennanny.store.base import SeriesInfo, WriteResult

log = logging.getLogger("greennanny.derived")

DEVICE = "derived"
S = 1_000_000_000
HOUR = 3600 * S
DAY = 86_400 * S
LIVE_NS = DAY  # a device silent this long is passed over for the next by name
SEARCH_NS = 3600 * S  # partners are read this far around the driving readings (the "nearest" of a reason)
GAP_S = 900.0  # climate.dli's cap on one reading's hold
INPUTS = ("air_temperature", "relative_humidity", "leaf_temperature", "ppfd", "illuminance")
PAIRED = ("vapour_pressure", "vpd", "humidity_deficit", "absolute_humidity", "dew_point")

# Each output, its formula in processors/climate.py and that formula's source.
SOURCES: dict[str, str] = {
    "saturation_vapour_pressure": "climate.es_fao56 (FAO-56 eq. 11) or es_alduchov (Alduchov & Eskridge 1996), by `formula`",
    "vapour_pressure": "climate.actual_vapour_pressure: es(T) RH/100 (FAO-56 eq. 19)",
    "vpd": "climate.vpd_air: es(T) (1 - RH/100) (FAO-56)",
    "humidity_deficit": "climate.humidity_deficit: the VPD as a vapour density, e / (R_v T) (ideal gas law)",
    "absolute_humidity": "climate.absolute_humidity: ea / (R_v T) (ideal gas law)",
    "dew_point": "climate.dew_point: Magnus-Sonntag, a = 17.62, b = 243.12 degC (Sonntag 1990)",
    "vpd_leaf": "climate.vpd_leaf: es(T_leaf) - ea (Jones, Plants and Microclimate, ch. 5)",
    "dew_point_margin": "climate.dew_point_margin: T_leaf - dew point (Sonntag 1990)",
    "dli": "climate.dli: PPFD integrated over the window, left Riemann sum, outages capped",
    "gdd": "climate.growing_degree_days: max(0, daily mean - base) (averaging method)",
}


class DerivedStore(Protocol):
    """The part of the store contract the deriver uses (store/base.py)."""

    def series(self, *, site: str | None = None, zone: str | None = None, quantity: str | None = None,
               device: str | None = None) -> list[SeriesInfo]: ...

    def query_many(self, series_ids: Sequence[int], start_ns: int | None, end_ns: int | None) -> pd.DataFrame: ...

    def write(self, batch: Batch) -> WriteResult: ...


def iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(ns) // S))


@dataclass(frozen=True, slots=True)
class Readings:
    """Served readings of one input series in time order, in the formula's unit; `bad` holds why
    a reading is unusable (flagged at ingest, refused by climate.check_inputs), by position, and
    its value is NaN."""

    name: str
    ts: np.ndarray
    value: np.ndarray
    bad: dict[int, str]


@dataclass(slots=True)
class Zone:
    """One zone's chosen input series and the watermark of each derived series."""

    site: str
    zone: str
    inputs: dict[str, SeriesInfo] = field(default_factory=dict)  # air, rh, leaf, light
    done: dict[str, int] = field(default_factory=dict)  # derived quantity -> last derived instant

    def key(self, quantity: str) -> SeriesKey:
        return SeriesKey(self.site, self.zone, DEVICE, quantity)


def refused(field_name: str, v: np.ndarray) -> dict[int, str]:
    """Positions of values climate.check_inputs refuses, with its message. One call on the whole
    column; only a column that fails is checked value by value (rare: ingest flags most first)."""
    try:
        climate.check_inputs(**{field_name: v})
        return {}
    except InputError:
        pass
    out = {}
    for i in np.flatnonzero(np.isfinite(v)).tolist():
        try:
            climate.check_inputs(**{field_name: v[i]})
        except InputError as exc:
            out[i] = str(exc)
    return out


def readings(frame: pd.DataFrame, info: SeriesInfo, field_name: str, factor: float = 1.0) -> Readings:
    """The rows of `info` in a query_many frame (sorted by series, ts) as Readings."""
    rows = frame["series_id"].to_numpy() == info.id
    ts = frame["ts"].to_numpy(np.int64)[rows]
    raw = frame["value"].to_numpy(np.float64)[rows]
    qual = frame["quality"].to_numpy(np.uint8)[rows]
    q = QUANTITIES[info.key.quantity]
    name = info.key.quantity
    bad = {i: f"{name}: {raw[i]:g} {q.unit} at {iso(ts[i])} is flagged (outside physical range "
              f"{q.valid_min:g}..{q.valid_max:g} {q.unit})" for i in np.flatnonzero(qual != Quality.OK).tolist()}
    value = raw * factor
    value[list(bad)] = np.nan
    for i, why in refused(field_name, value).items():
        bad[i] = f"{name}: {raw[i]:g} {q.unit} at {iso(ts[i])} refused by climate.check_inputs ({why})"
        value[i] = np.nan
    return Readings(name, ts, value, bad)


def match(t: np.ndarray, r: Readings, tol_ns: int) -> tuple[np.ndarray, dict[int, str]]:
    """The value of `r` nearest each instant of `t` within `tol_ns` (NaN where none is usable) and
    why, by position in `t`, for each NaN."""
    n = r.ts.size
    if n == 0:
        text = f"{r.name}: no reading within {tol_ns // S} s (none within {SEARCH_NS // S} s)"
        return np.full(t.size, np.nan), dict.fromkeys(range(t.size), text)
    j = np.searchsorted(r.ts, t)
    left, right = np.clip(j - 1, 0, n - 1), np.clip(j, 0, n - 1)
    big = np.iinfo(np.int64).max
    d_left = np.where(j > 0, t - r.ts[left], big)
    d_right = np.where(j < n, r.ts[right] - t, big)
    pick = np.where(d_right < d_left, right, left)
    near = np.minimum(d_left, d_right) <= tol_ns
    value = np.where(near, r.value[pick], np.nan)
    why: dict[int, str] = {}
    for i in np.flatnonzero(~np.isfinite(value)).tolist():
        p = int(pick[i])
        why[i] = (r.bad[p] if near[i] else
                  f"{r.name}: no reading within {tol_ns // S} s (nearest {iso(r.ts[p])})")
    return value, why


def output(key: SeriesKey, ts: np.ndarray, value: np.ndarray, why: dict[int, str], sel: np.ndarray) -> Batch:
    """Rows `sel` of one derived series: NaN is MISSING with its reason, a value outside the
    quantity's physical range FLAGGED with it."""
    rows = np.flatnonzero(sel)
    v = value[rows].astype(np.float64)
    quality = np.zeros(rows.size, np.uint8)
    reasons: dict[int, str] = {}
    if why:
        pos = np.full(value.size, -1, np.int64)
        pos[rows] = np.arange(rows.size)
        reasons = {int(pos[i]): r for i, r in why.items() if pos[i] >= 0}
    missing = ~np.isfinite(v)
    for i in np.flatnonzero(missing).tolist():
        reasons.setdefault(i, f"{key.quantity}: the formula gives no finite number for these inputs")
    q = QUANTITIES[key.quantity]
    out = ~missing & ((v < q.valid_min) | (v > q.valid_max))
    for i in np.flatnonzero(out).tolist():
        reasons[i] = (f"{q.name}={v[i]:g} {q.unit} outside physical range [{q.valid_min:g}, {q.valid_max:g}]")
    quality[missing] = Quality.MISSING
    quality[out] = Quality.FLAGGED
    v[missing] = np.nan
    return Batch.from_columns([key], np.zeros(rows.size, np.int32), ts[rows], v, quality, reasons)


def held(ts: np.ndarray, start: int, end: int) -> tuple[np.ndarray, float]:
    """Seconds each reading holds in [start, end) (until the next, at most the cap) and the cap:
    max(900 s, 1.5 x the median step), so a sensor reporting every 20 min is not an outage."""
    if ts.size > 1:
        cap = max(GAP_S, 1.5 * float(np.median(np.diff(ts))) / S)
    else:
        cap = GAP_S
    return np.minimum((np.append(ts[1:], end) - ts) / S, cap), cap


class Deriver:
    """Derives the crop-climate series of every zone that has the inputs; `run` once a round."""

    def __init__(self, store: DerivedStore, cfg: DerivedConfig, tz: str, *, catch_up_s: int = 7 * 86_400,
                 min_coverage: float = 0.95) -> None:
        self.store = store
        self.cfg = cfg
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"tz {tz!r} is not an IANA time zone") from exc
        self.catch_up_ns = int(catch_up_s) * S
        self.min_coverage = float(min_coverage)
        self.tol_ns = cfg.tolerance_s * S

    # -- a round --------------------------------------------------------------------------
    def run(self, now_ns: int) -> dict[str, int]:
        """Derive what the readings up to `now_ns` allow, write it (one transaction per zone) and
        return counts: zones, points, missing, flagged, errors, and points per derived quantity.

        A zone that fails for any reason but the store's is logged and counted, and the others go
        on (the same zone is tried again next round); an unavailable store ends the round."""
        stats = {"zones": 0, "points": 0, "missing": 0, "flagged": 0, "errors": 0}
        if not self.cfg.enabled:
            return stats
        for z in self.zones(now_ns):
            stats["zones"] += 1
            try:
                batch = Batch.concat([self.climate(z, now_ns), self.dli(z, now_ns), self.gdd(z, now_ns)])
            except StoreError:
                raise
            except Exception:
                log.exception("derived series of %s/%s failed this round", z.site, z.zone)
                stats["errors"] += 1
                continue
            if not len(batch):
                continue
            res = self.store.write(batch)
            stats["points"] += res.written
            stats["missing"] += int(np.count_nonzero(batch.quality == Quality.MISSING))
            stats["flagged"] += int(np.count_nonzero(batch.quality == Quality.FLAGGED))
            counts = np.bincount(batch.key_index, minlength=len(batch.keys))
            for k, n in zip(batch.keys, counts.tolist(), strict=True):
                stats[k.quantity] = stats.get(k.quantity, 0) + n
        return stats

    def zones(self, now_ns: int) -> list[Zone]:
        """Zones with at least air temperature or light, their chosen inputs and watermarks."""
        found: dict[tuple[str, str], dict[str, list[SeriesInfo]]] = {}
        done: dict[tuple[str, str], dict[str, int]] = {}
        for info in self.store.series():
            k = info.key
            if k.device == DEVICE:
                if info.last_ns is not None:
                    done.setdefault((k.site, k.zone), {})[k.quantity] = int(info.last_ns)
            elif k.quantity in INPUTS and info.first_ns is not None and info.last_ns is not None:
                found.setdefault((k.site, k.zone), {}).setdefault(k.quantity, []).append(info)
        out = []
        for (site, zone), by_q in sorted(found.items()):
            z = Zone(site, zone, done=done.get((site, zone), {}))
            air = self.choose(by_q.get("air_temperature"), now_ns)
            if air is not None:
                z.inputs["air"] = air
                rh = self.choose(by_q.get("relative_humidity"), now_ns, prefer=air.key.device)
                if rh is not None:
                    z.inputs["rh"] = rh
                leaf = self.choose(by_q.get("leaf_temperature"), now_ns)
                if leaf is not None:
                    z.inputs["leaf"] = leaf
            light = self.choose(by_q.get("ppfd"), now_ns) or self.choose(by_q.get("illuminance"), now_ns)
            if light is not None:
                z.inputs["light"] = light
            if "air" in z.inputs or "light" in z.inputs:
                out.append(z)
        return out

    @staticmethod
    def choose(cands: list[SeriesInfo] | None, now_ns: int, prefer: str | None = None) -> SeriesInfo | None:
        """The first series by device name that reported in the last day (else the first of all);
        `prefer`'s own series when it is one of those."""
        if not cands:
            return None
        live = sorted((c for c in cands if (c.last_ns or 0) >= now_ns - LIVE_NS), key=lambda c: c.key.device)
        pool = live or sorted(cands, key=lambda c: c.key.device)
        return next((c for c in pool if c.key.device == prefer), pool[0])

    def settled(self, info: SeriesInfo, now_ns: int) -> int:
        """Up to where a partner series is complete: its last reading, or tolerance ago."""
        return min(now_ns, max(now_ns - self.tol_ns, int(info.last_ns or 0)))

    # -- air-temperature driven series ------------------------------------------------------
    def climate(self, z: Zone, now_ns: int) -> Batch:
        if "air" not in z.inputs:
            return Batch.empty()
        cfg = self.cfg
        outputs: dict[str, tuple[str, ...]] = {"saturation_vapour_pressure": ("air",)}
        if "rh" in z.inputs:
            outputs.update(dict.fromkeys(PAIRED, ("air", "rh")))
            if "leaf" in z.inputs:
                outputs["vpd_leaf"] = outputs["dew_point_margin"] = ("air", "rh", "leaf")
            elif cfg.leaf_offset_c is not None:
                outputs["vpd_leaf"] = ("air", "rh")
        lo: dict[str, int] = {}
        lim: dict[str, int] = {}
        for q, ins in outputs.items():
            infos = [z.inputs[i] for i in ins]
            wm = z.done.get(q)
            lo[q] = wm if wm is not None else max(int(i.first_ns or 0) for i in infos) - self.tol_ns - 1
            lim[q] = min([now_ns] + [self.settled(i, now_ns) for i in infos[1:]])
        start, top = min(lo.values()), max(lim.values())
        used = sorted({i for ins in outputs.values() for i in ins})
        fields = {"air": "t", "rh": "rh", "leaf": "t_leaf"}
        while True:  # at most catch_up_s a round; a longer gap without air readings is stepped over
            hi = min(top, start + self.catch_up_ns)
            if hi <= start:
                return Batch.empty()
            frame = self.store.query_many([z.inputs[i].id for i in used], start + 1 - SEARCH_NS, hi + SEARCH_NS + 1)
            r = {i: readings(frame, z.inputs[i], fields[i]) for i in used}
            air = r["air"]
            t = air.ts[(air.ts > start) & (air.ts <= hi)]
            if t.size:
                break
            start = hi
        val: dict[str, np.ndarray] = {}
        why: dict[str, dict[int, str]] = {}
        val["air"], why["air"] = match(t, air, 0)
        for i in used:
            if i != "air":
                val[i], why[i] = match(t, r[i], self.tol_ns)
        if "leaf" not in r and "vpd_leaf" in outputs:  # no leaf sensor: air + the configured offset
            val["leaf"], why["leaf"] = val["air"] + float(cfg.leaf_offset_c or 0.0), {}
        f = cfg.formula
        none = np.full(t.size, np.nan)  # an input this zone lacks (its outputs are not computed)
        ta, rh, leaf = val["air"], val.get("rh", none), val.get("leaf", none)
        compute = {
            "saturation_vapour_pressure": lambda: climate.FORMULAS[f](ta),
            "vapour_pressure": lambda: climate.actual_vapour_pressure(ta, rh, f),
            "vpd": lambda: climate.vpd_air(ta, rh, f),
            "humidity_deficit": lambda: climate.humidity_deficit(ta, rh, f),
            "absolute_humidity": lambda: climate.absolute_humidity(ta, rh, f),
            "dew_point": lambda: climate.dew_point(ta, rh),
            "vpd_leaf": lambda: climate.vpd_leaf(ta, rh, leaf, f),
            "dew_point_margin": lambda: climate.dew_point_margin(leaf, ta, rh),
        }
        parts = []
        with np.errstate(invalid="ignore", divide="ignore"):
            for q, ins in outputs.items():
                reasons: dict[int, str] = {}
                for i in ins:
                    for row, text in why[i].items():
                        reasons[row] = f"{reasons[row]}; {text}" if row in reasons else text
                sel = (t > lo[q]) & (t <= min(lim[q], hi))
                if sel.any():
                    parts.append(output(z.key(q), t, compute[q](), reasons, sel))
        return Batch.concat(parts)

    # -- windows: DLI and GDD ---------------------------------------------------------------
    def local_start(self, d: date, hh: int, mm: int) -> int:
        """The instant local time `tz` reads hh:mm on day `d` (a time DST skips: as if not skipped)."""
        return int(datetime(d.year, d.month, d.day, hh, mm, tzinfo=self.tz).timestamp()) * S

    def next_local_hour(self, after_ns: int) -> int:
        """The first instant after `after_ns` that is on the hour in local time."""
        sec = int(after_ns) // S
        off = self.tz.utcoffset(datetime.fromtimestamp(sec, self.tz))
        off_s = int(off.total_seconds()) if off is not None else 0
        return ((sec + off_s) // 3600 + 1) * 3600 * S - off_s * S

    def windows(self, day_start: str, after: int | None, first: int, upto: int) -> list[tuple[int, int]]:
        """Windows [start, end) ending by `upto`: after the watermark `after` (the last end), else
        starting at or after `first`; at most `catch_up_s` of them."""
        out: list[tuple[int, int]] = []
        if day_start == "rolling":
            end = self.next_local_hour(after) if after is not None else self.next_local_hour(first - 1) + DAY
            while end <= upto and len(out) < max(1, self.catch_up_ns // HOUR):
                out.append((end - DAY, end))
                end += HOUR
            return out
        hh, mm = (int(x) for x in day_start.split(":"))
        begin = after if after is not None else first
        d = datetime.fromtimestamp(begin // S, self.tz).date() - timedelta(days=1)
        while self.local_start(d, hh, mm) < begin:
            d += timedelta(days=1)
        start = self.local_start(d, hh, mm)
        while len(out) < max(1, self.catch_up_ns // DAY):
            d += timedelta(days=1)
            end = self.local_start(d, hh, mm)
            if end > upto:
                break
            out.append((start, end))
            start = end
        return out

    def windowed(self, z: Zone, quantity: str, source: str, day_start: str, now_ns: int) -> tuple[Readings, list[tuple[int, int]]] | None:
        info = z.inputs.get(source)
        if info is None:
            return None
        wins = self.windows(day_start, z.done.get(quantity), int(info.first_ns or 0) - self.tol_ns,
                            self.settled(info, now_ns))
        # No window that starts after the input's last reading: a sensor gone silent (or history
        # that ended) has nothing to say for those days; the stale rule reports the silence. When
        # it reports again, the days in between are derived (missing, their coverage named).
        wins = [w for w in wins if w[0] <= int(info.last_ns or 0)]
        if not wins:
            return None
        frame = self.store.query_many([info.id], wins[0][0], wins[-1][1])
        if source == "light":
            lux = info.key.quantity == "illuminance"
            return readings(frame, info, "ppfd", self.cfg.lux_to_ppfd if lux else 1.0), wins
        return readings(frame, info, "t"), wins

    def coverage_reason(self, r: Readings, a: int, b: int, covered: float, i0: int, i1: int) -> str:
        bad = [r.bad[i] for i in range(i0, i1) if i in r.bad]
        return (f"{r.name}: readings cover {covered:.1%} of {iso(a)}..{iso(b)} (need {self.min_coverage:.0%})"
                + (f"; {len(bad)} unusable left out, first: {bad[0]}" if bad else ""))

    def per_window(self, key: SeriesKey, r: Readings, wins: list[tuple[int, int]],
                   compute: Callable[[np.ndarray, np.ndarray, np.ndarray, float, int, int], float]) -> Batch:
        """One value per window [a, b) from the readings in it, or missing with the coverage named
        when the readings (each held until the next, capped) cover less than `min_coverage`."""
        ends, value, reasons = np.array([b for _, b in wins], np.int64), np.full(len(wins), np.nan), {}
        for k, (a, b) in enumerate(wins):
            i0, i1 = np.searchsorted(r.ts, [a, b])
            ok = np.isfinite(r.value[i0:i1])
            ts, v = r.ts[i0:i1][ok], r.value[i0:i1][ok]
            hold, cap = held(ts, a, b)
            covered = float(hold.sum()) * S / (b - a)
            if covered < self.min_coverage:
                reasons[k] = self.coverage_reason(r, a, b, covered, int(i0), int(i1))
            else:
                value[k] = compute(ts, v, hold, cap, a, b)
        return output(key, ends, value, reasons, np.ones(len(wins), bool))

    def dli(self, z: Zone, now_ns: int) -> Batch:
        got = self.windowed(z, "dli", "light", self.cfg.dli_day_start, now_ns)
        if got is None:
            return Batch.empty()
        return self.per_window(z.key("dli"), *got, lambda ts, ppfd, hold, cap, a, b: float(
            climate.dli(ts, ppfd, day_start_ns=a, end_ns=b, max_gap_s=cap)))

    def gdd(self, z: Zone, now_ns: int) -> Batch:
        got = self.windowed(z, "gdd", "air", "00:00", now_ns)
        if got is None:
            return Batch.empty()
        base = self.cfg.gdd_base_c
        return self.per_window(z.key("gdd"), *got, lambda ts, temp, hold, cap, a, b: float(
            climate.growing_degree_days(float(np.sum(temp * hold) / np.sum(hold)), base)))
