"""What each Milesight model's channel/type pairs carry: the tables `milesight.py` decodes with.

Per-model differences live here as data (`Field` and `Channel` rows); the decoding engine in
`milesight.py` never branches on a model name. Field names are Milesight's README names;
`VENDOR_ALIASES` lists where the vendor's own decoder names a field differently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FLOATS", "INTS", "MODELS", "TABLES", "TEXTS", "VENDOR_ALIASES", "Channel", "Field", "Table",
]


def _nul_terminated(b: bytes) -> str:
    """A NUL-padded string as the vendor reads it: up to the first NUL, one char per byte."""
    return b.split(b"\x00", 1)[0].decode("latin-1")


# Tables below read best one row per line, so the formatter leaves them alone.
# fmt: off
# Integer formats: size in bytes and signedness. Everything on the wire is little-endian.
INTS: dict[str, tuple[int, bool]] = {
    "u8": (1, False), "i8": (1, True), "u16": (2, False), "i16": (2, True), "u32": (4, False),
    "i32": (4, True),
}
# IEEE floats: size and struct code (f16 = half precision, as UC300/UC50x analog statistics).
FLOATS: dict[str, tuple[int, str]] = {"f16": (2, "<e"), "f32": (4, "<f")}
# Text formats: size and how the vendor writes them.
TEXTS: dict[str, tuple[int, Callable[[bytes], str]]] = {
    "hex8": (8, lambda b: b.hex()),
    "ver": (1, lambda b: f"v{b[0] >> 4}.{b[0] & 0x0F}"),
    "hw": (2, lambda b: f"v{b[0]}.{b[1] >> 4}"),
    "fw": (2, lambda b: f"v{b[0]}.{b[1]}"),
    "str36": (36, _nul_terminated),  # UC50x SDI-12 response
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

    Three kinds of field are read but not output; their name is what error messages call them:
    - `role="index"`: its integer plus `add` is the `{n}` in the names of the fields after it
      (`modbus_chn_{n}`, `valve_{n}`), so one row covers every numbered channel a byte selects;
    - `role="length"`: the byte count the device declares for the data chosen by the next
      selector; a different count is a DecodeError rather than a misaligned frame;
    - a selector (`cases` set): its integer picks the fields read next (a Modbus data type picks
      int16, int32 or float); a value with no case is a DecodeError.
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
    role: str = ""
    add: int = 0
    cases: Mapping[int, tuple[Field, ...]] | None = None

    # Derived once in __post_init__: the decoder reads them for every field of every frame.
    size: int = field(init=False, repr=False, compare=False)
    is_output: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", _size(self.fmt))
        object.__setattr__(self, "is_output", bool(self.name) and not self.role and self.cases is None)


def _size(fmt: str) -> int:
    """Bytes a field of this format takes on the wire."""
    if fmt.startswith("x"):
        return int(fmt[1:])
    for formats in (INTS, FLOATS, TEXTS):
        if fmt in formats:
            return formats[fmt][0]
    raise KeyError(f"unknown field format {fmt!r}")


@dataclass(frozen=True, slots=True)
class Channel:
    """What one channel/type pair carries on one model.

    `size` is the fixed part; a selector's chosen case adds its own bytes. `into` names a list
    of records ("history", "event") that each occurrence appends to instead of setting
    top-level keys; `promote` copies record fields to the top level as well (TS201 alarms also
    report the current temperature).
    """

    label: str
    fields: tuple[Field, ...]
    size: int
    into: str = ""
    promote: tuple[str, ...] = ()


def _ch(label: str, *fields: Field, into: str = "", promote: tuple[str, ...] = ()) -> Channel:
    size = sum(f.size for f in fields if not f.shares_next)
    return Channel(label, fields, size, into, promote)


def _one(name: str, fmt: str = "u8", **kw: Any) -> Channel:
    """A channel that carries one field of the same name."""
    return _ch(name, Field(name, fmt, **kw))


def _hist(*fields: Field, label: str = "history") -> Channel:
    """A history record: a u32 Unix timestamp, then the model's own layout."""
    return _ch(label, Field("timestamp", "u32"), *fields, into="history")


