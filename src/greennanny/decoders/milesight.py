"""Milesight channel/type frames: one decoder, every model a table.

A Milesight uplink is a run of records: channel id (1 byte), channel type (1 byte), data,
multi-byte values little-endian. The same pair means different things on different models
(`08 7D` TVOC is raw on AM107 but raw/100 on AM307; `05 00` is PIR on AM307 and a leak contact
on EM300-SLD; a `20 CE` history record is 6, 7, 8, 9, 13 or 20 bytes), so the model picks a
table and the loop below never branches on a model name: a new model is new rows, not new code.

Field names are Milesight's README names, so an operator can hold the output against the vendor
documentation; `vendor_aliases` in the output says where the vendor's own decoder names a field
differently. Unlike the vendor decoders, which stop silently at the first pair they do not know,
an unknown pair or a short frame raises `DecodeError` naming the byte offset: a frame we cannot
fully account for goes to the dead letters instead of being half-stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from greennanny.decoders.base import Decoded, Reading
from greennanny.decoders.values import coerce_value
from greennanny.errors import DecodeError
from greennanny.model import Quality

# Tables below read best one row per line, so the formatter leaves them alone.
# fmt: off
# Integer formats: size in bytes and signedness. Everything on the wire is little-endian.
_INTS: dict[str, tuple[int, bool]] = {
    "u8": (1, False), "i8": (1, True), "u16": (2, False), "i16": (2, True), "u32": (4, False),
}
# Text formats (device attributes on channel 0xFF): size and how the vendor writes them.
_TEXTS: dict[str, tuple[int, Callable[[bytes], str]]] = {
    "hex8": (8, lambda b: b.hex()),
    "ver": (1, lambda b: f"v{b[0] >> 4}.{b[0] & 0x0F}"),
    "hw": (2, lambda b: f"v{b[0]}.{b[1] >> 4}"),
    "fw": (2, lambda b: f"v{b[0]}.{b[1]}"),
}
# fmt: on


@dataclass(frozen=True, slots=True)
class Field:
    """One value inside a channel's data, read in order.

    `div` divides (not multiplies) the raw integer, as the vendor does, so 37/100 is exactly
    0.37. `labels` turns an enum byte into the vendor's word; its reading is the raw number
    (PIR trigger 1, idle 0). `errors` lists raw values a probe sends instead of a measurement.
    A field with `shares_next` reads bits of the same bytes as the next field (`bits` is
    shift, width). An empty name with format `xN` skips N reserved bytes.
    """

    name: str
    fmt: str = "u8"
    div: float = 1
    labels: Mapping[int, str] | None = None
    quantity: str | None = None
    qscale: float = 1.0  # object value * qscale = the canonical unit (ug/m3 -> mg/m3)
    bits: tuple[int, int] | None = None
    shares_next: bool = False
    errors: Mapping[int, str] | None = None

    @property
    def size(self) -> int:
        if self.fmt.startswith("x"):
            return int(self.fmt[1:])
        return _INTS[self.fmt][0] if self.fmt in _INTS else _TEXTS[self.fmt][0]


@dataclass(frozen=True, slots=True)
class Channel:
    """What one channel/type pair carries on one model.

    `into` names a list of records ("history", "event") that each occurrence appends to instead
    of setting top-level keys; `promote` copies record fields to the top level as well (TS201
    alarms also report the current temperature).
    """

    label: str
    fields: tuple[Field, ...]
    size: int
    into: str = ""
    promote: tuple[str, ...] = ()


def _ch(label: str, *fields: Field, into: str = "", promote: tuple[str, ...] = ()) -> Channel:
    size = sum(f.size for f in fields if not f.shares_next)
    return Channel(label, fields, size, into, promote)


def _hist(*fields: Field) -> Channel:
    """A `20 CE` history record: a u32 Unix timestamp, then the model's own layout."""
    return _ch("history", Field("timestamp", "u32"), *fields, into="history")


def _event(*fields: Field) -> Channel:
    return _ch("event", *fields, into="event", promote=("temperature",))


