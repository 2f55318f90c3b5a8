"""The shared vocabulary: quantities, series keys, points, columnar batches, uplinks, outcomes.

Why one module: every stage (ingest, decoders, store, forecast, api) speaks these types, and a
change here is a change to the contract (docs/design/001-point-and-batch.md).

Hot paths never build one Python object per reading: decoders may return `Point`s (a frame has a
handful), but everything after the decoder moves `Batch`es, which are columns (numpy arrays) plus a
small table of the distinct series keys they refer to.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from greennanny.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Quantity:
    """A canonical physical quantity: its SI unit, the storage resolution and the physical range.

    `resolution` is the step values are stored at (finer than any sensor's), so float noise on the
    wire (588.999995 ppm) does not become data. `valid_min`/`valid_max` is the physically possible
    range: a value outside it is stored but flagged, never silently trusted.
    """

    name: str
    unit: str
    resolution: float
    valid_min: float
    valid_max: float
    description: str


QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        Quantity("air_temperature", "degC", 0.01, -50.0, 70.0, "air temperature"),
        Quantity("leaf_temperature", "degC", 0.01, -50.0, 70.0, "leaf temperature"),
        Quantity("soil_temperature", "degC", 0.01, -50.0, 70.0, "substrate/soil temperature"),
        Quantity("relative_humidity", "%", 0.01, 0.0, 100.0, "relative humidity"),
        Quantity("co2", "ppm", 0.1, 0.0, 40000.0, "CO2 concentration"),
        Quantity("ppfd", "umol/m2/s", 0.1, 0.0, 3000.0, "photosynthetic photon flux density"),
        Quantity("illuminance", "lx", 1.0, 0.0, 200000.0, "illuminance"),
        Quantity("dli", "mol/m2/d", 0.01, 0.0, 100.0, "daily light integral"),
        Quantity("vpd", "kPa", 0.001, 0.0, 10.0, "vapour pressure deficit"),
        Quantity("humidity_deficit", "g/m3", 0.01, 0.0, 100.0, "humidity deficit"),
        Quantity("barometric_pressure", "hPa", 0.1, 300.0, 1100.0, "barometric pressure"),
        Quantity("tvoc", "mg/m3", 0.001, 0.0, 100.0, "total volatile organic compounds (mass)"),
        Quantity("tvoc_index", "index", 0.01, 0.0, 500.0, "TVOC indoor-air-quality index (vendor scale)"),
        Quantity("pm2_5", "ug/m3", 1.0, 0.0, 1000.0, "particulate matter 2.5 um"),
        Quantity("pm10", "ug/m3", 1.0, 0.0, 1000.0, "particulate matter 10 um"),
        Quantity("soil_moisture", "%", 0.01, 0.0, 100.0, "volumetric water content"),
        Quantity("soil_ec", "uS/cm", 1.0, 0.0, 50000.0, "substrate electrical conductivity"),
        Quantity("soil_adc", "count", 1.0, 0.0, 65535.0, "raw soil probe ADC count"),
        Quantity("distance", "mm", 1.0, 0.0, 20000.0, "distance (level, ultrasonic)"),
        Quantity("water_level", "cm", 0.1, 0.0, 20000.0, "water depth above a submersible level probe"),
        Quantity("battery", "%", 1.0, 0.0, 100.0, "battery level"),
        Quantity("battery_voltage", "V", 0.001, 0.0, 60.0, "battery voltage"),
        Quantity("rssi", "dBm", 1.0, -200.0, 20.0, "received signal strength of the best gateway"),
        Quantity("snr", "dB", 0.1, -40.0, 40.0, "signal-to-noise ratio of the best gateway"),
        Quantity("gateway_count", "count", 1.0, 0.0, 1000.0, "gateways that received the uplink"),
        Quantity("link_margin", "dB", 1.0, -50.0, 100.0, "demodulation margin of the last LinkCheck/DevStatus"),
        Quantity("door_open", "bool", 1.0, 0.0, 1.0, "door/window contact open (1) or closed (0)"),
        Quantity("occupancy", "bool", 1.0, 0.0, 1.0, "PIR occupancy trigger (1) or idle (0)"),
        Quantity("light_level", "level", 1.0, 0.0, 10.0, "coarse light level (vendor scale 0-5)"),
        Quantity("vent_opening", "%", 0.1, 0.0, 100.0, "vent opening"),
        Quantity("water_flow", "L", 0.001, 0.0, 1e9, "water flow counter"),
        Quantity("power_factor", "1", 0.001, -1.0, 1.0, "power factor (active / apparent power; negative when exporting)"),
        # derived crop-climate series (processors/derived.py); ranges follow from the inputs' ranges
        Quantity("saturation_vapour_pressure", "kPa", 0.001, 0.0, 32.0, "saturation vapour pressure of the air (es at 70 degC is 31.2)"),
        Quantity("vapour_pressure", "kPa", 0.001, 0.0, 32.0, "actual vapour pressure of the air"),
        Quantity("vpd_leaf", "kPa", 0.001, -32.0, 32.0, "leaf-to-air vapour pressure deficit (negative: the leaf is below the dew point)"),
        Quantity("dew_point", "degC", 0.01, -100.0, 70.0, "dew point of the air"),
        Quantity("dew_point_margin", "degC", 0.01, -120.0, 170.0, "surface temperature above the air's dew point (at or below 0: condensation)"),
        Quantity("absolute_humidity", "g/m3", 0.01, 0.0, 200.0, "water vapour density of the air"),
        Quantity("gdd", "degC*d", 0.01, 0.0, 80.0, "growing degree days of one day"),
    )
}


def quantity(name: str) -> Quantity:
    """The canonical quantity `name`; a clear error for a name that is not in the table."""
    try:
        return QUANTITIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown quantity {name!r}; known: {', '.join(sorted(QUANTITIES))}"
        ) from None


def round_to_resolution(values: np.ndarray, quantity_names: Sequence[str], index: np.ndarray) -> np.ndarray:
    """Round each value to its quantity's storage resolution (vectorised per distinct quantity)."""
    out = values.astype(np.float64, copy=True)
    res = np.array([QUANTITIES[q].resolution for q in quantity_names], dtype=np.float64)[index]
    finite = np.isfinite(out)
    out[finite] = np.round(out[finite] / res[finite]) * res[finite]
    # round(x/res)*res leaves binary noise (23.400000000000002); round again to the decimals.
    decimals = np.array(
        [max(0, -math.floor(math.log10(QUANTITIES[q].resolution))) for q in quantity_names]
    )[index]
    for d in np.unique(decimals):
        m = finite & (decimals == d)
        out[m] = np.round(out[m], int(d))
    return out


@dataclass(frozen=True, slots=True, order=True)
class SeriesKey:
    """Names one time series: where (site, zone), which device, what (canonical quantity)."""

    site: str
    zone: str
    device: str
    quantity: str

    def __str__(self) -> str:
        return f"{self.site}/{self.zone}/{self.device}/{self.quantity}"

    @classmethod
    def parse(cls, text: str) -> SeriesKey:
        parts = text.split("/")
        if len(parts) != 4 or not all(parts):
            raise ValueError(f"series key {text!r} must be site/zone/device/quantity")
        return cls(*parts)


class Quality(enum.IntEnum):
    """Per-reading quality flag stored beside every value (uint8 on disk)."""

    OK = 0
    MISSING = 1  # the device said "no value" (nan, unavailable, sentinel); value is NaN
    FLAGGED = 2  # a number outside the quantity's physical range: kept, never trusted
    QUARANTINED = 3  # kept aside (for example an impossible timestamp), not served as data


@dataclass(frozen=True, slots=True)
class Point:
    """One reading: the row view used by decoders and tests; batches carry the columns."""

    key: SeriesKey
    ts_ns: int
    value: float
    quality: Quality = Quality.OK
    reason: str | None = None


@dataclass(slots=True)
class Batch:
    """Columns of readings: `key_index[i]` points into `keys`; ts is UTC epoch nanoseconds.

    `reasons` holds the (rare) rows whose quality is not OK, as {row: reason}, so a missing or
    flagged value always carries why.
    """

    keys: list[SeriesKey]
    key_index: np.ndarray  # int32
    ts_ns: np.ndarray  # int64
    value: np.ndarray  # float64
    quality: np.ndarray  # uint8
    reasons: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    @classmethod
    def empty(cls) -> Batch:
        return cls(
            [],
            np.empty(0, np.int32),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.uint8),
        )

    @classmethod
    def from_points(cls, points: Iterable[Point]) -> Batch:
        keys: dict[SeriesKey, int] = {}
        idx: list[int] = []
        ts: list[int] = []
        val: list[float] = []
        qual: list[int] = []
        reasons: dict[int, str] = {}
        for row, p in enumerate(points):
            idx.append(keys.setdefault(p.key, len(keys)))
            ts.append(p.ts_ns)
            val.append(p.value)
            qual.append(int(p.quality))
            if p.reason:
                reasons[row] = p.reason
        return cls(
            list(keys),
            np.asarray(idx, np.int32),
            np.asarray(ts, np.int64),
            np.asarray(val, np.float64),
            np.asarray(qual, np.uint8),
            reasons,
        )

    @classmethod
    def from_columns(
        cls,
        keys: list[SeriesKey],
        key_index: np.ndarray,
        ts_ns: np.ndarray,
        value: np.ndarray,
        quality: np.ndarray | None = None,
        reasons: dict[int, str] | None = None,
    ) -> Batch:
        n = len(ts_ns)
        q = np.zeros(n, np.uint8) if quality is None else np.asarray(quality, np.uint8)
        return cls(
            list(keys),
            np.asarray(key_index, np.int32),
            np.asarray(ts_ns, np.int64),
            np.asarray(value, np.float64),
            q,
            dict(reasons or {}),
        )

    @classmethod
    def concat(cls, batches: Sequence[Batch]) -> Batch:
        """Join batches, merging their key tables (a key shared by two batches gets one index)."""
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        keys: dict[SeriesKey, int] = {}
        parts_idx = []
        reasons: dict[int, str] = {}
        offset = 0
        for b in batches:
            remap = np.array([keys.setdefault(k, len(keys)) for k in b.keys], np.int32)
            parts_idx.append(remap[b.key_index])
            for row, r in b.reasons.items():
                reasons[row + offset] = r
            offset += len(b)
        return cls(
            list(keys),
            np.concatenate(parts_idx),
            np.concatenate([b.ts_ns for b in batches]),
            np.concatenate([b.value for b in batches]),
            np.concatenate([b.quality for b in batches]),
            reasons,
        )

    def points(self) -> list[Point]:
        """Row view, for tests and small batches only."""
        return [
            Point(
                self.keys[int(self.key_index[i])],
                int(self.ts_ns[i]),
                float(self.value[i]),
                Quality(int(self.quality[i])),
                self.reasons.get(i),
            )
            for i in range(len(self))
        ]


