"""Line protocol on MQTT (format `line_protocol`): one message, many lines, many devices.

The payload is InfluxDB line protocol with nanosecond timestamps, as Telegraf's `mqtt` output
or a gateway writes it. Each line maps to series keys by these rules, which the HTTP `/write`
endpoint shares through `points_from_lines` (one mapping, two transports):

- site: tag `site`, else the node's site; zone: tag `zone`, else the default zone (`default`);
- device: tag `device`, else tag `host` (Telegraf puts it on every metric), else the measurement;
- quantity: the field key when it is a canonical quantity
  (`greenhouse,device=probe-1 air_temperature=21.5,relative_humidity=63`), or the measurement when
  the measurement is a canonical quantity and the field key is `value` (`co2,device=probe-1 value=612i`).
  Other fields are not stored; they are listed in `Handled.unmapped` as `measurement.field`;
- value: ints, uints and floats as numbers, bools as 1/0, strings that hold a number ("21.5") as
  that number; any other string becomes a missing value whose reason names the field
  (decoders/values.py, the rule every envelope uses);
- time: the line's timestamp, else the time the message was received. A line stamped before
  2000-01-01 is kept aside as `quarantined` (`keep_aside_unset_clock`), the rest of the message is
  stored: a device whose clock is not set, or a ms/s epoch written without a precision, which
  InfluxDB reads as ns and files in 1970 (field fault BR-15). A point at ts 0 would also mean "the
  message's time" to the pipeline and silently move;
- a `/` in a site, zone or device name becomes `_`, because `/` separates the parts of a series key.

A bad line does not spoil the others: it becomes a `Handled.rejected` fragment (its bytes, reason
`line_protocol`, detail `line N: <problem>`) while the good lines are stored. A message with no
usable point at all raises `DecodeError` naming the lines (reason `line_protocol` when no line
parses, `no_known_quantity` when lines parse but no field maps).
"""

from __future__ import annotations

import hashlib

from greennanny.decoders.line_protocol import LineError, LPPoint, ParseResult, parse
from greennanny.decoders.values import coerce_value
from greennanny.errors import DecodeError
from greennanny.ingest.envelope import Handled
from greennanny.ingest.timeparse import Y2000_NS
from greennanny.model import QUANTITIES, Outcome, Point, SeriesKey, Uplink

Rejected = tuple[bytes, str, str]


def _name(text: str) -> str:
    return text.replace("/", "_")


def quantity_of(lp: LPPoint, field_key: str) -> str | None:
    """The canonical quantity a field of this line maps to, or None."""
    if field_key in QUANTITIES:
        return field_key
    if field_key == "value" and lp.measurement in QUANTITIES:
        return lp.measurement
    return None


def points_from_lines(
    result: ParseResult, default_site: str, default_zone: str
) -> tuple[list[Point], list[str], list[Rejected]]:
    """(points with full keys, unmapped `measurement.field` names, a rejected fragment per bad line)."""
    points: list[Point] = []
    unmapped: dict[str, None] = {}
    for lp in result.points:
        site = _name(lp.tags.get("site") or default_site)
        zone = _name(lp.tags.get("zone") or default_zone)
        device = _name(lp.tags.get("device") or lp.tags.get("host") or lp.measurement)
        for key, _kind, raw in lp.fields:
            quantity = quantity_of(lp, key)
            if quantity is None:
                unmapped.setdefault(f"{lp.measurement}.{key}")
                continue
            value, quality, reason = coerce_value(key, raw, quantity)
            points.append(Point(SeriesKey(site, zone, device, quantity), lp.time_ns, value, quality, reason))
    rejected = [(e.raw, "line_protocol", describe(e)) for e in result.errors]
    return points, list(unmapped), rejected


def keep_aside_unset_clock(result: ParseResult, payload: bytes) -> tuple[ParseResult, list[Rejected]]:
    """`result` without the lines stamped before 2000-01-01, and one `quarantined` fragment per such line.

    One rule for MQTT and `/write`: nothing is ever stored at a 1970 time, while the good lines
    of the same message still are.
    """
    early = [lp for lp in result.points if lp.time_ns < Y2000_NS]
    if not early:
        return result, []
    aside: list[Rejected] = []
    for lp in early:
        why = "device clock not set?" if lp.time_ns == 0 else \
            "device clock not set, or a ms/s timestamp written without its precision?"
        aside.append((payload[lp.span[0]:lp.span[1]].rstrip(b"\r\n"), "quarantined",
                      f"line {lp.line}: timestamp {lp.time_ns} ns is before 2000-01-01 ({why})"))
    return ParseResult([lp for lp in result.points if lp.time_ns >= Y2000_NS], result.errors), aside


def describe(e: LineError) -> str:
    """`line N: <problem>`, the detail of a bad line's dead letter."""
    return f"line {e.line}: {e.message} (column {e.column})"


def line_list(numbers: list[int], limit: int = 10) -> str:
    """`1, 2, 5` or `1, 2, ... (25 lines)`: a message names the lines without growing unbounded."""
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown if len(numbers) <= limit else f"{shown}, ... ({len(numbers)} lines)"


def no_point_error(result: ParseResult, unmapped: list[str]) -> DecodeError:
    """Why a message gave no point at all, naming the lines; the caller decides to raise it."""
    bad = "; ".join(describe(e) for e in result.errors[:10])
    if len(result.errors) > 10:
        bad += f"; ... ({len(result.errors)} bad lines)"
    if not result.points:
        if not result.errors:
            return DecodeError("payload holds no line protocol line (empty or only comments)",
                               field="payload", reason="line_protocol")
        first = result.errors[0]
        return DecodeError(f"no valid line protocol line: {bad}", field=f"line {first.line}",
                           offset=first.offset, reason="line_protocol")
    lines = line_list(sorted({p.line for p in result.points}))
    fields = ", ".join(unmapped[:10]) + (", ..." if len(unmapped) > 10 else "")
    msg = (f"no field of line(s) {lines} maps to a known quantity (fields {fields}); name a field after a "
           f"quantity such as air_temperature, relative_humidity or co2, or write `<quantity> value=...`")
    return DecodeError(msg + (f"; bad lines: {bad}" if bad else ""), field="fields", reason="no_known_quantity")


class LineProtocolTopic:
    """MQTT envelope for line protocol payloads (ns precision); see the module docstring."""

    name = "line_protocol"

    def __init__(self, default_site: str, default_zone: str = "default") -> None:
        self.default_site = default_site
        self.default_zone = default_zone

    def handle(self, up: Uplink) -> Handled:
        result, aside = keep_aside_unset_clock(parse(up.payload, precision="ns", default_time_ns=up.received_ns),
                                               up.payload)
        points, unmapped, rejected = points_from_lines(result, self.default_site, self.default_zone)
        rejected += aside
        if not points:
            if aside and not result.points:
                more = f"; ... ({len(aside)} lines)" if len(aside) > 10 else ""
                raise DecodeError("; ".join(detail for _, _, detail in aside[:10]) + more, field="timestamp",
                                  reason="quarantined")
            raise no_point_error(result, unmapped)
        h = Handled(Outcome.STORED, self.name, site=self.default_site, zone=self.default_zone, ts_ns=up.received_ns)
        h.dedup_key = "lp:" + hashlib.blake2b(up.topic.encode() + b"\0" + up.payload, digest_size=10).hexdigest()
        h.points, h.unmapped, h.rejected = points, unmapped, rejected
        h.detail = f"{len(result.points)} lines, {len(points)} points, {len(rejected)} rejected"
        return h