def _event(*fields: Field) -> Channel:
    return _ch("event", *fields, into="event", promote=("temperature",))


Table = dict[tuple[int, int], Channel]


def _each(first_id: int, ctype: int, count: int, build: Callable[[int], Channel]) -> Table:
    """Numbered channels `first_id`, `first_id + 1`, ... of one type: `build(1)`, `build(2)`, ..."""
    return {(first_id + i, ctype): build(i + 1) for i in range(count)}


def _stats(name: str, fmt: str, div: float = 1, order: tuple[str, ...] = ("max", "min", "avg")) -> tuple[Field, ...]:
    """A value and its statistics, in the order the model sends them."""
    return (Field(name, fmt, div), *(Field(f"{name}_{s}", fmt, div) for s in order))


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
ON_OFF = {0: "off", 1: "on"}
_PROBE_ERRORS = {0xFFFF: "collection failed", 0xFFFD: "out of range"}
_EM500_ALARM = {0: "threshold alarm", 1: "threshold alarm release", 2: "mutation alarm"}
_TS201_ALARM = {0: "threshold alarm release", 1: "threshold alarm", 2: "mutation alarm"}

COMMON: Table = {  # device attributes every model sends after a join or reset
    (0xFF, 0x01): _one("ipso_version", "ver"),
    (0xFF, 0x09): _one("hardware_version", "hw"),
    (0xFF, 0x0A): _one("firmware_version", "fw"),
    (0xFF, 0x0B): _one("device_status", labels={0: "off", 1: "on", 0xFF: "on"}),  # FF after a reset
    (0xFF, 0x0F): _one("lorawan_class", labels={0: "Class A", 1: "Class B", 2: "Class C", 3: "Class CtoB"}),
    (0xFF, 0x16): _one("sn", "hex8"),
    (0xFF, 0xFE): _one("reset_event"),
    (0xFF, 0xFF): _one("tsl_version", "fw"),
    (0x01, 0x75): _one("battery", quantity="battery"),
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
        (0x0E, 0x01): _one("buzzer_status", labels={0: "off", 1: "on"}),
        # Milesight's own AM307/AM308 README example frames end in `05 6A` (the family's uint16
        # activity channel, as on AM104/AM107); decoding it keeps those documented frames whole.
        (0x05, 0x6A): _one("activity", "u16"),
        **(codes or {}),
        (0x20, 0xCE): _hist(*head, TVOC_IAQ, PRESSURE, *extra),
        (0x21, 0xCE): _hist(*head, TVOC_UG, PRESSURE, *extra),
    }


_AM104: Table = {
    **COMMON, **TH,
    (0x05, 0x6A): _one("activity", "u16"),
    (0x06, 0x65): _ch("illumination", Field("illumination", "u16", quantity="illuminance"),
                      Field("infrared_and_visible", "u16"), Field("infrared", "u16")),
}
_PM: Table = {(0x0B, 0x7D): _ch("pm2_5", PM25), (0x0C, 0x7D): _ch("pm10", PM10)}
HCHO = Field("hcho", "u16", 100)
O3 = Field("o3", "u16", 100)
_SMTC_TEMP = Field("temperature", "i16", 10, quantity="soil_temperature", errors=_PROBE_ERRORS)
_SMTC_MOIST = Field("moisture", "u16", 100, quantity="soil_moisture", errors=_PROBE_ERRORS)
_SMTC_EC = Field("ec", "u16", quantity="soil_ec", errors=_PROBE_ERRORS)
# EM500-SWL `03 77`: uint16 in cm, as the maintainer confirmed (SensorDecoders #113); the vendor
# decoder divides by 100 (2 cm read as 0.02) and calls it `depth`, the README `water_level`. We
# keep the decoder's name and the README's unit (field fault BR-05).
_SWL_DEPTH = Field("depth", "u16", quantity="water_level", errors=_PROBE_ERRORS)
_DI_HIST = (TEMP, HUM, Field("gpio_type", labels={1: "gpio", 2: "counter"}),
            Field("gpio", labels={0: "low", 1: "high"}), Field("pulse", "u32"))

