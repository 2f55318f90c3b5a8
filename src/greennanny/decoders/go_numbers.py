"""Numbers as Go's strconv reads them, for the line-protocol parser (`decoders.line_protocol`).

Why Go's rules: the shared vectors are the corpus of influxdata's Go decoder, and InfluxDB and
Telegraf are Go: an int out of int64 range, a float with `_` in the wrong place or a hex float
must be accepted or refused exactly as they are there.
"""

from __future__ import annotations

import math
import re

INT64_MIN, INT64_MAX, UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1


class Syntax(Exception):
    """Not a number in Go's grammar (strconv.ErrSyntax)."""


class Range(Exception):
    """A number outside the type's range (strconv.ErrRange)."""


def go_parse_int(text: bytes, *, signed: bool = True) -> int:
    """strconv.ParseInt/ParseUint(text, 10, 64): the first problem met, scanning left to right, wins."""
    if 0 < len(text) < 19 and (text.isdigit() or (signed and text[:1] == b"-" and text[1:].isdigit())):
        return int(text)  # the common case, exact and in range
    neg = False
    digits = text
    if signed and digits[:1] in (b"+", b"-"):
        neg, digits = digits[:1] == b"-", digits[1:]
    if not digits:
        raise Syntax
    n = 0
    for c in digits:
        if not 0x30 <= c <= 0x39:
            raise Syntax
        n = n * 10 + c - 0x30
        if n > UINT64_MAX:
            raise Range
    if signed:
        n = -n if neg else n
        if not INT64_MIN <= n <= INT64_MAX:
            raise Range
    return n


_PLAIN_FLOAT = re.compile(rb"-?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_DEC_FLOAT = re.compile(r"[+-]?([0-9_]*(?:\.[0-9_]*)?)(?:[eE][+-]?[0-9][0-9_]*)?")
_HEX_FLOAT = re.compile(r"[+-]?0[xX]([0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?)[pP][+-]?[0-9][0-9_]*")


def _underscore_ok(s: str) -> bool:
    """Go's underscoreOK: `_` only between digits (a base prefix counts as a digit)."""
    saw, i, hexa = "^", 0, False
    if s[:1] in ("+", "-"):
        s = s[1:]
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i, saw, hexa = 2, "0", s[1].lower() == "x"
    for ch in s[i:]:
        if ch.isdigit() or (hexa and ch.lower() in "abcdef"):
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
    return saw != "_"


def go_parse_float(text: bytes) -> float:
    """strconv.ParseFloat(text, 64): correctly rounded; a finite literal too large raises Range."""
    if _PLAIN_FLOAT.fullmatch(text):
        value = float(text)  # the common case: correctly rounded, like Go
        if math.isinf(value):
            raise Range
        return value
    try:
        s = text.decode("ascii")
    except UnicodeDecodeError:
        raise Syntax from None
    body = s[1:] if s[:1] in ("+", "-") else s
    if body.lower() in ("inf", "infinity") or s.lower() == "nan":
        return float(s.lower().replace("infinity", "inf"))
    hexa = len(body) > 2 and body[0] == "0" and body[1] in "xX"
    m = (_HEX_FLOAT if hexa else _DEC_FLOAT).fullmatch(s)
    if m is None or not any(ch not in "._" for ch in m.group(1)):
        raise Syntax
    if "_" in s and not _underscore_ok(s):
        raise Syntax
    clean = s.replace("_", "")
    try:
        value = float.fromhex(clean) if hexa else float(clean)
    except OverflowError:
        raise Range from None
    if math.isinf(value):
        raise Range
    return value
