"""RFC 8428 SenML JSON packs on MQTT: one message, many sensors, each record its own series.

Topic: `<prefix>/senml/<site>/<zone>` (`greennanny/senml/gh1/house-1`); any other topic gives
the node's site and zone "default". Note that `greennanny/senml/+/+` also matches the JSON
handler's default filter `greennanny/+/+/+`: routes are tried in order, so list the SenML
subscription first.

Resolution (RFC 8428 section 4.6): base name + name, base time + time (a result below 2**28 s
is relative to "now", which here is the message's receive time, so replays resolve the same
way), unit or base unit, base value + value, base sum + sum. Validation, each failure a
`DecodeError` for the whole pack (a pack is one measurement set; half of it is not stored):

- a name must start with a letter or digit and use only letters, digits and `- : . / _`;
- a record carries at most one kind of value (v/bv, vs, vb, vd), a sum only with a number;
- a record with a name needs a value or a sum; a record with neither (only base fields) only
  sets bases, as in RFC 8428 example 9;
- `bver` may not change within a pack, and a pack without it may not start giving it later
  (the version is fixed by the first record); a version above 10 is newer than this reader;
- a field ending in `_` must be understood (RFC 8428 section 4.4): none is, so it is rejected.

Mapping a resolved record to a series (a decision, documented here and in `SERIES_RULES`): the
device is the name up to its last `:` or `/` (`urn:dev:ow:10e2073a01080063:temp` -> device
`urn:dev:ow:10e2073a01080063`, part `temp`; `2001:db8::2/temperature` -> `2001:db8::2`); `-`,
`.` and `_` are kept inside names because sensors use them in words (`air-temp`, `pm2.5`). A
name without `:` or `/` is both the device and the part. Any `/` left in the device becomes `:`
because a series key uses `/` between its levels. The quantity comes from the SenML unit and a
word in the part: units that name one quantity (`%RH`, `lx`) need no word; units shared by
several (`Cel`, `ppm`, `%`, `V`, `Pa`) need one, so a mains `voltage` in V is never filed as
battery voltage. Anything else (strings, data values, sums alone, unknown unit/word) is listed
in `unmapped` with its reason in `detail`.
"""

from __future__ import annotations

import hashlib
import math
import re
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, NoReturn

from greennanny.decoders.values import coerce_value
from greennanny.errors import DecodeError
from greennanny.ingest.chirpstack import parse_json
from greennanny.ingest.envelope import Handled
from greennanny.model import Outcome, Point, SeriesKey, Uplink

SUPPORTED_VERSION = 10
RELATIVE_LIMIT = Decimal(2**28)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")
_BASE = ("bn", "bt", "bu", "bv", "bs", "bver")

# (SenML unit, words one of which the name's last part must contain (none: any), quantity,
# scale, offset): canonical value = value * scale + offset. First match wins: specific first.
SERIES_RULES: tuple[tuple[str, tuple[str, ...], str, float, float], ...] = (
    ("Cel", ("soil", "substrate"), "soil_temperature", 1.0, 0.0),
    ("Cel", ("leaf", "canopy"), "leaf_temperature", 1.0, 0.0),
    ("Cel", ("temp", "air"), "air_temperature", 1.0, 0.0),
    ("K", ("soil", "substrate"), "soil_temperature", 1.0, -273.15),
    ("K", ("leaf", "canopy"), "leaf_temperature", 1.0, -273.15),
    ("K", ("temp", "air"), "air_temperature", 1.0, -273.15),
    ("%RH", (), "relative_humidity", 1.0, 0.0),
    ("ppm", ("co2", "carbon"), "co2", 1.0, 0.0),
    ("lx", (), "illuminance", 1.0, 0.0),
    ("hPa", (), "barometric_pressure", 1.0, 0.0),
    ("Pa", ("vpd",), "vpd", 0.001, 0.0),
    ("Pa", ("press", "baro"), "barometric_pressure", 0.01, 0.0),
    ("%", ("moist", "vwc"), "soil_moisture", 1.0, 0.0),
    ("%", ("vent",), "vent_opening", 1.0, 0.0),
    ("%", ("bat",), "battery", 1.0, 0.0),
    ("%EL", (), "battery", 1.0, 0.0),
    ("V", ("bat",), "battery_voltage", 1.0, 0.0),
    ("mV", ("bat",), "battery_voltage", 0.001, 0.0),
    ("S/m", ("ec", "conduct"), "soil_ec", 10_000.0, 0.0),
    ("ug/m3", ("pm10",), "pm10", 1.0, 0.0),
    ("ug/m3", ("pm2",), "pm2_5", 1.0, 0.0),
    ("mm", ("dist", "level"), "distance", 1.0, 0.0),
    ("m", ("dist", "level"), "distance", 1000.0, 0.0),
)
# Boolean (`vb`) records: words in the name's last part -> quantity (true = 1).
BOOL_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("door", "window", "contact", "open"), "door_open"),
    (("occupancy", "motion", "pir"), "occupancy"),
)