# fmt: off
# --- shared fields --------------------------------------------------------------------------
TEMP = Field("temperature", "i16", 10, quantity="air_temperature")
SOIL_TEMP = Field("temperature", "i16", 10, quantity="soil_temperature")
HUM = Field("humidity", "u8", 2, quantity="relative_humidity")
HUM16 = Field("humidity", "u16", 2, quantity="relative_humidity")  # AM3xx history records
CO2 = Field("co2", "u16", quantity="co2")
PRESSURE = Field("pressure", "u16", 10, quantity="barometric_pressure")
PIR = Field("pir", labels={0: "idle", 1: "trigger"}, quantity="occupancy")
LIGHT = Field("light_level", quantity="light_level")
TVOC_IAQ = Field("tvoc", "u16", 100, quantity="tvoc_index")  # AM3xx `08 7D`: IAQ index (raw/100), not a mass
TVOC_UG = Field("tvoc", "u16", quantity="tvoc", qscale=0.001)  # AM3xx `08 E6`: ug/m3
PM25 = Field("pm2_5", "u16", quantity="pm2_5")
PM10 = Field("pm10", "u16", quantity="pm10")
LEAK = Field("leakage_status", labels={0: "normal", 1: "leak"})
MAGNET = Field("magnet_status", labels={0: "close", 1: "open"}, quantity="door_open")
ILLUM32 = Field("illumination", "u32", quantity="illuminance")
_PROBE_ERRORS = {0xFFFF: "collection failed", 0xFFFD: "out of range"}
_EM500_ALARM = {0: "threshold alarm", 1: "threshold alarm release", 2: "mutation alarm"}
_TS201_ALARM = {0: "threshold alarm release", 1: "threshold alarm", 2: "mutation alarm"}

Table = dict[tuple[int, int], Channel]

COMMON: Table = {  # device attributes every model sends after a join or reset
    (0xFF, 0x01): _ch("ipso_version", Field("ipso_version", "ver")),
    (0xFF, 0x09): _ch("hardware_version", Field("hardware_version", "hw")),
    (0xFF, 0x0A): _ch("firmware_version", Field("firmware_version", "fw")),
    (0xFF, 0x0B): _ch("device_status", Field("device_status", labels={  # sent as FF after a reset
        0: "off", 1: "on", 0xFF: "on"})),
    (0xFF, 0x0F): _ch("lorawan_class", Field("lorawan_class", labels={
        0: "Class A", 1: "Class B", 2: "Class C", 3: "Class CtoB"})),
    (0xFF, 0x16): _ch("sn", Field("sn", "hex8")),
    (0xFF, 0xFE): _ch("reset_event", Field("reset_event")),
    (0xFF, 0xFF): _ch("tsl_version", Field("tsl_version", "fw")),
    (0x01, 0x75): _ch("battery", Field("battery", quantity="battery")),
}
TH: Table = {(0x03, 0x67): _ch("temperature", TEMP), (0x04, 0x68): _ch("humidity", HUM)}


def _em500_alarm(temp: Field) -> Channel:
    return _ch("temperature alarm", temp, Field("temperature_change", "i16", 10),
               Field("temperature_alarm", labels=_EM500_ALARM))


def _am300(*extra: Field, codes: Table | None = None) -> Table:
    """AM307 and its bigger siblings: the same live channels plus PM/HCHO/O3 and longer history."""
    head = (TEMP, HUM16, PIR, LIGHT, CO2)
    return {
        **COMMON, **TH,
        (0x05, 0x00): _ch("pir", PIR), (0x06, 0xCB): _ch("light_level", LIGHT),
        (0x07, 0x7D): _ch("co2", CO2), (0x08, 0x7D): _ch("tvoc", TVOC_IAQ),
        (0x08, 0xE6): _ch("tvoc", TVOC_UG), (0x09, 0x73): _ch("pressure", PRESSURE),
        (0x0E, 0x01): _ch("buzzer_status", Field("buzzer_status", labels={0: "off", 1: "on"})),
        # Milesight's own AM307/AM308 README example frames end in `05 6A` (the family's uint16
        # activity channel, as on AM104/AM107); decoding it keeps those documented frames whole.
        (0x05, 0x6A): _ch("activity", Field("activity", "u16")),
        **(codes or {}),
        (0x20, 0xCE): _hist(*head, TVOC_IAQ, PRESSURE, *extra),
        (0x21, 0xCE): _hist(*head, TVOC_UG, PRESSURE, *extra),
    }


