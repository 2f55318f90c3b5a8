"""Milesight channel/type frames: one decoder, every model a table.

A Milesight uplink is a run of records: channel id (1 byte), channel type (1 byte), data,
multi-byte values little-endian. The same pair means different things on different models
(`08 7D` TVOC is raw on AM107 but raw/100 on AM307; `05 00` is PIR on AM307 and a leak contact
on EM300-SLD; a `20 CE` history record is 6, 7, 8, 9, 13 or 20 bytes), so the model picks a
table (in `milesight_tables.py`) and the loop below never branches on a model name: a new model
is new rows, not new code. Numbered channels chosen by a data byte (Modbus channel 7, valve 2)
and data whose format a type byte picks are table rows too (`Field.role`, `Field.cases`).

Field names are Milesight's README names, so an operator can hold the output against the vendor
documentation; `vendor_aliases` in the output says where the vendor's own decoder names a field
differently. Unlike the vendor decoders, which stop silently at the first pair they do not know,
an unknown pair or a short frame raises `DecodeError` naming the byte offset: a frame we cannot
fully account for goes to the dead letters instead of being half-stored.
"""

from __future__ import annotations

import math
import operator
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from greennanny.decoders.base import Decoded, Reading
from greennanny.decoders.milesight_tables import (
    FLOATS,
    INTS,
    MODELS,
    TABLES,
    TEXTS,
    VENDOR_ALIASES,
    Channel,
    Field,
    Table,
)
from greennanny.decoders.values import SENTINELS, coerce_value
from greennanny.errors import DecodeError
from greennanny.model import QUANTITIES, Quality

__all__ = ["MODELS", "TABLES", "VENDOR_ALIASES", "Channel", "Field", "MilesightDecoder", "Table"]

_BY_UPPER = {m.upper(): m for m in MODELS}


class _Item(NamedTuple):
    """One output field as read: the table row, its name ({n} filled), key, value, raw, error."""

    field: Field
    name: str
    key: str
    value: Any
    raw: int | None
    error: str | None


def _int(f: Field, chunk: bytes, *, signed: bool = True) -> int:
    """The field's integer: little-endian, masked to `bits`, else two's complement if signed."""
    raw = int.from_bytes(chunk, "little")
    if f.bits is not None:
        shift, width = f.bits
        return (raw >> shift) & ((1 << width) - 1)
    size, is_signed = INTS[f.fmt]
    if signed and is_signed and raw >> (8 * size - 1):
        raw -= 1 << (8 * size)
    return raw


def _read(f: Field, name: str, chunk: bytes) -> tuple[str, Any, int | None, str | None]:
    """(key, object value, raw integer, sensor error text) of one field's bytes."""
    if f.fmt in TEXTS:
        return name, TEXTS[f.fmt][1](chunk), None, None
    if f.fmt in FLOATS:
        number = struct.unpack(FLOATS[f.fmt][1], chunk)[0]
        if not math.isfinite(number):  # NaN/inf from a register: no value, and keeps JSON valid
            return f"{name}_error", "not a finite number", None, "not a finite number"
        return name, number if f.div == 1 else number / f.div, None, None
    unsigned = _int(f, chunk, signed=False)
    if f.errors and unsigned in f.errors:
        return f"{name}_error", f.errors[unsigned], unsigned, f.errors[unsigned]
    raw = _int(f, chunk)
    if f.labels is not None:
        return name, f.labels.get(raw, "unknown"), raw, None
    return name, raw if f.div == 1 else raw / f.div, raw, None


def _reading(
    f: Field, name: str, value: Any, raw: int | None, error: str | None, ts_ns: int | None
) -> Reading:
    """The canonical reading for a field; out-of-range values are flagged, never dropped."""
    quantity = f.quantity or ""
    if error is not None:
        return Reading(quantity, math.nan, ts_ns, Quality.MISSING, f"{name}: sensor {error}")
    source = raw if f.labels is not None and raw in f.labels else value
    number, quality, reason = coerce_value(name, source, quantity, f.qscale)
    return Reading(quantity, number, ts_ns, quality, reason)


