"""Malformed Milesight frames raise DecodeError naming the byte offset; readings are canonical.

Truncated frames are cut from real vectors in ../shared/vectors (read in place, skipped without
the folder); the fuzz tests need no files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greennanny.decoders.base import Decoded, Reading
from greennanny.decoders.milesight import TABLES, MilesightDecoder
from greennanny.errors import DecodeError
from greennanny.model import Quality

REQUIRED = ("EM300-TH", "EM320-TH", "AM307", "AM308", "EM500-CO2")
VECTORS_FILE = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "milesight.json"
DECODER = MilesightDecoder()


@pytest.fixture(scope="module")
def vectors() -> dict[str, dict[str, Any]]:
    if not VECTORS_FILE.is_file():
        pytest.skip(f"shared vectors not found at {VECTORS_FILE}")
    data = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    return {v["id"]: v for v in data["vectors"]}


def decode_vector(vectors: dict[str, dict[str, Any]], vector_id: str) -> Decoded:
    v = vectors[vector_id]
    return DECODER.decode(bytes.fromhex(v["payload_hex"]), model=v["device"])


# (model, vector, bytes kept, offset of the cut channel's data, channel named in the message)
TRUNCATIONS = [
    # 01755C 0367|34 -- temperature record at byte 3, its data at 5: one of two bytes left
    ("EM300-TH", "ms-030", 6, 5, "channel 0x03 type 0x67 (temperature) needs 2 bytes"),
    # 20CE|9E74466310015D minus its last byte: the 7-byte EM320-TH history record has 6
    ("EM320-TH", "ms-029", 8, 2, "channel 0x20 type 0xce (history) needs 7 bytes"),
    # 0367EE00 04687C 050001 06CB02 077D|A8 -- CO2 at byte 13, data at 15
    ("AM307", "ms-016", 16, 15, "channel 0x07 type 0x7d (co2) needs 2 bytes"),
    # 20CE + 19 of the 20 bytes of an AM308 history record (an AM307 record would be 16)
    ("AM308", "ms-074", 21, 2, "channel 0x20 type 0xce (history) needs 20 bytes"),
    # 017564 03671901 046873 057D6704 0673|68 -- pressure at byte 14, data at 16
    ("EM500-CO2", "ms-027", 17, 16, "channel 0x06 type 0x73 (pressure) needs 2 bytes"),
]


@pytest.mark.parametrize(("model", "vector_id", "keep", "offset", "text"), TRUNCATIONS)
def test_truncated_frame_names_the_cut_channel_and_its_offset(
    vectors: dict[str, dict[str, Any]],
    model: str,
    vector_id: str,
    keep: int,
    offset: int,
    text: str,
) -> None:
    v = vectors[vector_id]
    assert v["device"] == model
    payload = bytes.fromhex(v["payload_hex"])[:keep]
    with pytest.raises(DecodeError) as caught:
        DECODER.decode(payload, model=model)
    err = caught.value
    assert err.offset == offset
    message = str(err)
    assert "offset" in message and f"offset {offset}" in message
    assert text in message
    assert f"frame ends at byte {keep}" in message
    assert f"{keep - offset} left" in message


def test_frame_ending_after_a_channel_id_names_the_missing_type_byte() -> None:
    with pytest.raises(DecodeError) as caught:
        DECODER.decode(bytes.fromhex("01755C03"), model="EM300-TH")
    assert caught.value.offset == 4
    assert "channel 0x03 at offset 3" in str(caught.value)


def test_unknown_channel_names_channel_type_and_offset() -> None:
    with pytest.raises(DecodeError) as caught:
        DECODER.decode(bytes.fromhex("01755C99AA00"), model="EM300-TH")
    err = caught.value
    assert (err.field, err.offset) == ("channel", 3)
    assert "channel 0x99 type 0xaa at offset 3" in str(err)


def test_pair_from_another_model_is_unknown_here() -> None:
    """`07 7D` (CO2) is not an EM300-TH channel: that frame is rejected, not half-stored."""
    frame = bytes.fromhex("0367EE00077DA803")
    assert DECODER.decode(frame, model="AM307").object["co2"] == 936
    with pytest.raises(DecodeError) as caught:
        DECODER.decode(frame, model="EM300-TH")
    assert caught.value.offset == 4


@pytest.mark.parametrize("model", REQUIRED)
def test_empty_payload(model: str) -> None:
    with pytest.raises(DecodeError) as caught:
        DECODER.decode(b"", model=model)
    assert caught.value.offset == 0


@pytest.mark.parametrize("model", [None, "", "EM300-XX", "UC300"])
def test_unknown_model(model: str | None) -> None:
    with pytest.raises(DecodeError) as caught:
        DECODER.decode(bytes.fromhex("01755C"), model=model)
    assert caught.value.field == "model"


def check_any_outcome(payload: bytes, model: str) -> None:
    """Any bytes either decode into well-formed readings or raise DecodeError, nothing else."""
    try:
        decoded = DECODER.decode(payload, model=model)
    except DecodeError as err:
        assert err.offset is not None or err.field == "model"
        return
    for r in decoded.readings:
        assert isinstance(r, Reading)
        assert r.ts_ns is None or type(r.ts_ns) is int
        assert math.isnan(r.value) == (r.quality is Quality.MISSING)
        assert (r.reason is None) == (r.quality is Quality.OK)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("model", REQUIRED)
@FUZZ
@given(payload=st.binary(max_size=64))
def test_random_bytes_raise_only_decode_error(model: str, payload: bytes) -> None:
    check_any_outcome(payload, model)


def frames(model: str) -> st.SearchStrategy[bytes]:
    """Runs of the model's real channel headers with random data, so decoding goes deep."""
    headers = st.sampled_from(sorted(TABLES[model]))
    record = st.tuples(headers, st.binary(max_size=24)).map(lambda t: bytes(t[0]) + t[1])
    return st.lists(record, min_size=1, max_size=6).map(b"".join)


