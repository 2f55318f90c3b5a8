"""Timestamps as devices send them -> UTC epoch nanoseconds, never through a float.

Accepted: RFC 3339 / ISO 8601 text with an offset (naive text is taken as UTC), and epoch numbers
in seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude (a reading from
2001-2286 in one unit cannot be mistaken for another).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from greennanny.errors import DecodeError

_FRACTION = re.compile(r"^(?P<head>[^.]+)\.(?P<frac>\d+)(?P<tail>.*)$")


def iso_to_ns(text: str, *, field: str = "time") -> int:
    """RFC 3339 text to epoch ns, keeping all nine fractional digits."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    frac_ns = 0
    m = _FRACTION.match(s)
    if m:
        digits = m.group("frac")
        frac_ns = int((digits + "000000000")[:9])
        s = m.group("head") + m.group("tail")
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise DecodeError(f"{field}={text!r} is not an ISO 8601 timestamp", field=field, reason="bad_timestamp") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    secs = int((dt - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    return secs * 1_000_000_000 + frac_ns


def epoch_to_ns(value: float | str, *, field: str = "ts") -> int:
    """An epoch number in s, ms, us or ns (by magnitude) to ns, exactly for integers."""
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise DecodeError(f"{field}={value!r} is not a number", field=field, reason="bad_timestamp") from None
    if not d.is_finite():
        raise DecodeError(f"{field}={value!r} is not finite", field=field, reason="bad_timestamp")
    a = abs(d)
    if a < Decimal(10) ** 11:  # seconds until year 5138
        scale = 10**9
    elif a < Decimal(10) ** 14:  # milliseconds
        scale = 10**6
    elif a < Decimal(10) ** 17:  # microseconds
        scale = 10**3
    else:
        scale = 1
    return int(d * scale)


def any_to_ns(value: object, *, field: str = "ts") -> int:
    if isinstance(value, bool) or value is None:
        raise DecodeError(f"{field}={value!r} is not a timestamp", field=field, reason="bad_timestamp")
    if isinstance(value, (int, float)):
        return epoch_to_ns(value, field=field)
    if isinstance(value, str):
        if re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value):
            return epoch_to_ns(value, field=field)
        return iso_to_ns(value, field=field)
    raise DecodeError(f"{field}={value!r} is not a timestamp", field=field, reason="bad_timestamp")
