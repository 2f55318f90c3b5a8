"""The InfluxDB store's line dialect and answer parsing, offline: every line it writes is read
back by the ingest parser (decoders/line_protocol.py, which follows the Go reference decoder) to
the same tags, a float `value` and the same instant."""

from __future__ import annotations

import math

import httpx
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from greennanny.decoders.line_protocol import parse
from greennanny.model import Batch, SeriesKey
from greennanny.store.influx_client import WriteAnswer, error_text, ident, literal
from greennanny.store.influx_lines import encode_rows, format_float, parse_series_key, series_prefix, tag_problem
from greennanny.store.influxdb import parse_go_duration

tag_text = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\"), min_size=1, max_size=12)


def test_whole_numbers_are_spelled_as_floats_never_as_integers() -> None:
    assert [format_float(x) for x in (25, 0, -0.0, 1e16, 2.5e-05, 24.6, 612)] == [
        "25.0", "0.0", "-0.0", "1e+16", "2.5e-05", "24.6", "612.0"]


@given(site=tag_text, zone=tag_text, device=tag_text,
       value=st.floats(allow_nan=False, allow_infinity=False), ts=st.integers(-(2**63) + 2, 2**63 - 2))
def test_every_line_reads_back_to_the_same_tags_float_value_and_time(site: str, zone: str, device: str,
                                                                     value: float, ts: int) -> None:
    key = SeriesKey(site, zone, device, "air_temperature")
    b = Batch.from_columns([key], np.zeros(1, np.int32), np.array([ts]), np.array([value]))
    (line,) = encode_rows(b, np.arange(1), [series_prefix(key)])
    result = parse(line.encode(), default_time_ns=0)
    assert not result.errors, (line, result.errors)
    (p,) = result.points
    assert p.measurement == "air_temperature" and p.tags == {"site": site, "zone": zone, "device": device}
    assert p.fields[0][:2] == ("value", "float") and p.fields[0][2] == value
    assert math.copysign(1, p.fields[0][2]) == math.copysign(1, value)  # -0.0 stays -0.0
    assert p.fields[1] == ("quality", "int", 0) and p.time_ns == ts
    measurement, tags = parse_series_key(line.split(" value=")[0])
    assert measurement == "air_temperature" and tags == {"site": site, "zone": zone, "device": device}


def test_tag_values_influx_1x_cannot_read_back_are_named() -> None:
    assert tag_problem("zone", "North Bay") is None
    assert "empty" in (tag_problem("zone", "") or "")
    assert "backslash" in (tag_problem("zone", "a\\") or "")
    assert "control" in (tag_problem("zone", "a\nb") or "")


def test_partial_write_answers_of_1x_and_2x() -> None:
    one_x = WriteAnswer(400, "partial write: points beyond retention policy dropped=3")
    two_x = WriteAnswer(500, "unexpected error writing points to database: partial write: points beyond "
                             "retention policy dropped=139")
    conflict = WriteAnswer(400, 'partial write: field type conflict: input field "value" on measurement "co2" is '
                                "type float, already exists as type integer dropped=2")
    assert (one_x.partial, one_x.beyond_retention, one_x.dropped) == (True, True, 3)
    assert (two_x.partial, two_x.beyond_retention, two_x.dropped) == (True, True, 139)
    assert (conflict.partial, conflict.beyond_retention, conflict.dropped) == (True, False, 2)
    assert WriteAnswer(204).ok and not WriteAnswer(400, "bad").partial
    assert error_text(httpx.Response(400, json={"error": "one"})) == "one"
    assert error_text(httpx.Response(500, json={"code": "internal error", "message": "two"})) == "two"
    assert error_text(httpx.Response(502, text="<html>bad gateway</html>")) == "<html>bad gateway</html>"


def test_influxql_quoting_and_durations() -> None:
    assert ident('a"b') == '"a\\"b"' and literal("it's") == "'it\\'s'" and literal("a\\b") == "'a\\\\b'"
    assert parse_go_duration("336h0m0s") == 14 * 86400 * 10**9
    assert parse_go_duration("1h30m0s") == 5400 * 10**9 and parse_go_duration("0s") == 0
