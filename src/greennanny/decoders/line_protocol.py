"""InfluxDB line protocol: a parser that reads text the way the Go reference decoder does, and an
encoder whose output that decoder reads back to the same point.

Why our own and why the Go decoder as the reference: Telegraf, InfluxDB and most greenhouse
gateways speak line protocol, and the shared vectors (`../shared/vectors/line_protocol.json`) are
the corpus of influxdata/line-protocol's `lineprotocol` decoder. Following that decoder rule for
rule (what each token may contain, what an escape is, where an error points, how a bad entry is
skipped) is what lets those vectors pass exactly; no Python package does.

    line        = measurement ("," tagkey "=" tagvalue)* " "+ field ("," field)* (" "+ timestamp)? " "* EOL
    field       = fieldkey "=" ( float | int "i" | uint "u" | bool | '"' string '"' )

- measurement: any bytes but `,`, space and control characters; `\\,` and `\\ ` are escapes and an
  unescaped `=` is an ordinary character (`cpu=load` is a measurement).
- tag keys, tag values and field keys: no `,`, `=`, space or control character; `\\,`, `\\=` and
  `\\ ` are escapes. Everywhere a backslash before any other byte is kept as it is (`va\\lue`).
- string field values: anything up to the closing quote, newlines included; `\\"`, `\\\\`, `\\n`,
  `\\r` and `\\t` are escapes.
- numbers as Go's strconv reads them: int64 with `i`, uint64 with `u`, floats in decimal or hex
  (`0x1p-2`), with exponents and `_` between digits; NaN and infinities are refused.
- bools: t T true True TRUE f F false False FALSE. Each token must be valid UTF-8.
- timestamps: int64 in the request's precision, converted to ns exactly (never through a float);
  a line without one gets `default_time_ns` truncated to that precision.
- blank lines, `#` comment lines, leading spaces and CRLF line ends are skipped.

Errors: one bad entry never spoils the others (InfluxDB's partial write). `parse` returns the good
points and one `LineError` per bad entry, naming the line and byte column of the problem as the Go
decoder does; `parse_strict` raises `DecodeError` for the first one instead. Duplicate field keys
are returned as written (the reference decoder does not merge them; the store keeps the last
value per series and time), a duplicate tag key keeps its last value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from greennanny.decoders.go_numbers import INT64_MAX, INT64_MIN, Range, Syntax, go_parse_float, go_parse_int
from greennanny.decoders.line_protocol_encode import encode, format_float  # the encoder, re-exported
from greennanny.errors import DecodeError

FieldType = Literal["float", "int", "uint", "string", "bool"]
FieldValue = float | int | str | bool


# Nanoseconds per unit. `1ns`..`1s` are the vectors' spelling (Go durations), n/u/ms/s/m/h the
# InfluxDB 1.x `/write?precision=` values.
PRECISION_NS: dict[str, int] = {
    **dict.fromkeys(("n", "ns", "1ns"), 1),
    **dict.fromkeys(("u", "us", "µs", "μs", "1us", "1µs", "1μs"), 1_000),
    **dict.fromkeys(("ms", "1ms"), 1_000_000),
    **dict.fromkeys(("s", "1s"), 1_000_000_000),
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


@dataclass(slots=True)
class LPPoint:
    """One entry: tags in the order written, fields as (key, type, value) in the order written.

    `line` (1-based, where the entry starts) and `span` (its byte range) tie a parsed point back
    to the text; they are not part of the point's value.
    """

    measurement: str
    tags: dict[str, str]
    fields: list[tuple[str, FieldType, FieldValue]]
    time_ns: int
    line: int = field(default=0, compare=False)
    span: tuple[int, int] = field(default=(0, 0), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class LineError:
    """A bad entry: where the problem is (line, byte column, byte offset), what it is, its bytes."""

    line: int
    column: int
    offset: int
    message: str
    raw: bytes  # the entry as sent, without its line end

    def __str__(self) -> str:
        return f"at line {self.line}:{self.column}: {self.message}"


@dataclass(slots=True)
class ParseResult:
    points: list[LPPoint]
    errors: list[LineError]


def precision_ns(precision: str) -> int:
    """Nanoseconds per timestamp unit; a clear error for a name that is not a precision."""
    try:
        return PRECISION_NS[precision.strip() or "ns"]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; use one of n, u, ms, s, m, h") from None


# -- tokens --------------------------------------------------------------------------------------
# A backslash before an escapable byte takes both; before anything else it is an ordinary byte.
_MEASUREMENT = re.compile(rb"(?:[^\\, \x00-\x1f\x7f]|\\[ ,]|\\(?![ ,]))*")
_KEY = re.compile(rb"(?:[^\\,= \x00-\x1f\x7f]|\\[,= ]|\\(?![,= ]))*")  # tag keys, tag values, field keys
_STRING = re.compile(rb'(?:[^"\\]|\\[\\"nrt]|\\(?![\\"nrt]))*')
_VALUE = re.compile(rb"[^, \r\n]*")
_TIME = re.compile(rb"[-0-9]*")
_SPACES = re.compile(rb" *")
_NOT_EOL = re.compile(rb"[^\r\n]*")
_COMMENT = re.compile(rb"[^\x00-\x1f\x7f]*")
_UNESC_MEASUREMENT = re.compile(rb"\\([ ,])")
_UNESC_KEY = re.compile(rb"\\([,= ])")
_UNESC_STRING = re.compile(rb'\\([\\"nrt])')
_STRING_ESCAPES = {b"\\": b"\\", b'"': b'"', b"n": b"\n", b"r": b"\r", b"t": b"\t"}
_BOOLS = {b"t": True, b"T": True, b"true": True, b"True": True, b"TRUE": True,
          b"f": False, b"F": False, b"false": False, b"False": False, b"FALSE": False}


class _Fail(Exception):
    """A bad entry: the error's byte offset, its message and where the decoder's read point is."""

    def __init__(self, pos: int, message: str, resume: int) -> None:
        super().__init__(message)
        self.pos, self.message, self.resume = pos, message, resume


def _end(pattern: re.Pattern[bytes], data: bytes, pos: int) -> int:
    """End of `pattern` matched at `pos` (every token pattern matches, possibly empty)."""
    m = pattern.match(data, pos)
    assert m is not None
    return m.end()


def _q(c: int) -> str:
    """A byte as Go's %q shows a rune: '\\t', '"'."""
    return "'\\''" if c == 0x27 else "'" + _goq(bytes([c]))[1:-1].replace('\\"', '"') + "'"