_AM104: Table = {
    **COMMON, **TH,
    (0x05, 0x6A): _ch("activity", Field("activity", "u16")),
    (0x06, 0x65): _ch("illumination", Field("illumination", "u16", quantity="illuminance"),
                      Field("infrared_and_visible", "u16"), Field("infrared", "u16")),
}
_PM: Table = {(0x0B, 0x7D): _ch("pm2_5", PM25), (0x0C, 0x7D): _ch("pm10", PM10)}
HCHO = Field("hcho", "u16", 100)
O3 = Field("o3", "u16", 100)
_SMTC_TEMP = Field("temperature", "i16", 10, quantity="soil_temperature", errors=_PROBE_ERRORS)
_SMTC_MOIST = Field("moisture", "u16", 100, quantity="soil_moisture", errors=_PROBE_ERRORS)
_SMTC_EC = Field("ec", "u16", quantity="soil_ec", errors=_PROBE_ERRORS)
_DI_HIST = (TEMP, HUM, Field("gpio_type", labels={1: "gpio", 2: "counter"}),
            Field("gpio", labels={0: "low", 1: "high"}), Field("pulse", "u32"))

TABLES: dict[str, Table] = {
    "EM300-TH": {**COMMON, **TH, (0x20, 0xCE): _hist(TEMP, HUM, Field("", "x1"))},
    "EM320-TH": {**COMMON, **TH, (0x20, 0xCE): _hist(TEMP, HUM)},
    "EM300-SLD": {**COMMON, **TH, (0x05, 0x00): _ch("leakage_status", LEAK),
                  (0x20, 0xCE): _hist(TEMP, HUM, LEAK)},
    "EM300-MLD": {**COMMON, (0x05, 0x00): _ch("leakage_status", LEAK),
                  (0x20, 0xCE): _hist(Field("", "x3"), LEAK)},
    "EM300-MCS": {**COMMON, **TH, (0x06, 0x00): _ch("magnet_status", MAGNET),
                  (0x20, 0xCE): _hist(TEMP, HUM, MAGNET)},
    "EM300-DI": {**COMMON, **TH,
                 (0x05, 0x00): _ch("gpio", Field("gpio", labels={0: "low", 1: "high"})),
                 (0x05, 0xC8): _ch("pulse", Field("pulse", "u32")),
                 (0x20, 0xCE): _hist(*_DI_HIST)},
    "AM102": {**COMMON, **TH, (0x20, 0xCE): _hist(TEMP, HUM)},
    "AM103": {**COMMON, **TH, (0x07, 0x7D): _ch("co2", CO2), (0x20, 0xCE): _hist(TEMP, HUM, CO2)},
    "AM104": _AM104,
    "AM107": {**_AM104, (0x07, 0x7D): _ch("co2", CO2),
              (0x08, 0x7D): _ch("tvoc", Field("tvoc", "u16", quantity="tvoc_index")),  # raw, not /100
              (0x09, 0x73): _ch("pressure", PRESSURE)},
    "AM307": _am300(),
    "AM308": _am300(PM25, PM10, codes=_PM),
    "AM319-HCHO": _am300(PM25, PM10, HCHO, codes={**_PM, (0x0A, 0x7D): _ch("hcho", HCHO)}),
    "AM319-O3": _am300(PM25, PM10, O3, codes={**_PM, (0x0D, 0x7D): _ch("o3", O3)}),
    "EM500-CO2": {**COMMON, **TH, (0x05, 0x7D): _ch("co2", CO2),
                  (0x06, 0x73): _ch("pressure", PRESSURE), (0x83, 0xD7): _em500_alarm(TEMP),
                  (0x20, 0xCE): _hist(CO2, PRESSURE, TEMP, HUM)},
    "EM500-SMTC": {**COMMON, (0x03, 0x67): _ch("temperature", _SMTC_TEMP),
                   (0x04, 0x68): _ch("moisture", Field("moisture", "u8", 2,
                                                       quantity="soil_moisture")),
                   (0x04, 0xCA): _ch("moisture", _SMTC_MOIST), (0x05, 0x7F): _ch("ec", _SMTC_EC),
                   (0x83, 0xD7): _em500_alarm(SOIL_TEMP),
                   (0x20, 0xCE): _hist(_SMTC_EC, _SMTC_TEMP, _SMTC_MOIST)},
    "EM500-LGT": {**COMMON, (0x03, 0x94): _ch("illumination", ILLUM32),
                  (0x20, 0xCE): _hist(ILLUM32)},
    "EM500-PT100": {**COMMON, (0x03, 0x67): _ch("temperature", SOIL_TEMP),
                    (0x83, 0xD7): _em500_alarm(SOIL_TEMP), (0x20, 0xCE): _hist(SOIL_TEMP)},
    "WS202": {**COMMON,
              (0x03, 0x00): _ch("pir", Field("pir", labels={0: "normal", 1: "trigger"},
                                             quantity="occupancy")),
              (0x04, 0x00): _ch("daylight", Field("daylight", labels={0: "dim", 1: "bright"}))},
    "WS301": {**COMMON, (0x03, 0x00): _ch("magnet_status", MAGNET),
              (0x04, 0x00): _ch("tamper_status", Field("tamper_status", labels={
                  0: "installed", 1: "uninstalled"}))},
    "WS303": {**COMMON, (0x03, 0x00): _ch("leakage_status", LEAK)},
    "TS201": {
        **COMMON, (0x03, 0x67): _ch("temperature", TEMP),
        (0x83, 0x67): _event(TEMP, Field("temperature_alarm", labels=_TS201_ALARM)),
        (0x93, 0x67): _event(TEMP, Field("temperature_mutation", "i16", 10),
                             Field("temperature_alarm", labels=_TS201_ALARM)),
        (0xB3, 0x67): _event(Field("temperature_sensor_status", labels={
            0: "read error", 1: "out of range"})),
        (0x20, 0xCE): _hist(
            Field("read_status", bits=(4, 4), shares_next=True,
                  labels={0: "normal", 1: "read error", 2: "out of range"}),
            Field("event_type", bits=(0, 4), labels={
                1: "periodic event", 2: "temperature alarm event",
                3: "temperature alarm release event"}),
            TEMP),
    },
}
# Where Milesight's own decoder names a field differently from its README (our names).
VENDOR_ALIASES: dict[str, dict[str, str]] = {
    "EM500-SMTC": {"ec": "electricity", "ec_error": "electricity_error"},
}
MODELS: frozenset[str] = frozenset(TABLES)
_BY_UPPER = {m.upper(): m for m in MODELS}
# fmt: on


