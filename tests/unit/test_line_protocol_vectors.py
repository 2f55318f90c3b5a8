"""The shared line protocol corpus (influxdata/line-protocol's own cases) through our parser and
encoder, compared exactly: big integers as integers, floats bit for bit, nanoseconds to the unit,
and for a rejected input the line, column and wording the Go decoder gives.

The vectors are read from the shared folder beside the repository, never copied here; the module
skips where that folder is absent. No vector is expected to fail (XFAIL is empty): one that cannot
pass goes there with the reason, never silently skipped.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.shared_paths import SHARED_DIR

from greennanny.decoders.line_protocol import LPPoint, encode, parse, parse_strict
from greennanny.errors import DecodeError

VECTORS = SHARED_DIR / "vectors" / "line_protocol.json"
if not VECTORS.is_file():
    pytest.skip(f"shared vectors not found at {VECTORS}", allow_module_level=True)
CASES: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="utf-8"))["vectors"]
XFAIL: dict[str, str] = {}  # vector id -> why it cannot pass
PY_TYPE = {"float": float, "int": int, "uint": int, "string": str, "bool": bool}


def _point(p: dict[str, Any]) -> LPPoint:
    """A vector's point; float values the JSON wrote as integers (`11`) become floats."""
    fields = [(k, f["type"], float(f["value"]) if f["type"] == "float" else f["value"]) for k, f in p["fields"]]
    return LPPoint(p["measurement"], dict(p["tags_in_order"]), fields, p["time_ns"])


def _check_same(got: LPPoint, want: dict[str, Any]) -> None:
    assert (got.measurement, got.tags, got.time_ns) == (want["measurement"], want["tags"], want["time_ns"])
    # The corpus lists tags as written or sorted by key: ours, in the order written, match one of those.
    items = [list(t) for t in got.tags.items()]
    assert want["tags_in_order"] in (items, sorted(items))
    assert got.fields == _point(want).fields
    for (_, kind, value), (_, spec) in zip(got.fields, want["fields"], strict=True):
        assert kind == spec["type"] and type(value) is PY_TYPE[kind], (kind, value)


def _reference(text: str) -> tuple[int | None, int | None, str]:
    """(line, column, message) of the Go decoder's error text, without its `cannot get ...:` prefixes."""
    text = re.sub(r"^(cannot get [^:]*: )+", "", text)
    m = re.match(r"at line (\d+):(\d+): (.*)\Z", text, re.DOTALL)
    return (int(m[1]), int(m[2]), m[3]) if m else (None, None, text)


def _decode(v: dict[str, Any]) -> None:
    data = v["input"].encode("utf-8") if v["input"] is not None else base64.b64decode(v["input_base64"])
    result = parse(data, precision=v["precision"], default_time_ns=v["default_time_ns"])
    if v["expected_error"]:
        assert result.errors, f"accepted input the corpus rejects: {result.points}"
        line, column, message = _reference(v["error_text_reference"])
        first = result.errors[0]
        assert first.message == message
        if line is not None:
            assert (first.line, first.column) == (line, column)
        with pytest.raises(DecodeError) as err:
            parse_strict(data, precision=v["precision"], default_time_ns=v["default_time_ns"])
        assert err.value.reason == "line_protocol" and err.value.offset == first.offset
        assert err.value.field == f"line {first.line}"
        return
    assert result.errors == []
    assert len(result.points) == len(v["expected_points"])
    for got, want in zip(result.points, v["expected_points"], strict=True):
        _check_same(got, want)


def _encode(v: dict[str, Any]) -> None:
    point = _point(v["point"])
    if v["expected_error"]:
        with pytest.raises(ValueError):
            encode(point, precision=v["precision"])
        return
    line = encode(point, precision=v["precision"])
    assert line == v["expected_line"]  # same float text and tag order as the Go encoder
    back = parse(line.encode("utf-8"), precision=v["precision"], default_time_ns=0)
    assert back.errors == [] and back.points == [point]


@pytest.mark.parametrize(
    "vector",
    [pytest.param(v, id=f"{v['kind']}-{v['id']}",
                  marks=[pytest.mark.xfail(reason=XFAIL[v["id"]], strict=True)] if v["id"] in XFAIL else [])
     for v in CASES],
)
def test_vector(vector: dict[str, Any]) -> None:
    (_decode if vector["kind"] == "decode" else _encode)(vector)


def test_a_bad_line_spoils_only_itself() -> None:
    """Partial write: the lines around a bad one are points; the bad one is an error with its bytes."""
    data = b"cpu value=42 1\r\ncpu value=invalid 2\r\n\n# note\ncpu value=43 3\n"
    result = parse(data, default_time_ns=0)
    assert [(p.fields[0][2], p.time_ns, p.line) for p in result.points] == [(42.0, 1, 1), (43.0, 3, 5)]
    [bad] = result.errors
    assert (bad.line, bad.column, bad.offset, bad.raw) == (2, 11, 26, b"cpu value=invalid 2")
    assert str(bad) == "at line 2:11: field value has unrecognized type"


_NAME = st.text(min_size=1, max_size=8).filter(
    lambda s: not s.endswith("\\") and all(" " <= c != "\x7f" and not "\ud800" <= c <= "\udfff" for c in s))
_VALUE = st.one_of(
    st.tuples(st.just("float"), st.floats(allow_nan=False, allow_infinity=False)),
    st.tuples(st.just("int"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("uint"), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("bool"), st.booleans()),
    st.tuples(st.just("string"), st.text(max_size=8).filter(lambda s: not any("\ud800" <= c <= "\udfff" for c in s))),
)


@settings(max_examples=300, deadline=None)
@given(_NAME.filter(lambda s: not s.startswith("#")), st.dictionaries(_NAME, _NAME, max_size=3),
       st.lists(st.tuples(_NAME, _VALUE), min_size=1, max_size=3), st.integers(-(2**63), 2**63 - 1))
def test_encode_reads_back_exactly(measurement: str, tags: dict[str, str],
                                   fields: list[tuple[str, tuple[str, Any]]], ts: int) -> None:
    """What the InfluxDB store backend will write must parse back to the same point, escapes and all."""
    point = LPPoint(measurement, tags, [(k, kind, v) for k, (kind, v) in fields], ts)
    line = encode(point)
    result = parse((line + "\n" + line).encode("utf-8"), default_time_ns=0)
    assert result.errors == [] and result.points == [point, point]
