"""Line protocol as the InfluxDB store writes it: one line per reading, nothing left to the server.

    <quantity>,device=<device>,site=<site>,zone=<zone> value=<float>,quality=<uint8>i <ts ns>

- The field `value` is always a float and always spelled as one (`25.0`, `1e+16`; Python's
  `repr`), never `25i` and never a bare `25`: the first write fixes a field's type in InfluxDB, so
  a whole-number reading written as an integer would make every later 24.6 a type conflict (BR-12).
- `quality` is always an integer (our uint8 code), so its type never depends on the value either;
  every line carries it, so a replacement row at the same instant never inherits an old flag.
- Measurement and tags are escaped the 1.x way: `,` and space in the measurement; `,`, `=` and
  space in tag keys and values, with a backslash and never quotes (BR-16). A tag value that 1.x
  cannot read back (empty, a backslash, a control character) is refused here, not sent.
- Timestamps are int64 ns written from Python ints (never through a float) and the request says
  `precision=ns` (BR-15).

This is not the ingest parser (decoders/line_protocol.py reads anyone's line protocol); this is
the one dialect the store writes, kept beside its only user.
"""

from __future__ import annotations

import re

import numpy as np

from greennanny.model import Batch, SeriesKey

# InfluxDB 1.x accepts times in [MinNanoTime, MaxNanoTime] (models/points.go).
MIN_NANO_TIME = -(2**63) + 2
MAX_NANO_TIME = 2**63 - 2

_ESC_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_ESC_TAG = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_UNREADABLE = re.compile(r"[\\\x00-\x1f\x7f]")


def tag_problem(name: str, value: str) -> str | None:
    """Why `value` cannot be written as tag `name` and read back unchanged, or None."""
    if not value:
        return f"tag {name} is empty (InfluxDB drops empty tags)"
    if _UNREADABLE.search(value):
        return f"tag {name}={value!r} has a backslash or control character, which InfluxDB 1.x cannot read back"
    return None


def series_prefix(key: SeriesKey) -> str:
    """`measurement,tags ` of a key (tags sorted by key: InfluxDB's canonical order)."""
    return (
        key.quantity.translate(_ESC_MEASUREMENT)
        + ",device=" + key.device.translate(_ESC_TAG)
        + ",site=" + key.site.translate(_ESC_TAG)
        + ",zone=" + key.zone.translate(_ESC_TAG)
        + " "
    )


def format_float(x: float) -> str:
    """A finite float spelled so InfluxDB reads a float: always a decimal point or an exponent."""
    text = repr(float(x))
    assert "." in text or "e" in text, text  # repr of a finite float always has one
    return text


def encode_rows(batch: Batch, rows: np.ndarray, prefixes: list[str]) -> list[str]:
    """The lines of `rows` of `batch`; `prefixes[i]` is `series_prefix(batch.keys[i])`.

    Values must be finite and timestamps in range (the caller sets the others aside first).
    """
    idx = batch.key_index[rows].tolist()
    values = batch.value[rows].tolist()  # Python floats: repr gives '25.0', not np.float64(25.0)
    quality = batch.quality[rows].tolist()
    ts = batch.ts_ns[rows].tolist()  # Python ints, exact
    return [
        f"{prefixes[k]}value={format_float(v)},quality={q}i {t}"
        for k, v, q, t in zip(idx, values, quality, ts, strict=True)
    ]


def parse_series_key(text: str) -> tuple[str, dict[str, str]]:
    """`measurement,k=v,...` as SHOW SERIES prints it -> (measurement, tags), escapes undone."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in ", =":
            cur.append("\\" + text[i + 1])  # keep escaped for the split on '=' below
            i += 2
            continue
        if c == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    measurement = _unescape(parts[0])
    tags: dict[str, str] = {}
    for part in parts[1:]:
        k, v = _split_unescaped_eq(part)
        tags[_unescape(k)] = _unescape(v)
    return measurement, tags


def _split_unescaped_eq(part: str) -> tuple[str, str]:
    i = 0
    while i < len(part):
        if part[i] == "\\":
            i += 2
            continue
        if part[i] == "=":
            return part[:i], part[i + 1:]
        i += 1
    return part, ""


def _unescape(text: str) -> str:
    return re.sub(r"\\([, =])", r"\1", text)
