"""Line protocol on MQTT: how lines become series, exact values and nanoseconds, and what a bad
line or a message without a usable point leaves behind (through the real pipeline too)."""

from __future__ import annotations

import math

import pytest

from greennanny.errors import DecodeError
from greennanny.ingest.envelope import Handled
from greennanny.ingest.line_protocol_topic import LineProtocolTopic
from greennanny.model import Point, Quality, SeriesKey, Uplink
from greennanny.runtime.clock import FakeClock
from greennanny.runtime.dedupe import Deduper
from greennanny.runtime.pipeline import IngestPipeline, Route

RECEIVED = 1_700_000_100_000_000_000
TOPIC = "greennanny/lp/gateway-1"


def handle(payload: bytes, site: str = "farm", zone: str = "default") -> Handled:
    return LineProtocolTopic(site, zone).handle(Uplink(TOPIC, payload, RECEIVED))


def test_site_zone_device_and_quantity_rules_with_exact_values() -> None:
    h = handle(
        b"climate,site=north,zone=bay-2,device=probe-7,host=gw air_temperature=21.5,relative_humidity=63.25\n"
        b"climate,zone=bay-3,host=telegraf-1 co2=612i\n"
        b"soil_moisture,zone=bay-3 value=34.5,raw=812i\n"
        b"co2 value=18446744073709551615u\n"
    )
    assert h.points == [
        Point(SeriesKey("north", "bay-2", "probe-7", "air_temperature"), RECEIVED, 21.5),
        Point(SeriesKey("north", "bay-2", "probe-7", "relative_humidity"), RECEIVED, 63.25),
        Point(SeriesKey("farm", "bay-3", "telegraf-1", "co2"), RECEIVED, 612.0),
        Point(SeriesKey("farm", "bay-3", "soil_moisture", "soil_moisture"), RECEIVED, 34.5),
        Point(SeriesKey("farm", "default", "co2", "co2"), RECEIVED, 18446744073709551615.0,
              Quality.FLAGGED, "value: co2=1.84467e+19 ppm outside physical range [0, 40000]"),
    ]
    assert h.unmapped == ["soil_moisture.raw"]
    assert (h.kind, h.ts_ns, h.rejected) == ("line_protocol", RECEIVED, [])


def test_values_strings_bools_and_words() -> None:
    h = handle(b'door,device=d1 door_open=true,occupancy=F\n'
               b'probe,device=p1 air_temperature="21.5",relative_humidity="unavailable",co2="n/a ppm"\n')
    got = {p.key.quantity: (p.value, p.quality, p.reason) for p in h.points}
    assert got["door_open"] == (1.0, Quality.OK, None) and got["occupancy"] == (0.0, Quality.OK, None)
    assert got["air_temperature"] == (21.5, Quality.OK, None)
    value, quality, reason = got["relative_humidity"]
    assert math.isnan(value) and quality == Quality.MISSING and reason == "relative_humidity='unavailable' means no value"
    assert got["co2"][1:] == (Quality.MISSING, "co2='n/a ppm' is not a number")


def test_nanosecond_timestamps_stay_exact() -> None:
    h = handle(b"probe,device=p1 air_temperature=20.25 1700000000123456789\n"
               b"probe,device=p1 air_temperature=20.5 1700000000123456790\n"
               b"probe,device=p1 air_temperature=20.75\n")
    assert [p.ts_ns for p in h.points] == [1700000000123456789, 1700000000123456790, RECEIVED]


def test_one_bad_line_among_good_ones_is_a_rejected_fragment_naming_line_2() -> None:
    h = handle(b"probe,device=p1 air_temperature=21.5 1700000000000000001\n"
               b"probe,device=p1 air_temperature=warm 1700000000000000002\r\n"
               b"probe,device=p2 air_temperature=22.5 1700000000000000003\n")
    assert [(p.key.device, p.value, p.ts_ns) for p in h.points] == [
        ("p1", 21.5, 1700000000000000001), ("p2", 22.5, 1700000000000000003)]
    assert h.rejected == [(b"probe,device=p1 air_temperature=warm 1700000000000000002", "line_protocol",
                           "line 2: field value has unrecognized type (column 33)")]


def test_all_bad_lines_raise_decode_error_naming_the_lines() -> None:
    with pytest.raises(DecodeError) as err:
        handle(b"probe air_temperature=\nprobe,=x air_temperature=1\n")
    assert err.value.reason == "line_protocol" and err.value.field == "line 1" and err.value.offset == 22
    assert str(err.value) == ("no valid line protocol line: line 1: field value has unrecognized type (column 23); "
                              "line 2: expected tag key or field but found '=' instead (column 7)")


def test_lines_that_parse_but_map_nothing_raise_no_known_quantity() -> None:
    with pytest.raises(DecodeError) as err:
        handle(b"cpu,host=gw usage_idle=99.5\n\nmem,host=gw used=1i\n")
    assert err.value.reason == "no_known_quantity"
    assert "line(s) 1, 3" in str(err.value) and "cpu.usage_idle, mem.used" in str(err.value)


def test_empty_payload_and_unset_clock() -> None:
    with pytest.raises(DecodeError) as err:
        handle(b"# nothing but a comment\n")
    assert err.value.reason == "line_protocol"
    h = handle(b"probe,device=p1 air_temperature=21 0\nprobe,device=p1 air_temperature=22\n")
    assert [p.value for p in h.points] == [22.0]
    assert h.rejected == [(b"probe,device=p1 air_temperature=21 0", "quarantined",
                           "line 1: timestamp 0 ns is before 2000-01-01 (device clock not set?)")]


def test_slash_in_a_name_and_dedup_key() -> None:
    h = handle(b"probe,site=a/b,device=rack/1 co2=600")
    assert h.points[0].key == SeriesKey("a_b", "default", "rack_1", "co2")
    assert h.dedup_key == handle(b"probe,site=a/b,device=rack/1 co2=600").dedup_key
    assert h.dedup_key != handle(b"probe,site=a/b,device=rack/1 co2=601").dedup_key
    assert h.dedup_key.startswith("lp:")


def test_through_the_pipeline_bad_line_becomes_a_dead_letter() -> None:
    pipeline = IngestPipeline([Route("greennanny/lp/+", LineProtocolTopic("farm"))], Deduper(120),
                              FakeClock(RECEIVED), live=True)
    payload = (b"probe,zone=bay-1,device=p1 air_temperature=21.5 1700000000123456789\n"
               b"probe,zone=bay-1,device=p1 air_temperature=\n"
               b"co2,zone=bay-1,device=p1 value=612i 1700000000123456789\n")
    commit = pipeline.process([Uplink(TOPIC, payload, RECEIVED), Uplink(TOPIC, b"cpu usage_idle=1", RECEIVED + 1)])
    assert [(str(p.key), p.ts_ns, p.value) for p in commit.batch.points()] == [
        ("farm/bay-1/p1/air_temperature", 1700000000123456789, 21.5),
        ("farm/bay-1/p1/co2", 1700000000123456789, 612.0)]
    assert [(d.payload, d.reason, d.detail) for d in commit.deadletters] == [
        (b"probe,zone=bay-1,device=p1 air_temperature=", "line_protocol",
         "line 2: field value has unrecognized type (column 44)"),
        (b"cpu usage_idle=1", "no_known_quantity", commit.deadletters[1].detail)]
    assert "cpu.usage_idle" in commit.deadletters[1].detail
    assert [(e.outcome, e.points) for e in commit.ledger] == [("stored", 2), ("dead_letter", 0)]