# --- UC controllers: general-purpose inputs, so no canonical quantity except the battery -----
# Modbus: `{n}` is the channel number a data byte selects; the data type picks the value format.
_MB = "modbus_chn_{n}"
_MB_COIL = Field(_MB, labels=ON_OFF)
_READ_ERROR = {i: "read error" for i in range(256)}  # the byte is the channel; the value is fixed


def _mb(fmt: str, before: int = 0, after: int = 0) -> tuple[Field, ...]:
    """A Modbus value, with the skipped bytes around it when it is one 16-bit half of a 32-bit
    register (UC300 INT32_AB keeps the first half, INT32_CD the second)."""
    skip_before = (Field("", f"x{before}"),) if before else ()
    skip_after = (Field("", f"x{after}"),) if after else ()
    return (*skip_before, Field(_MB, fmt), *skip_after)


# UC300 `FF 19` data type: bits 0-6 the register kind, bit 7 set = signed.
_UC300_MB_KINDS: dict[int, tuple[tuple[Field, ...], tuple[Field, ...]]] = {  # kind: (unsigned, signed)
    0: ((_MB_COIL,), (_MB_COIL,)),                                   # coil
    1: (_mb("u8"), _mb("i8")),                                       # discrete
    2: (_mb("u16"), _mb("i16")), 3: (_mb("u16"), _mb("i16")),        # input / holding int16
    4: (_mb("u32"), _mb("i32")), 6: (_mb("u32"), _mb("i32")),        # holding / input int32
    5: (_mb("f32"), _mb("f32")), 7: (_mb("f32"), _mb("f32")),        # holding / input float
    8: (_mb("u16", after=2), _mb("i16", after=2)), 10: (_mb("u16", after=2), _mb("i16", after=2)),  # int32 AB
    9: (_mb("u16", before=2), _mb("i16", before=2)), 11: (_mb("u16", before=2), _mb("i16", before=2)),  # int32 CD
}
_UC300_MB_TYPES = {kind | sign: pair[bool(sign)] for kind, pair in _UC300_MB_KINDS.items() for sign in (0, 0x80)}
# UC50x `FF 0E` data type (bits 0-2 of the definition byte; bits 3-7 are the data length).
_UC50X_MB_TYPES: dict[int, tuple[Field, ...]] = {
    0: (_MB_COIL,), 1: (_MB_COIL,), 2: _mb("u16"), 3: _mb("u16"),
    4: _mb("u32"), 6: _mb("u32"), 5: _mb("f32"), 7: _mb("f32"),
}


def _modbus_read_error(add: int) -> Channel:
    return _ch("modbus read error", Field("modbus channel", role="index", add=add, shares_next=True),
               Field(_MB + "_alarm", labels=_READ_ERROR))


_UC300: Table = {
    **COMMON,
    **_each(0x03, 0x00, 4, lambda i: _one(f"gpio_in_{i}", labels=ON_OFF)),
    **_each(0x03, 0xC8, 4, lambda i: _one(f"counter_{i}", "u32")),
    **_each(0x07, 0x01, 2, lambda i: _one(f"gpio_out_{i}", labels=ON_OFF)),
    # PT100 probes are unmapped: a controller input can be air, substrate or heating pipe.
    **_each(0x09, 0x67, 2, lambda i: _one(f"pt100_{i}", "i16", div=10)),
    **_each(0x0B, 0x02, 2, lambda i: _one(f"adc_{i}", "u32", div=100)),
    **_each(0x0D, 0x02, 2, lambda i: _one(f"adv_{i}", "u32", div=100)),
    **_each(0x09, 0xE2, 2, lambda i: _ch(f"pt100_{i}", *_stats(f"pt100_{i}", "f16"))),
    **_each(0x0B, 0xE2, 2, lambda i: _ch(f"adc_{i}", *_stats(f"adc_{i}", "f16"))),
    **_each(0x0D, 0xE2, 2, lambda i: _ch(f"adv_{i}", *_stats(f"adv_{i}", "f16"))),
    (0xFF, 0x19): _ch("modbus", Field("modbus channel", role="index", add=1),
                      Field("modbus data length", role="length"),
                      Field("modbus data type", cases=_UC300_MB_TYPES)),
    (0xFF, 0x15): _modbus_read_error(add=1),
}