def resolve(pack: Any, now_s: float) -> list[dict[str, Any]]:
    """The pack's resolved records (n, u, t in float seconds, one value key, s, ut); `now_s` is
    the time relative times count from. Raises DecodeError naming the record for an invalid pack."""
    return [{**r, "t": float(r["t"])} for r in _resolve(pack, Decimal(repr(now_s)))]


def split_name(name: str) -> tuple[str, str]:
    """(device, last part) of a resolved name, cut at the last `:` or `/` (see the module doc)."""
    cut = max(name.rfind(":"), name.rfind("/"))
    if cut <= 0:
        return name, name
    return name[:cut].replace("/", ":"), name[cut + 1:]


def series_of(record: dict[str, Any]) -> tuple[str, str, Any] | str:
    """(device, quantity, value in the quantity's unit) for a resolved record, or why it has none."""
    device, part = split_name(record["n"])
    word = part.lower()
    if "vb" in record:
        for words, quantity in BOOL_RULES:
            if any(w in word for w in words):
                return device, quantity, 1.0 if record["vb"] else 0.0
        return f"boolean {part!r} names no known quantity"
    if "v" not in record:
        kind = "string" if "vs" in record else "data" if "vd" in record else "sum-only"
        return f"{kind} value (only numbers are stored)"
    unit = record.get("u", "")
    for rule_unit, words, quantity, scale, offset in SERIES_RULES:
        if unit == rule_unit and (not words or any(w in word for w in words)):
            v = record["v"]
            return device, quantity, (v * scale + offset) if isinstance(v, (int, float)) else v
    return f"no quantity for unit {unit!r} with name part {part!r}"


class SenmlTopic:
    """Envelope handler for SenML JSON packs; keyed points, one per mapped record."""

    name = "senml"

    def __init__(self, default_site: str) -> None:
        self._site = default_site

    def handle(self, up: Uplink) -> Handled:
        parts = up.topic.split("/")
        site, zone = self._site, "default"
        if len(parts) >= 3 and parts[-3] == "senml" and parts[-2] and parts[-1]:
            site, zone = parts[-2], parts[-1]
        records = _resolve(parse_json(up.payload), Decimal(up.received_ns) / 10**9)
        digest = hashlib.blake2b(up.topic.encode() + b"\0" + up.payload, digest_size=10).hexdigest()
        h = Handled(Outcome.STORED, "senml", site=site, zone=zone, ts_ns=up.received_ns, dedup_key=f"senml:{digest}")
        why: list[str] = []
        for r in records:
            mapped = series_of(r)
            if isinstance(mapped, str):
                h.unmapped.append(r["n"])
                why.append(f"{r['n']}: {mapped}")
                continue
            device, quantity, raw = mapped
            value, quality, reason = coerce_value(r["n"], raw, quantity)
            ts = int((r["t"] * 10**9).to_integral_value(ROUND_HALF_EVEN))
            h.points.append(Point(SeriesKey(site, zone, device, quantity), ts, value, quality, reason))
            if "s" in r:
                h.unmapped.append(r["n"])
                why.append(f"{r['n']}: sum beside the value is not stored")
        h.detail = "; ".join(why)
        if not h.points:
            h.outcome = Outcome.STORED_EMPTY
            h.detail = "no record maps to a quantity" + (f"; {h.detail}" if why else "")
        return h