def _need(spec: Channel, data: bytes, pos: int, size: int) -> None:
    """DecodeError unless `size` bytes of the channel's data are left from `pos`."""
    end = len(data)
    if end - pos < size:
        raise DecodeError(
            f"frame ends at byte {end}: channel 0x{data[pos - 2]:02x} type 0x{data[pos - 1]:02x} "
            f"({spec.label}) needs {size} bytes at offset {pos}, {end - pos} left",
            field=spec.label,
            offset=pos,
        )


_STRUCT_CODES = {"u8": "B", "i8": "b", "u16": "H", "i16": "h", "u32": "I", "i32": "i"}
_Plain = tuple[struct.Struct, tuple[Field, ...]]
_PLAIN: dict[int, _Plain | None] = {}  # id(Channel) -> its one-unpack reader; tables live as long as the module


def _plain(spec: Channel) -> _Plain | None:
    """A whole-channel `struct` reader when every field is a plain integer or a skipped pad.

    Most channels on the wire (temperature, humidity, CO2, battery) are such; reading them with
    one `unpack_from` instead of field by field is what keeps a node's decode cost per frame low.
    Channels with indexes, selectors, bit fields, labels, floats or text take the general walk.
    """
    try:
        return _PLAIN[id(spec)]
    except KeyError:
        pass
    codes, outs = "<", []
    for f in spec.fields:
        if f.fmt.startswith("x") and not f.name:
            codes += f"{f.size}x"
        elif (f.fmt in _STRUCT_CODES and f.is_output and f.bits is None and not f.shares_next
              and f.labels is None and "{n}" not in f.name):
            codes += _STRUCT_CODES[f.fmt]
            outs.append(f)
        else:
            _PLAIN[id(spec)] = None
            return None
    plain = (struct.Struct(codes), tuple(outs))
    _PLAIN[id(spec)] = plain
    return plain


def _walk(spec: Channel, data: bytes, pos: int) -> tuple[list[_Item], int]:
    """Reads one channel's data starting at `pos`: its output fields and where the next pair starts.

    Index, length and selector fields steer the walk (see `Field`); a selector's chosen case is
    read next, after checking that the frame holds it.
    """
    need = spec.size
    plain = _plain(spec)
    if plain is not None:
        _need(spec, data, pos, need)
        reader, fields = plain
        plain_items: list[_Item] = []
        for f, raw in zip(fields, reader.unpack_from(data, pos), strict=True):
            if f.errors:
                unsigned = raw & ((1 << (8 * INTS[f.fmt][0])) - 1)
                if unsigned in f.errors:
                    plain_items.append(_Item(f, f.name, f"{f.name}_error", f.errors[unsigned], unsigned, f.errors[unsigned]))
                    continue
            plain_items.append(_Item(f, f.name, f.name, raw if f.div == 1 else raw / f.div, raw, None))
        return plain_items, pos + need
    _need(spec, data, pos, need)
    todo = deque(spec.fields)
    items: list[_Item] = []
    at, n = pos, 0
    declared: tuple[int, int, str] | None = None  # (length, offset, field name)
    while todo:
        f = todo.popleft()
        chunk = data[at : at + f.size]
        name = f.name.replace("{n}", str(n)) if f.is_output else f.name
        if f.role == "index":
            n = _int(f, chunk) + f.add
            if n < 1:
                raise DecodeError(
                    f"{spec.label}: {f.name} {n} at offset {at} is not a channel number (1 or more)",
                    field=spec.label,
                    offset=at,
                )
        elif f.role == "length":
            declared = (_int(f, chunk), at, f.name)
        elif f.cases is not None:
            kind = _int(f, chunk)
            case = f.cases.get(kind)
            if case is None:
                raise DecodeError(
                    f"{spec.label}: unknown {f.name} 0x{kind:02x} at offset {at}",
                    field=spec.label,
                    offset=at,
                )
            size = sum(c.size for c in case if not c.shares_next)
            if declared is not None and declared[0] != size:
                length, where, what = declared
                raise DecodeError(
                    f"{spec.label}: {what} {length} at offset {where} does not match {f.name} "
                    f"0x{kind:02x}, which has {size} bytes",
                    field=spec.label,
                    offset=where,
                )
            need += size
            _need(spec, data, pos, need)
            todo.extendleft(reversed(case))
        elif f.is_output:
            items.append(_Item(f, name, *_read(f, name, chunk)))
        if not f.shares_next:
            at += f.size
    return items, at