def _read(f: Field, chunk: bytes) -> tuple[str, Any, int | None, str | None]:
    """(key, object value, raw integer, sensor error text) of one field's bytes."""
    if f.fmt in _TEXTS:
        return f.name, _TEXTS[f.fmt][1](chunk), None, None
    size, signed = _INTS[f.fmt]
    raw = int.from_bytes(chunk, "little")
    if f.bits is not None:
        shift, width = f.bits
        raw = (raw >> shift) & ((1 << width) - 1)
    if f.errors and raw in f.errors:
        return f"{f.name}_error", f.errors[raw], raw, f.errors[raw]
    if signed and raw >> (8 * size - 1):
        raw -= 1 << (8 * size)
    if f.labels is not None:
        return f.name, f.labels.get(raw, "unknown"), raw, None
    return f.name, raw if f.div == 1 else raw / f.div, raw, None


def _reading(
    f: Field, value: Any, raw: int | None, error: str | None, ts_ns: int | None
) -> Reading:
    """The canonical reading for a field; out-of-range values are flagged, never dropped."""
    quantity = f.quantity or ""
    if error is not None:
        return Reading(quantity, math.nan, ts_ns, Quality.MISSING, f"{f.name}: sensor {error}")
    source = raw if f.labels is not None and raw in f.labels else value
    number, quality, reason = coerce_value(f.name, source, quantity, f.qscale)
    return Reading(quantity, number, ts_ns, quality, reason)