@dataclass(slots=True)  # not frozen: made per message on the hot path, and a frozen __init__ costs 3x (0.8 vs 0.25 us)
class Uplink:
    """One raw message as it arrived: nothing about it is interpreted yet."""

    topic: str
    payload: bytes
    received_ns: int
    qos: int = 0
    mid: int = 0


class Outcome(str, enum.Enum):
    """The closed list of what can happen to a message; every message gets exactly one."""

    STORED = "stored"
    STORED_EMPTY = "stored_empty"  # valid, but carried no measurement (object {} or fPort 0)
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    DEAD_LETTER = "dead_letter"
    NON_UPLINK = "non_uplink"


def check_physical_range(q: Quantity, value: float) -> tuple[Quality, str | None]:
    """Flag a finite value outside the quantity's physical range (kept, never trusted)."""
    if not math.isfinite(value):
        return Quality.MISSING, "not a finite number"
    if value < q.valid_min or value > q.valid_max:
        return (
            Quality.FLAGGED,
            f"{q.name}={value:g} {q.unit} outside physical range [{q.valid_min:g}, {q.valid_max:g}]",
        )
    return Quality.OK, None


class BatchBuilder:
    """Accumulates rows into columns without making a Point per reading."""

    __slots__ = ("_idx", "_keys", "_names", "_qual", "_reasons", "_ts", "_val")

    def __init__(self) -> None:
        self._keys: dict[SeriesKey, int] = {}
        self._names: dict[tuple[str, str, str, str], int] = {}
        self._idx: list[int] = []
        self._ts: list[int] = []
        self._val: list[float] = []
        self._qual: list[int] = []
        self._reasons: dict[int, str] = {}

    def add(self, key: SeriesKey, ts_ns: int, value: float, quality: int = 0, reason: str | None = None) -> None:
        if reason:
            self._reasons[len(self._ts)] = reason
        idx = self._keys.get(key)
        if idx is None:
            idx = self._keys[key] = len(self._keys)
        self._idx.append(idx)
        self._ts.append(ts_ns)
        self._val.append(value)
        self._qual.append(quality)

    def add_readings(self, site: str, zone: str, device: str, ts_ns: int, readings: Iterable[Any]) -> int:
        """Every reading of one message (`decoders.base.Reading`: quantity, value, ts_ns or None
        for the message's time, quality, reason, channel) in one call: a message has a handful,
        and per-reading calls were a tenth of the ingest cost. Returns how many were added."""
        names, idx_l, ts_l, val_l, qual_l, reasons = self._names, self._idx, self._ts, self._val, self._qual, self._reasons
        n = 0
        for r in readings:
            name = (site, zone, f"{device}-{r.channel}" if r.channel else device, r.quantity)
            idx = names.get(name)
            if idx is None:
                idx = names[name] = self._index(SeriesKey(*name))
            if r.reason:
                reasons[len(ts_l)] = r.reason
            idx_l.append(idx)
            ts_l.append(ts_ns if r.ts_ns is None else r.ts_ns)
            val_l.append(r.value)
            qual_l.append(r.quality)
            n += 1
        return n

    def _index(self, key: SeriesKey) -> int:
        idx = self._keys.get(key)
        if idx is None:
            idx = self._keys[key] = len(self._keys)
        return idx

    def __len__(self) -> int:
        return len(self._ts)

    def build(self) -> Batch:
        return Batch(
            list(self._keys),
            np.asarray(self._idx, np.int32),
            np.asarray(self._ts, np.int64),
            np.asarray(self._val, np.float64),
            np.asarray(self._qual, np.uint8),
            dict(self._reasons),
        )