# Per quantity, the values `coerce_value` passes through as they are (OK, no reason): inside the
# physical range and strictly below the magnitude of every sentinel of that quantity.
def _ok_range(name: str) -> tuple[float, float]:
    q = QUANTITIES[name]
    floor = min(abs(v) for v in SENTINELS.get(name, ()) + SENTINELS["*"]) * 0.999999
    return max(q.valid_min, -floor), min(q.valid_max, floor)


_OK_RANGE: dict[str, tuple[float, float]] = {name: _ok_range(name) for name in QUANTITIES}


class _Plan(NamedTuple):
    """One frame shape compiled: its whole layout as one `struct` and what each value means."""

    reader: struct.Struct
    header_at: Callable[[tuple[Any, ...]], tuple[int, ...]]  # the channel/type bytes out of the unpacked tuple
    headers: tuple[int, ...]  # ... and what they must be for the frame to have this shape
    # Per output field, in frame order: (index into the unpacked tuple, field, name, div, quantity,
    # qscale, lowest and highest value passed through as OK, mask of its raw bits, its error codes):
    # what `_planned` needs, unpacked once per frame instead of read off the field each time.
    outs: tuple[tuple[int, Field, str, float, str | None, float, float, float, int, Any], ...]
    unmapped: tuple[str, ...]
    aliases: dict[str, str]


_MAX_SHAPES = 4  # frame shapes kept per (model, length, first pair): devices send one or two
_MAX_FAILS = 8  # shapes tried per key that cannot be planned before the key stops trying
_PLANS: dict[tuple[str, int, int, int], list[_Plan]] = {}
_UNPLANNED: dict[tuple[str, int, int, int], int] = {}


def _compile(canonical: str, table: Table, data: bytes) -> _Plan | None:
    """The plan of `data`'s shape, or None when it is not one that a plan can read exactly.

    Only frames made of plain channels (integers and pads, see `_plain`) with distinct field
    names, outside history and event records, are planned: those are what sensors send every
    few minutes. Everything else keeps taking the general walk, which is also what words errors.
    """
    codes, headers, outs, unmapped, names = ["<"], [], [], [], set()
    pos, idx, end = 0, 0, len(data)
    while pos < end:
        if end - pos < 2:
            return None
        spec = table.get((data[pos], data[pos + 1]))
        plain = _plain(spec) if spec is not None else None
        if spec is None or plain is None or spec.into or end - pos - 2 < spec.size:
            return None
        headers += [(idx, data[pos]), (idx + 1, data[pos + 1])]
        codes.append("BB" + plain[0].format.lstrip("<"))
        idx += 2
        for f in plain[1]:
            if f.name in names:
                return None
            names.add(f.name)
            lo, hi = _OK_RANGE[f.quantity] if f.quantity is not None else (0.0, -1.0)
            outs.append((idx, f, f.name, f.div, f.quantity, f.qscale, lo, hi, (1 << (8 * f.size)) - 1, f.errors))
            if f.quantity is None:
                unmapped.append(f.name)
            idx += 1
        pos += 2 + spec.size
    table_aliases = VENDOR_ALIASES.get(canonical, {})
    at = operator.itemgetter(*(i for i, _ in headers))
    return _Plan(struct.Struct("".join(codes)), at, tuple(b for _, b in headers), tuple(outs), tuple(unmapped),
                 {ours: theirs for ours, theirs in table_aliases.items() if ours in names})


