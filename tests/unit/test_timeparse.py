"""The fast RFC 3339 path agrees with the general `datetime` path on every input it takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greennanny.errors import DecodeError
from greennanny.ingest.timeparse import _iso_general, _utc_fast, iso_to_ns

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 12, 31)),
       st.integers(0, 999_999_999), st.integers(0, 9), st.sampled_from(["Z", "+00:00"]))
def test_fast_path_equals_the_general_path(dt: datetime, frac: int, digits: int, tail: str) -> None:
    frac_text = f"{frac:09d}"[:digits]
    text = dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac_text}" if digits else "") + tail
    want = _iso_general(text, "time")
    assert _utc_fast(text) == want
    expect_s = int((dt.replace(tzinfo=UTC, microsecond=0) - EPOCH) / timedelta(seconds=1))
    assert want == expect_s * 1_000_000_000 + (int((frac_text + "000000000")[:9]) if digits else 0)


@pytest.mark.parametrize("text", [
    "2026-01-01T00:00:00+01:00",  # another offset: general path
    "2026-01-01 00:00:00Z",  # space separator
    "2026-02-30T00:00:00Z",  # no such day
    "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2016-12-31T23:59:60Z",  # leap second
    "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00,5Z", "2026-01-01T0٣:00:00Z", "２026-01-01T00:00:00Z",
    " 2026-01-01T00:00:00Z",
    "2026-01-01T00:00:x0Z", "2026-01-01T00:00:٣0Z", "2026-01-01T00:00:99Z",  # bad seconds after a good minute
])
def test_other_shapes_leave_the_fast_path_and_get_the_general_answer(text: str) -> None:
    assert _utc_fast(text) is None
    try:
        want: int | str = _iso_general(text, "time")
    except DecodeError as exc:
        want = str(exc)
    try:
        got: int | str = iso_to_ns(text)
    except DecodeError as exc:
        got = str(exc)
    assert got == want


def test_chirpstack_time_with_nine_digits_keeps_every_nanosecond() -> None:
    assert iso_to_ns("2024-03-10T10:00:48.123456789Z") == 1_710_064_848_123_456_789
    assert iso_to_ns("2024-03-10T10:00:48.123456789+00:00") == 1_710_064_848_123_456_789
