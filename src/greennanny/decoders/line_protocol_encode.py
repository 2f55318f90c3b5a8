"""Line protocol out: one point to one line that the parser (and Go's decoder) reads back unchanged.

Split from `decoders.line_protocol` (the parser) to keep each module small; `encode` is also
importable from there.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import TYPE_CHECKING

from greennanny.decoders.go_numbers import INT64_MAX, INT64_MIN, UINT64_MAX

if TYPE_CHECKING:
    from greennanny.decoders.line_protocol import FieldValue, LPPoint


_ESC_MEASUREMENT = str.maketrans({" ": "\\ ", ",": "\\,"})
_ESC_KEY = str.maketrans({" ": "\\ ", ",": "\\,", "=": "\\="})
_ESC_STRING = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _name(text: str, what: str) -> str:
    """Check a measurement, key or tag value can be written and read back unchanged."""
    if not text:
        raise ValueError(f"{what} is empty")
    if _CONTROL.search(text):
        raise ValueError(f"{what} {text!r} contains a control character")
    if text.endswith("\\"):
        raise ValueError(f"{what} {text!r} ends in a backslash, which cannot be read back")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {text!r} is not valid UTF-8") from None
    return text


def format_float(x: float) -> str:
    """Go's strconv.FormatFloat(x, 'g', -1, 64): shortest digits, exponent form below 1e-4 or from 1e6."""
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(x)).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    dp = len(digit_tuple) + int(exponent)  # position of the decimal point after the first digit
    nd, exp = len(digits), dp - 1
    out = "-" if sign else ""
    if exp < -4 or exp >= 6:  # shortest form: Go decides with precision 6
        out += digits[0] + ("." + digits[1:] if nd > 1 else "")
        return out + f"e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    whole = (digits[:dp] + "0" * (dp - nd)) if dp > 0 else "0"
    frac = "".join(digits[j] if 0 <= j < nd else "0" for j in range(dp, nd))
    return out + whole + ("." + frac if frac else "")


def _format_value(key: str, kind: str, value: FieldValue) -> str:
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"field {key!r}: {value!r} is not a finite float")
        return format_float(float(value))
    if kind in ("int", "uint"):
        lo, hi = (INT64_MIN, INT64_MAX) if kind == "int" else (0, UINT64_MAX)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"field {key!r}: {value!r} is not a {kind}64")
        return f"{value}{kind[0]}"
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"field {key!r}: {value!r} is not a bool")
        return "true" if value else "false"
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"field {key!r}: {value!r} is not a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"field {key!r}: string is not valid UTF-8") from None
        return '"' + value.translate(_ESC_STRING) + '"'
    raise ValueError(f"field {key!r}: unknown type {kind!r}")


def encode(point: LPPoint, *, precision: str = "ns") -> str:
    """One line (no line end) that `parse` reads back to `point`; ValueError if it cannot be written.

    Tags are written sorted by key (InfluxDB's canonical order, and what the Go encoder demands),
    fields in the order given, floats in Go's shortest form and the timestamp always, truncated
    toward zero to `precision` as the Go encoder does.
    """
    if point.measurement.startswith("#"):
        raise ValueError(f"measurement {point.measurement!r} starts with '#' and would be read as a comment")
    parts = [_name(point.measurement, "measurement").translate(_ESC_MEASUREMENT)]
    for k, v in sorted(point.tags.items()):
        parts.append(f",{_name(k, 'tag key').translate(_ESC_KEY)}={_name(v, f'tag {k!r} value').translate(_ESC_KEY)}")
    if not point.fields:
        raise ValueError("a point needs at least one field")
    values = [f"{_name(k, 'field key').translate(_ESC_KEY)}={_format_value(k, t, v)}" for k, t, v in point.fields]
    if not INT64_MIN <= point.time_ns <= INT64_MAX:
        raise ValueError(f"timestamp {point.time_ns} ns is outside the int64 range")
    from greennanny.decoders.line_protocol import precision_ns

    unit = precision_ns(precision)
    ts = abs(point.time_ns) // unit * (1 if point.time_ns >= 0 else -1)
    return f"{''.join(parts)} {','.join(values)} {ts}"
