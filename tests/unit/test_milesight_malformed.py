"""Malformed Milesight frames raise DecodeError naming the byte offset; readings are canonical.

Truncated frames are cut from real vectors in ../shared/vectors (read in place, skipped without
the folder); the fuzz tests need no files.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.shared_paths import SHARED_DIR

from greennanny.decoders.base import Decoded, Reading
from greennanny.decoders.milesight import TABLES, Channel, Field, MilesightDecoder
from greennanny.errors import DecodeError
from greennanny.model import Quality

REQUIRED = ("EM300-TH", "EM320-TH", "AM307", "AM308", "EM500-CO2")
# Controllers whose frames carry numbered channels and type-selected data (index/selector rows).
UC = ("UC300", "UC501", "UC511", "UC512")
FUZZED = (*REQUIRED, *UC)
VECTORS_FILE = SHARED_DIR / "vectors" / "milesight.json"
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
    # 09670201 0A67|02 -- the second PT100 at byte 4, its data at 6
    ("UC300", "ms-004", 7, 6, "channel 0x0a type 0x67 (pt100_2) needs 2 bytes"),
    # FF19|00 02 02 0B -- Modbus channel 1, length 2, int16: the chosen type needs 2 more bytes
    ("UC300", "ms-007", 6, 2, "channel 0xff type 0x19 (modbus) needs 5 bytes"),
    # FF0E|09 26 1027 -- Modbus channel 3, input int32 (4 bytes), two of them sent
    ("UC501", "ms-013", 6, 2, "channel 0xff type 0x0e (modbus) needs 6 bytes"),
    # 08DB|02 + 17 of the 36 bytes of an SDI-12 response
    ("UC501", "ms-015", 20, 2, "channel 0x08 type 0xdb (sdi-12) needs 37 bytes"),
    # 20CE|3FA10964 17 000000 -- the 9-byte valve history record minus its last byte
    ("UC512", "ms-023", 10, 2, "channel 0x20 type 0xce (history) needs 9 bytes"),
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


@pytest.mark.parametrize("model", [None, "", "EM300-XX", "UC502"])
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


@pytest.mark.parametrize("model", FUZZED)
@FUZZ
@given(payload=st.binary(max_size=64))
def test_random_bytes_raise_only_decode_error(model: str, payload: bytes) -> None:
    check_any_outcome(payload, model)


def _put(buf: bytearray, at: int, f: Field, value: int) -> None:
    """Writes `value` into the bytes (or `bits`) that field `f` reads at `at`."""
    word = int.from_bytes(buf[at : at + f.size], "little")
    shift, width = f.bits or (0, 8 * f.size)
    mask = ((1 << width) - 1) << shift
    word = (word & ~mask) | ((value << shift) & mask)
    buf[at : at + f.size] = word.to_bytes(f.size, "little")


@st.composite
def channel_data(draw: Any, spec: Channel) -> bytes:
    """Random data shaped like the table row: a valid channel number, data type and length."""
    buf, at, todo = bytearray(), 0, list(spec.fields)
    length: tuple[int, Field] | None = None
    while todo:
        f = todo.pop(0)
        if len(buf) < at + f.size:
            buf += draw(st.binary(min_size=f.size, max_size=f.size))
        if f.role == "index":
            top = (1 << (f.bits[1] if f.bits else 8 * f.size)) - 1
            _put(buf, at, f, draw(st.integers(max(0, 1 - f.add), top)))
        elif f.role == "length":
            length = (at, f)
        elif f.cases is not None:
            kind = draw(st.sampled_from(sorted(f.cases)))
            _put(buf, at, f, kind)
            if length is not None:
                _put(buf, length[0], length[1], sum(c.size for c in f.cases[kind] if not c.shares_next))
            todo[:0] = f.cases[kind]
        if not f.shares_next:
            at += f.size
    return bytes(buf)


def well_formed_frames(model: str) -> st.SearchStrategy[bytes]:
    """Runs of the model's channels, each with data its table row accepts."""
    table = TABLES[model]
    record = st.sampled_from(sorted(table)).flatmap(
        lambda pair: channel_data(table[pair]).map(lambda data: bytes(pair) + data)
    )
    return st.lists(record, min_size=1, max_size=6).map(b"".join)


def frames(model: str) -> st.SearchStrategy[bytes]:
    """Runs of the model's real channel headers with random or well-formed data, so decoding goes deep."""
    headers = st.sampled_from(sorted(TABLES[model]))
    random_record = st.tuples(headers, st.binary(max_size=40)).map(lambda t: bytes(t[0]) + t[1])
    shaped = well_formed_frames(model)
    return st.lists(st.one_of(random_record, shaped), min_size=1, max_size=6).map(b"".join)


@pytest.mark.parametrize("model", FUZZED)
@FUZZ
@given(data=st.data())
def test_valid_headers_with_random_data_raise_only_decode_error(model: str, data: Any) -> None:
    check_any_outcome(data.draw(frames(model)), model)


@pytest.mark.parametrize("model", sorted(TABLES))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_frames_shaped_by_the_table_always_decode(model: str, data: Any) -> None:
    """Every row is self-consistent: data it describes decodes, whatever the values are."""
    payload = data.draw(well_formed_frames(model))
    decoded = DECODER.decode(payload, model=model)
    assert decoded.object
    check_any_outcome(payload, model)


def test_numbered_names_follow_an_index_and_lengths_precede_a_selector() -> None:
    """A `{n}` name without an index before it would silently become `_0`: a table bug."""

    def check(fields: tuple[Field, ...], indexed: bool, where: str) -> None:
        length = False
        for f in fields:
            indexed = indexed or f.role == "index"
            assert "{n}" not in f.name or indexed, f"{where}: {f.name} has no index before it"
            if f.role == "length":
                length = True
            if f.cases is not None:
                length = False
                for case in f.cases.values():
                    check(case, indexed, where)
        assert not length, f"{where}: a length field with no selector after it"

    for model, table in TABLES.items():
        for (cid, ctype), spec in table.items():
            check(spec.fields, False, f"{model} {cid:02x}{ctype:02x}")


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