def _planned(canonical: str, table: Table, data: bytes) -> Decoded | None:
    """`data` decoded by its shape's plan, or None (no plan fits, or a probe sent an error code)."""
    key = (canonical, len(data), data[0], data[1] if len(data) > 1 else -1)
    plans = _PLANS.get(key)
    if plans is None:
        if len(_PLANS) > 10_000:  # bounded: a stream of odd frames must not grow memory
            _PLANS.clear()
            _UNPLANNED.clear()
        plans = _PLANS[key] = []
    for plan in plans:
        values = plan.reader.unpack_from(data)
        if plan.header_at(values) == plan.headers:
            break
    else:
        if len(plans) >= _MAX_SHAPES or _UNPLANNED.get(key, 0) >= _MAX_FAILS:
            return None
        new = _compile(canonical, table, data)
        if new is None:
            _UNPLANNED[key] = _UNPLANNED.get(key, 0) + 1  # history frames: stop trying after a few
            return None
        plans.append(plan := new)
        values = plan.reader.unpack_from(data)
    obj: dict[str, Any] = {}
    readings = []
    for i, f, name, div, quantity, qscale, lo, hi, mask, errors in plan.outs:
        raw = values[i]
        if errors and (raw & mask) in errors:
            return None  # a sensor error code: the general walk names it
        value = raw if div == 1 else raw / div
        obj[name] = value
        if quantity is not None:
            # The common case inline: a value inside its quantity's range and below every sentinel
            # is what `coerce_value` returns unchanged (same arithmetic); anything else takes it.
            v = float(value) * qscale
            if lo <= v <= hi:
                readings.append(Reading(quantity, v))
            else:
                readings.append(_reading(f, name, value, raw, None, None))
    if plan.aliases:
        obj["vendor_aliases"] = dict(plan.aliases)
    return Decoded(object=obj, readings=readings, unmapped=list(plan.unmapped))


def _table_of(model: str) -> Table:
    """The table of a supported model (tests compare the planned and general paths with it)."""
    return MilesightDecoder._table(model)


class MilesightDecoder:
    """Decodes any model in `MODELS`; the model is required: the bytes alone are ambiguous."""

    name = "milesight"
    needs_model = True  # the bytes alone are ambiguous between models

    def decode(self, payload: bytes, *, model: str | None = None) -> Decoded:
        table = self._table(model)
        if isinstance(payload, bytes) and payload:
            planned = _planned(_BY_UPPER[model.upper()], table, payload)  # type: ignore[union-attr]
            if planned is not None:
                return planned
        return self._walk_frame(table, payload, model)

    def _walk_frame(self, table: Table, payload: bytes, model: str | None) -> Decoded:
        """The general decoder: every channel kind, and every error worded with its offset."""
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
            items, pos = _walk(spec, data, pos + 2)
            record = {item.key: item.value for item in items}
            if not spec.into:
                obj.update(record)
            else:
                obj.setdefault(spec.into, []).append(record)
                obj.update({k: record[k] for k in spec.promote if k in record})
            ts = record.get("timestamp") if spec.into else None
            ts_ns = ts * 1_000_000_000 if isinstance(ts, int) else None
            for f, name, key, value, raw, error in items:
                if key == "timestamp" and spec.into:
                    continue
                if f.quantity is None:
                    unmapped[f"{spec.into}.{key}" if spec.into else key] = None
                elif ts_ns is not None:
                    dated.append(_reading(f, name, value, raw, error, ts_ns))
                elif not spec.into or f.name in spec.promote:
                    live[name] = _reading(f, name, value, raw, error, None)
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
