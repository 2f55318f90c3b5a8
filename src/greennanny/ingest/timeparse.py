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

# The span of device times the node stores. Before 2000-01-01 is a clock that was never set (or
# a ms/s epoch read as ns); after 2262-04-11T23:47:16Z an int64 of nanoseconds, the batch and
# store column type, overflows, so such a stamp must never reach a batch.
Y2000_NS = 946_684_800 * 1_000_000_000
LATEST_NS = (1 << 63) - 1


_MINUTE_NS: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM" -> its epoch ns; a node sees a few minutes at a time
_DAY_S: dict[str, int] = {}  # "YYYY-MM-DD" -> its epoch seconds (only real dates get in)


def _utc_fast(s: str) -> int | None:
    """Epoch ns of the one shape network servers send (`YYYY-MM-DDTHH:MM:SS[.f]Z` or `+00:00`).

    Why: every uplink carries such a stamp, and `datetime` parsing was an eighth of its cost.
    The minute is looked up (messages of one minute share it), then seconds and fraction are
    added. Anything else (another offset, a leap second, a bad digit) returns None and takes
    the general path, which also words the error; the two agree on every input
    (tests/unit/test_timeparse.py).
    """
    n = len(s)
    if s.endswith("Z"):
        end = n - 1
    elif s.endswith("+00:00"):
        end = n - 6
    else:
        return None
    if end < 19 or s[16] != ":":
        return None
    minute_ns = _MINUTE_NS.get(s[:16])
    if minute_ns is None:
        minute_ns = _minute_ns(s[:16])
        if minute_ns is None:
            return None
        if len(_MINUTE_NS) > 4096:
            _MINUTE_NS.clear()
        _MINUTE_NS[s[:16]] = minute_ns
    sec = s[17:19]
    if not (sec.isascii() and sec.isdigit()) or sec > "59":
        return None
    frac_ns = 0
    if end > 19:
        digits = s[20:end]
        if s[19] != "." or not digits or not (digits.isascii() and digits.isdigit()):
            return None
        frac_ns = int((digits + "000000000")[:9])
    return minute_ns + int(sec) * 1_000_000_000 + frac_ns


def _minute_ns(m: str) -> int | None:
    """Epoch ns of `YYYY-MM-DDTHH:MM` (exactly that shape, a real date), else None.

    The day is looked up too: a queue drained after an outage or a backfill holds a new minute
    in almost every message, and building a `datetime` for each was a tenth of an uplink's cost.
    """
    if m[4] != "-" or m[7] != "-" or m[10] != "T" or m[13] != ":":
        return None
    digits = m[:4] + m[5:7] + m[8:10] + m[11:13] + m[14:16]
    if not (digits.isascii() and digits.isdigit()):
        return None
    hh, mm = int(m[11:13]), int(m[14:16])
    if hh > 23 or mm > 59:
        return None
    day_s = _DAY_S.get(m[:10])
    if day_s is None:
        try:
            d = datetime(int(m[:4]), int(m[5:7]), int(m[8:10]), tzinfo=UTC)
        except ValueError:
            return None
        day_s = int((d - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
        if len(_DAY_S) > 4096:
            _DAY_S.clear()
        _DAY_S[m[:10]] = day_s
    return (day_s + hh * 3600 + mm * 60) * 1_000_000_000


def iso_to_ns(text: str, *, field: str = "time") -> int:
    """RFC 3339 text to epoch ns, keeping all nine fractional digits."""
    fast = _utc_fast(text)
    return fast if fast is not None else _iso_general(text, field)


def _iso_general(text: str, field: str) -> int:
    """Any ISO 8601 text `datetime.fromisoformat` reads, naive taken as UTC."""
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