# UC50x: README names (`gpio_1`, `adc_1`) where the vectors follow them, vendor names elsewhere;
# README levels low/high (the vendor decoder says off/on). The README calls a digital output
# `gpio_1` too, which would collide with the input, so outputs keep the vendor's `gpio_output_N`.
_LEVEL = {0: "low", 1: "high"}
_UC50X_ADC_STATS = ("min", "max", "avg")
_UC501_MODBUS = (Field("modbus channel", role="index", add=-6),
                 Field("modbus data length", role="length", bits=(3, 5), shares_next=True),
                 Field("modbus data type", bits=(0, 3), cases=_UC50X_MB_TYPES))


def _uc501_hist_gpio(i: int) -> Field:
    """History: a GPIO's kind byte (input, output, counter), then 4 bytes read as that kind."""
    return Field(f"gpio_{i} type", cases={
        0: (Field(f"gpio_{i}", "u32", labels=_LEVEL),),
        1: (Field(f"gpio_output_{i}", "u32", labels=_LEVEL),),
        2: (Field(f"gpio_counter_{i}", "u32"),),
    })


_UC501: Table = {
    **COMMON,
    **_each(0x03, 0x00, 2, lambda i: _one(f"gpio_{i}", labels=_LEVEL)),
    **_each(0x03, 0x01, 2, lambda i: _one(f"gpio_output_{i}", labels=_LEVEL)),
    **_each(0x03, 0xC8, 2, lambda i: _one(f"gpio_counter_{i}", "u32")),
    (0xFF, 0x14): _ch("analog input type", Field("analog input", role="index", bits=(4, 4), shares_next=True),
                      Field("adc_{n}_type", bits=(0, 4), labels={0: "current", 1: "voltage"})),
    # v2 firmware: int16/1000; v3: half floats. The alarm code is kept raw: the README
    # (0 threshold, 1 value change) and the vendor decoder (1 threshold, 2 value change) disagree.
    **_each(0x05, 0x02, 2, lambda i: _ch(f"adc_{i}", *_stats(f"adc_{i}", "i16", 1000, _UC50X_ADC_STATS))),
    **_each(0x05, 0xE2, 2, lambda i: _ch(f"adc_{i}", *_stats(f"adc_{i}", "f16", order=_UC50X_ADC_STATS))),
    **_each(0x85, 0xE2, 2, lambda i: _ch(f"adc_{i} alarm", *_stats(f"adc_{i}", "f16", order=_UC50X_ADC_STATS),
                                         Field(f"adc_{i}_alarm"))),
    (0x08, 0xDB): _ch("sdi-12", Field("sdi-12 channel", role="index", add=1), Field("sdi12_{n}", "str36")),
    (0xFF, 0x0E): _ch("modbus", *_UC501_MODBUS),
    (0x80, 0x0E): _ch("modbus alarm", *_UC501_MODBUS, Field(_MB + "_alarm")),
    (0xFF, 0x15): _modbus_read_error(add=-6),
    (0x20, 0xDC): _hist(_uc501_hist_gpio(1), _uc501_hist_gpio(2),
                        Field("adc_1", "i32", 1000), Field("adc_2", "i32", 1000)),
}