def _goq(raw: bytes) -> str:
    """Bytes as Go's %q shows them (strconv.Quote): error messages read like the reference's."""
    out = ['"']
    for ch in raw.decode("utf-8", "surrogateescape"):
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    return "".join(out) + '"'


def _token(data: bytes, start: int, end: int, unescape: Callable[[bytes], bytes]) -> str:
    raw = data[start:end]
    if b"\\" in raw:
        raw = unescape(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Fail(start, f"invalid utf-8 sequence in token {_goq(raw)}", end) from None


def _unesc_measurement(raw: bytes) -> bytes:
    return _UNESC_MEASUREMENT.sub(rb"\1", raw)


def _unesc_key(raw: bytes) -> bytes:
    return _UNESC_KEY.sub(rb"\1", raw)


def _unesc_string(raw: bytes) -> bytes:
    return _UNESC_STRING.sub(lambda m: _STRING_ESCAPES[m.group(1)], raw)


def _eol(data: bytes, pos: int) -> int | None:
    """Position after a line end (LF, CRLF, CR at end of input or end of input) at `pos`, else None."""
    if pos >= len(data):
        return pos
    c = data[pos]
    if c == 0x0A:
        return pos + 1
    if c == 0x0D and (pos + 1 == len(data) or data[pos + 1] == 0x0A):
        return pos + 2 if pos + 1 < len(data) else pos + 1
    return None


# -- numbers as Go's strconv reads them ----------------------------------------------------------
def _field_value(raw: bytes) -> tuple[FieldType, FieldValue]:
    """A number or bool field value; ValueError with the reference decoder's wording."""
    kind: FieldType
    try:
        if raw[:1] in b"tTfF":
            kind = "bool"
            if raw not in _BOOLS:
                raise ValueError(f"invalid bool value {_goq(raw)}")
            return kind, _BOOLS[raw]
        if raw.endswith(b"i"):
            kind = "int"
            return kind, go_parse_int(raw[:-1])
        if raw.endswith(b"u"):
            kind = "uint"
            return kind, go_parse_int(raw[:-1], signed=False)
        kind = "float"
        value = go_parse_float(raw)
    except Range:
        raise ValueError("line-protocol value out of range") from None
    except Syntax:
        word = {"int": "integer", "uint": "unsigned integer", "float": "float"}[kind]
        raise ValueError(f"invalid {word} value syntax") from None
    if not math.isfinite(value):
        raise ValueError(f"non-number {_goq(raw)} cannot be represented as a line-protocol field value")
    return kind, value


# -- the decoder ---------------------------------------------------------------------------------
def _tag_comma(data: bytes, pos: int) -> int:
    """Consume the comma after a measurement or tag value; a tag key must follow it."""
    if pos < len(data) and data[pos] == 0x2C:
        pos += 1
        if pos >= len(data):
            raise _Fail(pos, "expected tag key after comma; got end of input", pos)
        if data[pos] in (0x20, 0x0D, 0x0A):
            raise _Fail(pos, "expected tag key after comma; got white space instead", pos)
    return pos


def _entry(data: bytes, pos: int, unit: int, default_ns: int) -> tuple[LPPoint, int]:
    """One entry starting at `pos` -> (point, position after its line end)."""
    n = len(data)
    if data[pos] == 0x23:
        raise _Fail(pos, "invalid character found in comment line", pos)
    end = _end(_MEASUREMENT, data, pos)
    if end == pos:
        raise _Fail(pos, f"invalid character {_q(data[pos])} found at start of measurement name", pos)
    measurement = _token(data, pos, end, _unesc_measurement)
    pos = _tag_comma(data, end)
    tags: dict[str, str] = {}
    while not (pos < n and data[pos] == 0x20):
        end = _end(_KEY, data, pos)
        key = _token(data, pos, end, _unesc_key)
        if end >= n:
            raise _Fail(pos, "empty tag name", end)
        if end == pos or data[end] != 0x3D:
            what = f"expected '=' after tag key {_goq(key.encode())}, but got" if key else "expected tag key or field but found"
            raise _Fail(pos, f"{what} {_q(data[end])} instead", end)
        start = end + 1
        end = _end(_KEY, data, start)
        if end == start:
            raise _Fail(start, f"expected tag value after tag key {_goq(key.encode())}, but none found", start)
        tags[key] = _token(data, start, end, _unesc_key)
        if end >= n:
            pos = end
            break
        pos = _tag_comma(data, end)
    pos = _end(_SPACES, data, pos)
    fields: list[tuple[str, FieldType, FieldValue]] = []
    while True:
        end = _end(_KEY, data, pos)
        key = _token(data, pos, end, _unesc_key)
        if end == pos:
            if pos >= n:
                raise _Fail(pos, "expected field key but none found", pos)
            raise _Fail(pos, f"invalid character {_q(data[pos])} found at start of field key", pos)
        if end >= n or data[end] != 0x3D:
            found = "end of input" if end >= n else _q(data[end])
            raise _Fail(end, f"want '=' after field key {_goq(key.encode())}, found {found}", end)
        start = end + 1
        if start >= n:
            raise _Fail(start, "expected field value, found end of input", start)
        c = data[start]
        if c == 0x22:
            end = _end(_STRING, data, start + 1)
            if end >= n:
                raise _Fail(start, "expected closing quote for string field value, found end of input", end)
            fields.append((key, "string", _token(data, start + 1, end, _unesc_string)))
            end += 1
        elif c in b"tTfF-0123456789.":
            end = _end(_VALUE, data, start)
            try:
                fields.append((key, *_field_value(data[start:end])))
            except ValueError as exc:
                raise _Fail(start, f"cannot parse value for field key {_goq(key.encode())}: {exc}", end) from None
        else:
            raise _Fail(start, "field value has unrecognized type", start)
        if end >= n:
            return LPPoint(measurement, tags, fields, default_ns), n
        if data[end] == 0x2C:
            pos = end + 1
            continue
        if data[end] not in (0x20, 0x0D, 0x0A):
            raise _Fail(end, f"unexpected character {_q(data[end])} after field", end)
        break
    pos = _end(_SPACES, data, end)
    after = _eol(data, pos)
    if after is not None:
        return LPPoint(measurement, tags, fields, default_ns), after
    end = _end(_TIME, data, pos)
    stamp = data[pos:end]
    if end < n and data[end] not in (0x20, 0x0D, 0x0A):
        rest = _end(_NOT_EOL, data, end)
        raise _Fail(pos, f"invalid timestamp ({_goq(data[pos:rest])})", rest)
    tail = _end(_SPACES, data, end)
    after = _eol(data, tail)
    if after is None:
        rest = _end(_NOT_EOL, data, tail)
        raise _Fail(tail, f"unexpected text after timestamp ({_goq(data[tail:rest])})", rest)
    if not stamp:
        return LPPoint(measurement, tags, fields, default_ns), after
    try:
        ts = go_parse_int(stamp) * unit
        if not INT64_MIN <= ts <= INT64_MAX:
            raise Range
    except Range:
        raise _Fail(pos, "invalid timestamp: line-protocol value out of range", end) from None
    except Syntax:
        raise _Fail(pos, f"invalid timestamp: invalid syntax ({_goq(stamp)})", end) from None
    return LPPoint(measurement, tags, fields, ts), after


# Most lines (Telegraf's, a gateway's) are printable ASCII with no escapes and no string fields.
# Such a line is matched whole and split; anything else, and any line the fast path has a doubt
# about, goes through `_entry`, which alone reports errors.
_PLAIN = rb"[!#-+\--<>-\[\]-~]"  # printable ASCII but space , = " \\
_FAST_LINE = re.compile(
    rb"(" + _PLAIN.replace(b"#", b"$") + rb"(?:" + _PLAIN + rb"|=)*)"  # measurement: not '#' first, '=' allowed
    rb"((?:," + _PLAIN + rb"+=" + _PLAIN + rb"+)*) +"  # tags
    rb"(" + _PLAIN + rb"+=[-.0-9tTfF]" + _PLAIN + rb"*(?:," + _PLAIN + rb"+=[-.0-9tTfF]" + _PLAIN + rb"*)*)"  # fields
    rb"(?: +(-?[0-9]+))? *(?:\r?\n|\r?\Z)"
)


def _entry_fast(data: bytes, pos: int, unit: int, default_ns: int) -> tuple[LPPoint, int] | None:
    m = _FAST_LINE.match(data, pos)
    if m is None:
        return None
    measurement, tag_text, field_text, stamp = m.groups()
    tags: dict[str, str] = {}
    if tag_text:
        for pair in tag_text[1:].split(b","):
            k, _, v = pair.partition(b"=")
            tags[k.decode()] = v.decode()
    fields: list[tuple[str, FieldType, FieldValue]] = []
    try:
        for pair in field_text.split(b","):
            k, _, v = pair.partition(b"=")
            fields.append((k.decode(), *_field_value(v)))
        ts = default_ns if stamp is None else go_parse_int(stamp) * unit
    except (ValueError, Syntax, Range):
        return None
    if not INT64_MIN <= ts <= INT64_MAX:
        return None
    return LPPoint(measurement.decode(), tags, fields, ts), m.end()


def _skip_blank(data: bytes, pos: int) -> int:
    """Skip leading spaces, empty lines and comment lines; stop at a comment with control characters."""
    while True:
        pos = _end(_SPACES, data, pos)
        if pos >= len(data):
            return pos
        c = data[pos]
        if c == 0x23:
            after = _eol(data, _end(_COMMENT, data, pos))
            if after is None:
                return pos  # the entry parser reports the bad comment
            pos = after
        elif c in (0x0A, 0x0D):
            after = _eol(data, pos)
            if after is None:
                return pos  # a lone CR: the entry parser reports it
            pos = after
        else:
            return pos


class _Lines:
    """Byte offset -> (line, column), for offsets visited in increasing order."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.line = data, 0, 1

    def locate(self, pos: int) -> tuple[int, int]:
        if pos < self.pos:
            self.pos, self.line = 0, 1
        self.line += self.data.count(b"\n", self.pos, pos)
        self.pos = pos
        return self.line, pos - self.data.rfind(b"\n", 0, pos)


def parse(data: bytes, *, precision: str = "ns", default_time_ns: int) -> ParseResult:
    """Every entry of `data`: good ones as points, each bad one as a LineError (partial write)."""
    unit = precision_ns(precision)
    default_ns = default_time_ns // unit * unit  # Go truncates the default time to the precision
    if default_ns < INT64_MIN:
        default_ns += unit
    out = ParseResult([], [])
    lines = _Lines(data)
    n, pos = len(data), 0
    while True:
        pos = _skip_blank(data, pos)
        if pos >= n:
            return out
        start = pos
        try:
            point, pos = _entry_fast(data, start, unit, default_ns) or _entry(data, start, unit, default_ns)
        except _Fail as f:
            stop = data.find(b"\n", f.resume)
            end = n if stop < 0 else stop
            raw = data[start:end - 1] if end > start and data[end - 1] == 0x0D else data[start:end]
            line, column = lines.locate(f.pos)
            out.errors.append(LineError(line, column, f.pos, f.message, raw))
            pos = n if stop < 0 else stop + 1
            continue
        point.line = lines.locate(start)[0]
        point.span = (start, pos)
        out.points.append(point)


def parse_strict(data: bytes, *, precision: str = "ns", default_time_ns: int) -> list[LPPoint]:
    """All points, or DecodeError (reason `line_protocol`) naming the first bad line."""
    result = parse(data, precision=precision, default_time_ns=default_time_ns)
    if result.errors:
        e = result.errors[0]
        raise DecodeError(str(e), field=f"line {e.line}", offset=e.offset, reason="line_protocol")
    return result.points


__all__ = ["FieldType", "FieldValue", "LPPoint", "LineError", "ParseResult", "encode", "format_float", "parse",
           "parse_strict", "precision_ns"]