def _resolve(pack: Any, now: Decimal) -> list[dict[str, Any]]:
    """Resolved records with `t` as exact Decimal seconds (float only at the public edge)."""
    if not isinstance(pack, list) or not pack:
        raise DecodeError("a SenML pack is a non-empty JSON array of records", field="payload",
                          reason="invalid_senml")
    bn, bt, bu = "", Decimal(0), ""
    bv: float | None = None
    bs: float | None = None
    bver: int | None = None
    out: list[dict[str, Any]] = []
    for i, rec in enumerate(pack):
        where = f"record {i}"
        if not isinstance(rec, dict):
            _bad(where, f"is JSON {type(rec).__name__}, expected an object")
        for key in rec:
            if key.endswith("_"):
                _bad(where, f"field {key!r} must be understood and is not known here")
        if "bver" in rec:
            v = rec["bver"]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                _bad(where, f"bver={v!r} is not a positive integer")
            if v > SUPPORTED_VERSION:
                _bad(where, f"bver={v} is newer than SenML version {SUPPORTED_VERSION} understood here")
            if i > 0 and v != bver:
                _bad(where, f"bver={v} changes the pack's version ({bver or 'not given'}) after the first record")
            bver = v
        bn = _text(rec, "bn", where) if "bn" in rec else bn
        bt = _seconds(rec, "bt", where) if "bt" in rec else bt
        bu = _text(rec, "bu", where) if "bu" in rec else bu
        bv = _number(rec, "bv", where) if "bv" in rec else bv
        bs = _number(rec, "bs", where) if "bs" in rec else bs
        kinds = [k for k in ("v", "vs", "vb", "vd") if k in rec]
        if "bv" in rec and "v" not in rec:
            kinds.append("bv")  # a base value alone is the record's value
        has_sum = "s" in rec or "bs" in rec
        if len(kinds) > 1:
            _bad(where, f"carries {len(kinds)} kinds of value {kinds}; a record has one")
        if has_sum and any(k in rec for k in ("vs", "vb", "vd")):
            _bad(where, "a sum beside a non-numeric value")
        if not kinds and not has_sum:
            if "n" not in rec and any(k in rec for k in _BASE):
                continue  # only sets base fields (RFC 8428 example 9)
            _bad(where, "has no value and no sum")
        name = bn + (_text(rec, "n", where) if "n" in rec else "")
        if not _NAME.fullmatch(name):
            _bad(where, f"name {name!r} must start with a letter or digit and use only letters, digits and - : . / _")
        t = bt + (_seconds(rec, "t", where) if "t" in rec else Decimal(0))
        r: dict[str, Any] = {"n": name}
        unit = _text(rec, "u", where) if "u" in rec else bu
        if unit:
            r["u"] = unit
        r["t"] = now + t if t < RELATIVE_LIMIT else t
        if "v" in rec or "bv" in rec:
            r["v"] = (_number(rec, "v", where) if "v" in rec else 0.0) + (bv or 0.0)
        elif "vs" in rec:
            r["vs"] = _text(rec, "vs", where)
        elif "vb" in rec:
            if not isinstance(rec["vb"], bool):
                _bad(where, f"vb={rec['vb']!r} is not true or false")
            r["vb"] = rec["vb"]
        elif "vd" in rec:
            r["vd"] = _text(rec, "vd", where)
        if has_sum:
            r["s"] = (_number(rec, "s", where) if "s" in rec else 0.0) + (bs or 0.0)
        if "ut" in rec:
            r["ut"] = _number(rec, "ut", where)
        out.append(r)
    return out


def _bad(where: str, why: str) -> NoReturn:
    raise DecodeError(f"SenML {where} {why}", field=where, reason="invalid_senml")


def _text(rec: dict[str, Any], key: str, where: str) -> str:
    v = rec[key]
    if not isinstance(v, str):
        _bad(where, f"{key}={v!r} is not a string")
    return v


def _number(rec: dict[str, Any], key: str, where: str) -> float:
    v = rec[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        _bad(where, f"{key}={v!r} is not a number")
    return float(v)


def _seconds(rec: dict[str, Any], key: str, where: str) -> Decimal:
    """A time as exact Decimal seconds: repr() of a float is its shortest exact decimal text."""
    v = rec[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        _bad(where, f"{key}={v!r} is not a finite number of seconds")
    return Decimal(repr(v))