# --- UC controllers: numbered channels and type-selected data --------------------------------


def decode_error(hex_frame: str, model: str) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        DECODER.decode(bytes.fromhex(hex_frame), model=model)
    return caught.value


def test_uc300_modbus_length_that_contradicts_the_data_type_is_rejected_at_the_length_byte() -> None:
    # FF19 | channel 00, length 03, type 02 (int16 = 2 bytes)
    err = decode_error("FF1900030201000000", "UC300")
    assert (err.field, err.offset) == ("modbus", 3)
    assert "modbus data length 3 at offset 3" in str(err)


def test_uc300_unknown_modbus_data_type_names_its_offset() -> None:
    err = decode_error("FF1900020C0100", "UC300")
    assert (err.field, err.offset) == ("modbus", 4)
    assert "unknown modbus data type 0x0c at offset 4" in str(err)


def test_uc300_modbus_value_formats_follow_the_data_type() -> None:
    frame = (
        "FF19000282FFFF"  # chn 1: signed int16 -> -1
        "FF190104080A000B00"  # chn 2: int32 AB -> first half 10
        "FF190204090A000B00"  # chn 3: int32 CD -> second half 11
        "FF1903040500004040"  # chn 4: float 3.0
        "FF19040405FFFFFFFF"  # chn 5: float NaN -> no value
        "FF1905010001"  # chn 6: coil on
        "FF1506"  # chn 7: read error
    )
    obj = DECODER.decode(bytes.fromhex(frame), model="UC300").object
    assert obj["modbus_chn_1"] == -1
    assert (obj["modbus_chn_2"], obj["modbus_chn_3"], obj["modbus_chn_4"]) == (10, 11, 3.0)
    assert obj["modbus_chn_5_error"] == "not a finite number" and "modbus_chn_5" not in obj
    assert obj["modbus_chn_6"] == "on"
    assert obj["modbus_chn_7_alarm"] == "read error"


def test_uc300_analog_statistics_are_half_floats_unmapped() -> None:
    decoded = DECODER.decode(bytes.fromhex("0BE20044004400440044"), model="UC300")
    assert decoded.object == {"adc_1": 4.0, "adc_1_max": 4.0, "adc_1_min": 4.0, "adc_1_avg": 4.0}
    assert decoded.readings == [] and decoded.unmapped == ["adc_1", "adc_1_max", "adc_1_min", "adc_1_avg"]


def test_uc501_modbus_channel_byte_below_the_first_channel_is_rejected() -> None:
    # UC50x numbers Modbus channels from byte 7 (= channel 1); 06 would be channel 0
    err = decode_error("FF0E062610270000", "UC501")
    assert (err.field, err.offset) == ("modbus", 2)
    assert "not a channel number" in str(err)


def test_uc501_sdi12_text_stops_at_the_first_nul_and_takes_any_byte() -> None:
    text = b"0+\xb01\r\n" + b"\x00" + b"junk"
    data = b"\x00" + text + bytes(36 - len(text))  # SDI-12 channel 1, then 36 bytes
    obj = DECODER.decode(bytes.fromhex("08DB") + data, model="UC501").object
    assert obj["sdi12_1"] == "0+\u00b01\r\n"


def test_uc501_history_record_reads_each_gpio_as_its_kind_at_its_own_timestamp() -> None:
    record = (
        "20DC3FA10964"  # history, timestamp 1678352703
        "0205000000"  # gpio 1 as a counter: 5
        "0001000000"  # gpio 2 as a digital input: high
        "24FAFFFF"  # adc 1: -1500 / 1000
        "E8030000"  # adc 2: 1000 / 1000
    )
    decoded = DECODER.decode(bytes.fromhex(record), model="UC501")
    (hist,) = decoded.object["history"]
    assert hist == {"timestamp": 1678352703, "gpio_counter_1": 5, "gpio_2": "high", "adc_1": -1.5, "adc_2": 1.0}
    assert decoded.object["vendor_aliases"] == {"gpio_2": "gpio_input_2", "adc_1": "analog_input_1",
                                                 "adc_2": "analog_input_2"}
    assert "history.gpio_counter_1" in decoded.unmapped
    bad = decode_error(record[:12] + "03" + record[14:], "UC501")
    assert (bad.field, bad.offset) == ("history", 6)


@pytest.mark.parametrize("model", ["UC511", "UC512"])
def test_uc51x_history_names_the_valve_its_status_byte_selects(model: str) -> None:
    # status 0x01: bit 4 clear -> valve 1, bit 0 open, bit 1 clear -> counter mode; pulse 300
    decoded = DECODER.decode(bytes.fromhex("20CE3FA10964012C010000"), model=model)
    assert decoded.object["history"] == [
        {"timestamp": 1678352703, "valve_1": "open", "mode": "counter", "gpio_1": "off", "valve_1_pulse": 300}
    ]
    assert decoded.readings == []
    assert decoded.unmapped == ["history.valve_1", "history.mode", "history.gpio_1", "history.valve_1_pulse"]


def test_uc51x_failed_valve_control_is_an_error_value_with_the_vendor_name() -> None:
    decoded = DECODER.decode(bytes.fromhex("01755C0301FF"), model="UC512")
    assert decoded.object["valve_1_error"] == "delay control failed"
    assert decoded.object["vendor_aliases"] == {"valve_1_error": "valve_1_result"}
    assert [r.quantity for r in decoded.readings] == ["battery"]