class MilesightDecoder:
    """Decodes any model in `MODELS`; the model is required: the bytes alone are ambiguous."""

    name = "milesight"

    def decode(self, payload: bytes, *, model: str | None = None) -> Decoded:
        table = self._table(model)
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise DecodeError(
                f"payload must be bytes, got {type(payload).__name__}", field="payload", offset=0
            )
        data = bytes(payload)
        if not data:
            raise DecodeError(
                "empty payload: a Milesight frame has at least one channel",
                field="payload",
                offset=0,
            )
        obj: dict[str, Any] = {}
        live: dict[str, Reading] = {}  # a repeated channel overwrites, as in `obj`
        dated: list[Reading] = []
        unmapped: dict[str, None] = {}
        pos, end = 0, len(data)
        while pos < end:
            spec = self._channel(table, data, pos, model)
            cid, ctype = data[pos], data[pos + 1]
            pos += 2
            if end - pos < spec.size:
                raise DecodeError(
                    f"frame ends at byte {end}: channel 0x{cid:02x} type 0x{ctype:02x} "
                    f"({spec.label}) needs {spec.size} bytes at offset {pos}, {end - pos} left",
                    field=spec.label,
                    offset=pos,
                )
            record: dict[str, Any] = {}
            fields: list[tuple[Field, str, Any, int | None, str | None]] = []
            at = pos
            for f in spec.fields:
                if f.name:
                    key, value, raw, error = _read(f, data[at : at + f.size])
                    record[key] = value
                    fields.append((f, key, value, raw, error))
                if not f.shares_next:
                    at += f.size
            pos = at
            if not spec.into:
                obj.update(record)
            else:
                obj.setdefault(spec.into, []).append(record)
                obj.update({k: record[k] for k in spec.promote if k in record})
            ts = record.get("timestamp") if spec.into else None
            ts_ns = ts * 1_000_000_000 if isinstance(ts, int) else None
            for f, key, value, raw, error in fields:
                if key == "timestamp" and spec.into:
                    continue
                if f.quantity is None:
                    unmapped[f"{spec.into}.{key}" if spec.into else key] = None
                elif ts_ns is not None:
                    dated.append(_reading(f, value, raw, error, ts_ns))
                elif not spec.into or f.name in spec.promote:
                    live[f.name] = _reading(f, value, raw, error, None)
                else:
                    unmapped[f"{spec.into}.{key}"] = None
        aliases = self._aliases(model, obj)
        if aliases:
            obj["vendor_aliases"] = aliases
        return Decoded(object=obj, readings=[*live.values(), *dated], unmapped=list(unmapped))

    @staticmethod
    def _table(model: str | None) -> Table:
        canonical = _BY_UPPER.get(model.upper()) if isinstance(model, str) else None
        if canonical is None:
            raise DecodeError(
                f"unknown Milesight model {model!r}: the same bytes mean different things per "
                f"model, so one of {', '.join(sorted(MODELS))} is required",
                field="model",
            )
        return TABLES[canonical]

    @staticmethod
    def _channel(table: Table, data: bytes, pos: int, model: str | None) -> Channel:
        """The spec of the channel starting at `pos`, or a DecodeError naming the offset."""
        if len(data) - pos < 2:
            raise DecodeError(
                f"frame ends at byte {len(data)}: channel 0x{data[pos]:02x} at offset {pos} "
                f"needs a type byte at offset {pos + 1}, 0 left",
                field="channel",
                offset=pos + 1,
            )
        spec = table.get((data[pos], data[pos + 1]))
        if spec is None:
            raise DecodeError(
                f"unknown channel 0x{data[pos]:02x} type 0x{data[pos + 1]:02x} at offset {pos} "
                f"for model {model}",
                field="channel",
                offset=pos,
            )
        return spec

    @staticmethod
    def _aliases(model: str | None, obj: dict[str, Any]) -> dict[str, str]:
        """Our name -> vendor decoder's name, for the names this frame actually carries."""
        table = VENDOR_ALIASES.get(_BY_UPPER.get((model or "").upper(), ""), {})
        present = set(obj)
        for value in obj.values():
            if isinstance(value, list):
                present.update(k for rec in value if isinstance(rec, dict) for k in rec)
        return {ours: theirs for ours, theirs in table.items() if ours in present}