# UC511/UC512 valves. A history record holds one valve; bit 4 of its status byte says which.
# Both the pulse count and the GPIO bit are output: the vendor decoder's mode branches contradict
# its own mode labels (it emits the pulse count in "gpio" mode), so neither is dropped.
_VALVE = {0: "close", 1: "open"}
_VALVE_ERRORS = {0xFF: "delay control failed"}  # sent instead of a state (vendor: valve_N_result)
_UC51X: Table = {
    **COMMON,
    (0x03, 0x01): _one("valve_1", labels=_VALVE, errors=_VALVE_ERRORS),
    (0x05, 0x01): _one("valve_2", labels=_VALVE, errors=_VALVE_ERRORS),
    (0x04, 0xC8): _one("valve_1_pulse", "u32"),
    (0x06, 0xC8): _one("valve_2_pulse", "u32"),
    **_each(0x07, 0x01, 2, lambda i: _one(f"gpio_{i}", labels=ON_OFF)),
    (0x09, 0x7B): _one("pressure", "u16"),  # pipe pressure, not barometric: unmapped
    (0xB9, 0x7B): _one("pressure_sensor_status", labels={1: "sensor error"}),
    (0x20, 0xCE): _hist(Field("valve", role="index", bits=(4, 1), add=1, shares_next=True),
                        Field("valve_{n}", bits=(0, 1), labels=_VALVE, shares_next=True),
                        Field("mode", bits=(1, 1), labels={0: "counter", 1: "gpio"}, shares_next=True),
                        Field("gpio_{n}", bits=(2, 1), labels=ON_OFF),
                        Field("valve_{n}_pulse", "u32")),
    (0x21, 0xCE): _hist(Field("pressure", "u16"), label="pressure history"),
}

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
                 (0x05, 0x00): _one("gpio", labels={0: "low", 1: "high"}),
                 (0x05, 0xC8): _one("pulse", "u32"),
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
                   (0x04, 0x68): _one("moisture", "u8", div=2, quantity="soil_moisture"),
                   (0x04, 0xCA): _ch("moisture", _SMTC_MOIST), (0x05, 0x7F): _ch("ec", _SMTC_EC),
                   (0x83, 0xD7): _em500_alarm(SOIL_TEMP),
                   (0x20, 0xCE): _hist(_SMTC_EC, _SMTC_TEMP, _SMTC_MOIST)},
    "EM500-LGT": {**COMMON, (0x03, 0x94): _ch("illumination", ILLUM32),
                  (0x20, 0xCE): _hist(ILLUM32)},
    "EM500-SWL": {**COMMON, (0x03, 0x77): _ch("depth", _SWL_DEPTH), (0x20, 0xCE): _hist(_SWL_DEPTH)},
    "EM500-PT100": {**COMMON, (0x03, 0x67): _ch("temperature", SOIL_TEMP),
                    (0x83, 0xD7): _em500_alarm(SOIL_TEMP), (0x20, 0xCE): _hist(SOIL_TEMP)},
    "WS202": {**COMMON,
              (0x03, 0x00): _one("pir", labels={0: "normal", 1: "trigger"}, quantity="occupancy"),
              (0x04, 0x00): _one("daylight", labels={0: "dim", 1: "bright"})},
    "WS301": {**COMMON, (0x03, 0x00): _ch("magnet_status", MAGNET),
              (0x04, 0x00): _one("tamper_status", labels={0: "installed", 1: "uninstalled"})},
    "WS303": {**COMMON, (0x03, 0x00): _ch("leakage_status", LEAK)},
    "UC300": _UC300,
    "UC501": _UC501,
    "UC511": _UC51X,
    "UC512": _UC51X,
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
_UC501_ALIASES = {
    "gpio_1": "gpio_input_1", "gpio_2": "gpio_input_2",
    **{f"adc_{i}{s}": f"analog_input_{i}{s}" for i in (1, 2)
       for s in ("", "_min", "_max", "_avg", "_type", "_alarm")},
}
_UC51X_ALIASES = {"valve_1_error": "valve_1_result", "valve_2_error": "valve_2_result"}
VENDOR_ALIASES: dict[str, dict[str, str]] = {
    "EM500-SMTC": {"ec": "electricity", "ec_error": "electricity_error"},
    "UC501": _UC501_ALIASES,
    "UC511": _UC51X_ALIASES,
    "UC512": _UC51X_ALIASES,
}
MODELS: frozenset[str] = frozenset(TABLES)
# fmt: on