@pytest.mark.parametrize("model", REQUIRED)
@FUZZ
@given(data=st.data())
def test_valid_headers_with_random_data_raise_only_decode_error(model: str, data: Any) -> None:
    check_any_outcome(data.draw(frames(model)), model)


# --- readings -------------------------------------------------------------------------------


def by_quantity(decoded: Decoded) -> dict[str, Reading]:
    return {r.quantity: r for r in decoded.readings}


def test_negative_temperature_reading(vectors: dict[str, dict[str, Any]]) -> None:
    readings = by_quantity(decode_vector(vectors, "ms-064"))
    assert readings["air_temperature"].value == pytest.approx(-5.2, abs=1e-9)
    assert readings["air_temperature"].quality is Quality.OK
    assert readings["relative_humidity"].value == 50.5
    assert readings["battery"].value == 92


def test_history_record_reading_carries_its_own_timestamp(
    vectors: dict[str, dict[str, Any]],
) -> None:
    readings = decode_vector(vectors, "ms-029").readings
    dated = [r for r in readings if r.ts_ns == 1665561758 * 10**9]
    assert {r.quantity for r in dated} == {"air_temperature", "relative_humidity"}
    assert all(type(r.ts_ns) is int for r in dated)
    assert by_quantity(decode_vector(vectors, "ms-029"))["air_temperature"].value == 27.2


def test_am307_co2_and_tvoc(vectors: dict[str, dict[str, Any]]) -> None:
    readings = by_quantity(decode_vector(vectors, "ms-016"))
    assert readings["co2"].value == 936
    assert readings["tvoc_index"].value == pytest.approx(0.37, abs=1e-9)
    assert readings["occupancy"].value == 1
    assert readings["barometric_pressure"].value == pytest.approx(1008.6, abs=1e-9)


def test_live_and_history_in_one_frame(vectors: dict[str, dict[str, Any]]) -> None:
    decoded = decode_vector(vectors, "ms-017")  # EM300-DI
    live = [r for r in decoded.readings if r.ts_ns is None]
    dated = [r for r in decoded.readings if r.ts_ns is not None]
    assert {r.quantity for r in live} == {"battery", "air_temperature", "relative_humidity"}
    assert {r.quantity for r in dated} == {"air_temperature", "relative_humidity"}
    assert "history.pulse" in decoded.unmapped


def test_out_of_range_value_is_flagged_with_a_reason() -> None:
    # 0x0320 = 800 -> 80.0 degC, humidity 0xFF -> 127.5 %: kept, flagged, never trusted
    readings = by_quantity(DECODER.decode(bytes.fromhex("036720030468FF"), model="EM320-TH"))
    assert readings["air_temperature"].value == 80.0
    assert readings["air_temperature"].quality is Quality.FLAGGED
    assert "outside physical range" in (readings["air_temperature"].reason or "")
    assert readings["relative_humidity"].quality is Quality.FLAGGED


def test_probe_error_value_is_missing_with_reason_and_vendor_alias() -> None:
    decoded = DECODER.decode(bytes.fromhex("057FFFFF"), model="EM500-SMTC")
    assert decoded.object["ec_error"] == "collection failed"
    assert decoded.object["vendor_aliases"] == {"ec_error": "electricity_error"}
    (reading,) = decoded.readings
    assert reading.quantity == "soil_ec" and reading.quality is Quality.MISSING
    assert "collection failed" in (reading.reason or "")


def test_unmapped_keys_are_listed() -> None:
    decoded = DECODER.decode(bytes.fromhex("056A4900"), model="AM107")
    assert decoded.unmapped == ["activity"] and decoded.readings == []
