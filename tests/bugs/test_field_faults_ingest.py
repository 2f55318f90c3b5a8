"""Ingest-side field faults of ../shared/cases/field-faults.md (BR-05, BR-09, BR-15, BR-16, BR-25,
BR-28), each through the real decoders, pipeline and DuckDB store (build_pipeline, as
tests/bugs/test_field_faults_envelopes.py does), or the real API app for `/write`.

Where a case's input uses a topic or key names the node does not read as given, the test adapts
the transport and keeps the case's values; each such test says how. The MQTT halves of BR-09 and
BR-10 are in test_field_faults_mqtt.py (a real Mosquitto).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from greennanny.api.app import create_app
from greennanny.cli.backend import InProcessTransport
from greennanny.config import config_from_dict
from greennanny.decoders.line_protocol import LPPoint, encode, parse
from greennanny.decoders.milesight import MilesightDecoder
from greennanny.errors import DecodeError
from greennanny.model import QUANTITIES, Quality, SeriesKey, Uplink
from greennanny.runtime.clock import FakeClock
from greennanny.runtime.node import apply_config_devices, build_pipeline
from greennanny.runtime.pipeline import IngestPipeline
from greennanny.store.base import IngestCommit, SeriesInfo
from greennanny.store.duckdb import DuckDBStore

APP = "5d3f0c2e-0000-4000-8000-000000000001"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Y2000_NS = 946_684_800 * 10**9


def utc_ns(text: str) -> int:
    """Epoch ns of ISO text, worked out with the standard library alone (not the code under test)."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1) * 1000


@dataclass
class Node:
    """A node's pipeline and store, without MQTT: what a test feeds and what it reads back."""

    store: DuckDBStore
    pipeline: IngestPipeline
    clock: FakeClock

    def feed(self, *msgs: Uplink) -> IngestCommit:
        """One batch through the pipeline, committed as the node's ingest thread commits it."""
        commit = self.pipeline.process(list(msgs))
        self.store.commit_ingest(commit)
        return commit

    def series(self) -> dict[str, SeriesInfo]:
        return {s.key.quantity: s for s in self.store.series()}

    def rows(self, quantity: str) -> list[tuple[int, float]]:
        """(ts_ns, value) of the one stored series of `quantity`, in time order."""
        (s,) = [s for s in self.store.series() if s.key.quantity == quantity]
        df = self.store.query(s.id, None, None)
        return list(zip(df["ts"].astype("int64").tolist(), df["value"].tolist(), strict=True))


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Any]:
    """`make_node(now_ns, mode=..., devices=...)`: a fresh node (default subscriptions) on tmp_path."""
    stores: list[DuckDBStore] = []

    def make(now_ns: int, *, mode: str = "live", devices: dict[str, dict[str, str]] | None = None,
             subscriptions: list[dict[str, str]] | None = None) -> Node:
        d = tmp_path / f"node{len(stores)}"
        raw: dict[str, Any] = {"node": {"data_dir": str(d), "site": "gh1"}, "pipeline": {"mode": mode},
                               "devices": devices or {}}
        if subscriptions is not None:
            raw["mqtt"] = {"subscriptions": subscriptions}
        cfg = config_from_dict(raw, base_dir=tmp_path)
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        store = DuckDBStore(cfg.store_path)
        stores.append(store)
        apply_config_devices(store, cfg)
        clock = FakeClock(now_ns)
        return Node(store, build_pipeline(cfg, store, clock), clock)

    yield make
    for s in stores:
        s.close()


def cs4_up(eui: str, data_hex: str, *, f_cnt: int, time: str, profile: str = "", **extra: Any) -> Uplink:
    """A ChirpStack v4 up event (JSON marshaler) as the integration publishes it."""
    body: dict[str, Any] = {"deduplicationId": f"dd-{eui}-{f_cnt}", "time": time,
                            "deviceInfo": {"applicationId": APP, "devEui": eui, "deviceProfileName": profile},
                            "fCnt": f_cnt, "fPort": 85, "data": base64.b64encode(bytes.fromhex(data_hex)).decode(),
                            **extra}
    return Uplink(f"application/{APP}/device/{eui}/event/up", json.dumps(body).encode(), utc_ns(time) + 10**9)


# -- BR-05: Milesight EM500-SWL depth scaled by 1/100 --------------------------------------------------
BR05_HEX = "01756403770200"
SWL = "a1b2c3d4e5f60005"


def test_BR_05_em500_swl_depth_is_2_cm_not_0_02() -> None:
    assert base64.b64encode(bytes.fromhex(BR05_HEX)).decode() == "AXVkA3cCAA=="  # the case's base64
    decoded = MilesightDecoder().decode(bytes.fromhex(BR05_HEX), model="EM500-SWL")
    assert decoded.object == {"battery": 100, "depth": 2}
    assert {r.quantity: r.value for r in decoded.readings} == {"battery": 100.0, "water_level": 2.0}
    assert QUANTITIES["water_level"].unit == "cm"


def test_BR_05_em500_swl_through_chirpstack_is_stored_as_2_cm(make_node: Any) -> None:
    time = "2024-03-10T10:00:00Z"
    node = make_node(utc_ns(time) + 10**9, devices={SWL: {"codec": "milesight", "model": "EM500-SWL", "zone": "tank"}})
    commit = node.feed(cs4_up(SWL, BR05_HEX, f_cnt=1, time=time))
    assert [e.outcome for e in commit.ledger] == ["stored"] and not commit.deadletters
    s = node.series()
    assert (s["water_level"].unit, s["water_level"].last_value) == ("cm", 2.0)
    assert s["battery"].last_value == 100.0


def test_BR_05_em500_swl_history_probe_errors_and_a_short_frame() -> None:
    """The rest of the model: history records in cm too, the probe's error codes are missing values,
    and a frame cut inside the depth channel is a DecodeError naming the offset (house rule 2)."""
    dec = MilesightDecoder()
    hist = dec.decode(bytes.fromhex("20CE" + (1_710_064_800).to_bytes(4, "little").hex() + "0A01"), model="EM500-SWL")
    assert hist.object == {"history": [{"timestamp": 1_710_064_800, "depth": 266}]}
    assert [(r.quantity, r.value, r.ts_ns) for r in hist.readings] == [("water_level", 266.0, 1_710_064_800 * 10**9)]
    for raw, why in (("FFFF", "collection failed"), ("FDFF", "out of range")):
        (r,) = dec.decode(bytes.fromhex("0377" + raw), model="EM500-SWL").readings
        assert r.quality is Quality.MISSING and math.isnan(r.value) and r.reason == f"depth: sensor {why}"
    with pytest.raises(DecodeError) as err:
        dec.decode(bytes.fromhex("0175640377" + "02"), model="EM500-SWL")
    assert err.value.offset == 5 and "offset 5" in str(err.value)


# -- BR-09: one bad payload never stops ingest (pipeline half; the broker half is in the MQTT file) ------
NOW_BR09 = 1_710_064_900 * 10**9  # just after the readings below, live mode
BR09_TOPIC = "greennanny/gh1/zone3/th"  # the node's JSON topic for the case's gh1/zone3/th/state
BR09_TRUNCATED = b'{"temperature": 21.4, "humidity": '
BR09_GOOD = b'{"air_temperature": 21.6, "relative_humidity": 64.0}'  # canonical names for temperature/humidity


def test_BR_09_truncated_json_is_a_dead_letter_and_the_next_message_is_stored(make_node: Any) -> None:
    node = make_node(1_750_000_000 * 10**9)
    commit = node.feed(Uplink(BR09_TOPIC, BR09_TRUNCATED, node.clock.now_ns()),
                       Uplink(BR09_TOPIC, BR09_GOOD, node.clock.now_ns() + 10**9))
    assert [e.outcome for e in commit.ledger] == ["dead_letter", "stored"]
    assert node.store.deadletter_counts() == {"invalid_json": 1}  # the parse-error counter
    (dl,) = node.store.deadletters()
    assert (dl["topic"], bytes(dl["payload"])) == (BR09_TOPIC, BR09_TRUNCATED)
    assert "not valid JSON" in dl["detail"]
    s = node.series()
    assert (s["air_temperature"].last_value, s["relative_humidity"].last_value) == (21.6, 64.0)


BEYOND_INT64 = [
    pytest.param(BR09_TOPIC, b'{"air_temperature": 21.5, "ts": 1e30}', id="json_epoch_1e30"),
    pytest.param(BR09_TOPIC, b'{"air_temperature": 21.5, "ts": "9999-12-31T23:59:59Z"}', id="json_iso_9999"),
    pytest.param("greennanny/senml/gh1/zone3",
                 b'[{"bn": "urn:dev:ow:10e2073a01080063:", "bt": 1e12, "n": "temp", "u": "Cel", "v": 21.5}]',
                 id="senml_bt_1e12_s"),
]


@pytest.mark.parametrize(("topic", "payload"), BEYOND_INT64)
def test_BR_09_a_time_past_2262_in_backfill_is_quarantined_and_the_rest_of_the_batch_stored(
        make_node: Any, topic: str, payload: bytes) -> None:
    """The same kind of fault: a stamp an int64 of ns cannot hold used to raise OverflowError for the
    whole batch out of `process` (backfill mode has no "ahead of the clock" rule to catch it first),
    which ended the node's ingest thread while MQTT and the API still looked healthy."""
    node = make_node(1_750_000_000 * 10**9, mode="backfill",
                     subscriptions=[{"topic": "greennanny/senml/+/+", "format": "senml"},
                                    {"topic": "greennanny/+/+/+", "format": "json"}])
    commit = node.feed(Uplink(topic, payload, node.clock.now_ns()),
                       Uplink(BR09_TOPIC, BR09_GOOD, node.clock.now_ns() + 10**9))
    assert [e.outcome for e in commit.ledger] == ["quarantined", "stored"]
    (dl,) = commit.deadletters
    assert dl.reason == "quarantined" and "after 2262-04-11" in dl.detail and dl.payload == payload
    assert node.series()["air_temperature"].last_value == 21.6


# -- BR-15: a millisecond timestamp never lands in 1970 ----------------------------------------------
BR15_MS = 1455362189575
BR15_NS = utc_ns("2016-02-13T11:16:29.575Z")
BR15_RECEIVED = BR15_NS + 2 * 10**9


def test_BR_15_the_case_time_in_ns() -> None:
    assert BR15_NS == BR15_MS * 10**6 == 1_455_362_189_575_000_000


@pytest.mark.parametrize("ts", [BR15_MS, f'"{BR15_MS}"'], ids=["number", "string"])
def test_BR_15_json_ts_in_epoch_ms_is_stored_at_2016_02_13T11_16_29_575Z(make_node: Any, ts: object) -> None:
    """The case's `{"ts":1455362189575,"hr":5432}`; `hr` is no canonical quantity, so the value rides
    as co2 (a JSON device names its quantities) and `hr` must be listed as unmapped."""
    node = make_node(BR15_RECEIVED)
    body = f'{{"ts":{ts},"hr":5432,"co2":5432}}'.encode()
    commit = node.feed(Uplink("greennanny/gh1/zone1/hr-1", body, BR15_RECEIVED))
    assert [e.outcome for e in commit.ledger] == ["stored"]
    assert node.rows("co2") == [(BR15_NS, 5432.0)]
    assert node.pipeline.unmapped == {"json:hr": 1}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[httpx.Client, DuckDBStore]]:
    """The real app (InfluxDB 1.x `/write` included) on a real store, served in process."""
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path / "api"), "site": "gh1"}, "api": {"token_file": ""}},
                           base_dir=tmp_path)
    cfg.data_dir.mkdir()
    store = DuckDBStore(cfg.store_path)
    with httpx.Client(transport=InProcessTransport(create_app(cfg, store)), base_url="http://node") as client:
        yield client, store
    store.close()


def stored(store: DuckDBStore) -> dict[SeriesKey, list[tuple[int, float]]]:
    out = {}
    for s in store.series():
        df = store.query(s.id, None, None)
        out[s.key] = list(zip(df["ts"].astype("int64").tolist(), df["value"].tolist(), strict=True))
    return out


def test_BR_15_write_with_precision_ms_is_stored_at_2016(api: tuple[httpx.Client, DuckDBStore]) -> None:
    client, store = api
    r = client.post("/write", params={"db": "gh", "precision": "ms"},
                    content=f"co2,zone=zone1,device=hr-1 value=5432 {BR15_MS}\n".encode())
    assert r.status_code == 204, r.text
    assert stored(store) == {SeriesKey("gh1", "zone1", "hr-1", "co2"): [(BR15_NS, 5432.0)]}


def test_BR_15_write_of_a_ms_time_without_precision_is_quarantined_not_stored_in_1970(
        api: tuple[httpx.Client, DuckDBStore]) -> None:
    """Without `precision` the line's time is ns: 1970-01-01T00:24:15.362189575Z. InfluxDB stores it
    there (the fault); we keep the line as a quarantined dead letter and say why, and store the
    good line of the same request."""
    client, store = api
    good = b"co2,zone=zone1,device=hr-2 value=600 1455362189575000000"
    bare_ms = f"co2,zone=zone1,device=hr-1 value=5432 {BR15_MS}".encode()
    r = client.post("/write", params={"db": "gh"}, content=good + b"\n" + bare_ms + b"\n")
    assert r.status_code == 400
    message = r.json()["error"]
    assert message.startswith("partial write: quarantined 'co2,zone=zone1,device=hr-1 value=5432 1455362189575'")
    assert "line 2: timestamp 1455362189575 ns is before 2000-01-01" in message and message.endswith("dropped=1")
    assert stored(store) == {SeriesKey("gh1", "zone1", "hr-2", "co2"): [(BR15_NS, 600.0)]}
    (dl,) = store.deadletters()
    assert (dl["reason"], bytes(dl["payload"]), dl["topic"]) == ("quarantined", bare_ms, "/write")
    assert "without its precision" in dl["detail"]


def test_BR_15_line_protocol_on_mqtt_with_a_bare_ms_time_keeps_the_good_lines(make_node: Any) -> None:
    """MQTT line protocol is ns: the ms line is kept aside (quarantined), its neighbour stored."""
    node = make_node(BR15_RECEIVED, subscriptions=[{"topic": "greennanny/lp/+", "format": "line_protocol"}])
    payload = f"co2,zone=zone1,device=hr-1 value=5432 {BR15_MS}\nco2,zone=zone1,device=hr-2 value=600 {BR15_NS}\n"
    commit = node.feed(Uplink("greennanny/lp/gw-1", payload.encode(), BR15_RECEIVED))
    assert [e.outcome for e in commit.ledger] == ["stored"]
    assert {p.key.device: p.ts_ns for p in commit.batch.points()} == {"hr-2": BR15_NS}
    (dl,) = commit.deadletters
    assert dl.reason == "quarantined" and dl.payload == f"co2,zone=zone1,device=hr-1 value=5432 {BR15_MS}".encode()
    assert all(ts >= Y2000_NS for rows in stored(node.store).values() for ts, _ in rows)


# -- BR-16: escaped spaces, commas and `=` in tag values --------------------------------------------
BR16_LINE = r"climate,crop=tomato\,\ truss,rule=t\=18,zone=North\ Bay temperature=21.5 1700000000000000000"
BR16_TAGS = {"crop": "tomato, truss", "rule": "t=18", "zone": "North Bay"}


def test_BR_16_parser_reads_escaped_tag_values_back() -> None:
    result = parse(BR16_LINE.encode(), default_time_ns=0)
    assert not result.errors
    (lp,) = result.points
    assert (lp.measurement, lp.tags, lp.fields, lp.time_ns) == (
        "climate", BR16_TAGS, [("temperature", "float", 21.5)], utc_ns("2023-11-14T22:13:20Z"))


def test_BR_16_encoder_escapes_tags_without_quotes_and_reads_back() -> None:
    lp = LPPoint("climate", {"zone": "North Bay", "crop": "tomato, truss", "rule": "t=18"},
                 [("temperature", "float", 21.5)], 1_700_000_000_000_000_000)
    line = encode(lp)
    assert line == BR16_LINE and '"' not in line
    assert parse(line.encode(), default_time_ns=0).points == [lp]


@pytest.mark.parametrize(("line", "what", "want"), [
    (rb"climate\ house,zone=a air_temperature=1 1700000000000000000", "measurement", "climate house"),
    (rb"climate,zone=North\,East\ 2 air_temperature=1 1700000000000000000", "zone", "North,East 2"),
    (rb"climate,zone\ name=a air_temperature=1 1700000000000000000", "tag key", "zone name"),
    (rb"climate,zone=a air\=temp\ c=1 1700000000000000000", "field key", "air=temp c"),
], ids=["measurement", "tag_value", "tag_key", "field_key"])
def test_BR_16_every_escapable_token_reads_back(line: bytes, what: str, want: str) -> None:
    """The whole kind: `\\,` `\\ ` (and `\\=` where it is special) in measurement, tag key and field key too."""
    (lp,) = parse(line, default_time_ns=0).points
    got = {"measurement": lp.measurement, "zone": lp.tags.get("zone"), "tag key": next(iter(lp.tags)),
           "field key": lp.fields[0][0]}[what]
    assert got == want


def test_BR_16_escaped_zone_is_stored_as_North_Bay_over_mqtt_and_write(
        make_node: Any, api: tuple[httpx.Client, DuckDBStore]) -> None:
    line = BR16_LINE.replace("temperature=", "air_temperature=").encode()
    node = make_node(1_700_000_000 * 10**9 + 10**9,
                     subscriptions=[{"topic": "greennanny/lp/+", "format": "line_protocol"}])
    commit = node.feed(Uplink("greennanny/lp/gw-1", line, node.clock.now_ns()))
    assert [e.outcome for e in commit.ledger] == ["stored"]
    want = {SeriesKey("gh1", "North Bay", "climate", "air_temperature"): [(1_700_000_000 * 10**9, 21.5)]}
    assert stored(node.store) == want
    client, store = api
    assert client.post("/write", params={"db": "gh"}, content=line).status_code == 204
    assert stored(store) == want


# -- BR-25: device clock at 1970 after a reboot --------------------------------------------------------
# The case's CSV rows (timestamp, meter, value, ... , error text) as the meter's JSON messages: the
# CSV importer is for backfill, a live meter publishes each reading as it takes it.
BR25_ROWS = [
    ("2025-06-03T09:13:34+0300", 264.342),
    ("2025-06-03T09:18:34+0300", 264.342),
    ("1970-01-01T02:00:36+0200", 1554.302),  # "Rate too high - Read: 1554.302 - Pre: 264.342"
    ("2025-06-03T09:32:16+0300", 264.342),
]
BR25_TOPIC = "greennanny/gh1/irrigation/main"


@pytest.mark.parametrize("mode", ["live", "backfill"])
def test_BR_25_reading_stamped_1970_after_reboot_is_quarantined_and_the_series_keeps_3_points(
        make_node: Any, mode: str) -> None:
    node = make_node(utc_ns("2025-06-03T09:13:35+03:00"), mode=mode)
    outcomes = []
    received = [utc_ns(t) + 10**9 for t, _ in BR25_ROWS]
    received[2] = utc_ns("2025-06-03T09:20:00+03:00")  # the reboot came between rows 2 and 4
    for (ts, value), rx in zip(BR25_ROWS, received, strict=True):
        node.clock.t = rx
        body = json.dumps({"water_flow": value, "ts": ts}).encode()
        outcomes += [e.outcome for e in node.feed(Uplink(BR25_TOPIC, body, rx)).ledger]
    assert outcomes == ["stored", "stored", "quarantined", "stored"]
    good = [utc_ns(t) for t, _ in BR25_ROWS if not t.startswith("1970")]
    assert node.rows("water_flow") == [(t, 264.342) for t in good]
    (dl,) = node.store.deadletters()
    assert dl["reason"] == "quarantined" and "before 2000-01-01" in dl["detail"]
    assert json.loads(bytes(dl["payload"])) == {"water_flow": 1554.302, "ts": "1970-01-01T02:00:36+0200"}
    # Not in any aggregate: the hourly mean over everything stored is the meter's 264.342.
    (s,) = node.store.series()
    hourly = node.store.query(s.id, None, None, every_ns=3600 * 10**9)
    assert [round(v, 3) for v in hourly["value"].tolist()] == [264.342]


# -- BR-28: ChirpStack codec error, up event without `object` -----------------------------------------
WT101 = "a1b2c3d4e5f60010"
BR28_LOG = {"time": "2025-06-11T08:00:00Z", "deviceInfo": {"devEui": WT101, "deviceProfileName": "WT101"},
            "level": "ERROR", "code": "UPLINK_CODEC", "description": "JS error: Error: not match in {...}"}


def test_BR_28_up_without_object_after_uplink_codec_log_is_kept_raw_as_codec_error(make_node: Any) -> None:
    node = make_node(utc_ns("2025-06-11T08:00:05Z"), devices={WT101: {"field_map": "generic-th-co2", "zone": "z1"}})
    log_event = Uplink(f"application/{APP}/device/{WT101}/event/log", json.dumps(BR28_LOG).encode(),
                       utc_ns("2025-06-11T08:00:00Z"))
    up = cs4_up(WT101, "060000", f_cnt=57, time="2025-06-11T08:00:01Z", profile="WT101")
    assert b'"object"' not in up.payload and json.loads(up.payload)["data"] == "BgAA"
    commit = node.feed(log_event, up)
    assert [e.outcome for e in commit.ledger] == ["non_uplink", "dead_letter"]
    # No measurement is made up: nothing stored, not even radio health of the dead uplink.
    assert node.store.series() == [] and len(commit.batch) == 0
    (dl,) = node.store.deadletters()
    assert (dl["reason"], dl["device"], dl["topic"]) == ("codec_error", WT101, up.topic)
    raw = json.loads(bytes(dl["payload"]))
    assert (raw["fCnt"], base64.b64decode(raw["data"]).hex()) == (57, "060000")
    assert "data='060000'" in dl["detail"] and "UPLINK_CODEC" in dl["detail"]
    # That device's codec-error count, and the log event kept as a device event.
    assert sum(d["device"] == WT101 for d in node.store.deadletters(reason="codec_error")) == 1
    ((ts, eui, kind, detail),) = node.store.device_events()
    assert (ts, eui, kind) == (utc_ns("2025-06-11T08:00:00Z"), WT101, "log")
    assert json.loads(detail) == {"code": "UPLINK_CODEC", "description": "JS error: Error: not match in {...}",
                                  "level": "ERROR"}


def test_BR_09_a_batch_the_pipeline_raised_on_is_stored_when_replayed_not_taken_for_duplicates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The safety net keeps a failed batch as internal_error dead letters. Its messages were
    handled (and remembered by dedupe) before the failure, but never stored: a replay after the
    fix must store them, not count them as duplicates and drop the dead letters."""
    from greennanny.model import BatchBuilder
    from greennanny.runtime.pipeline import all_dead

    cfg = config_from_dict({"node": {"data_dir": str(tmp_path)}}, base_dir=tmp_path)
    store = DuckDBStore(cfg.store_path)
    try:
        pipeline = build_pipeline(cfg, store, FakeClock(NOW_BR09))
        msgs = [Uplink("greennanny/gh1/zone3/th", json.dumps({"air_temperature": 21.0 + i, "ts": 1_710_064_800 + i})
                       .encode(), NOW_BR09, 1, i + 1) for i in range(3)]
        real_build = BatchBuilder.build

        def broken(self: BatchBuilder) -> Any:
            raise RuntimeError("a bug in a later stage")

        monkeypatch.setattr(BatchBuilder, "build", broken)
        with pytest.raises(RuntimeError):
            pipeline.process(msgs)
        store.commit_ingest(all_dead(msgs, "pipeline raised RuntimeError"))  # what Node._commit keeps
        monkeypatch.setattr(BatchBuilder, "build", real_build)  # the bug is fixed
        counts = store.replay_deadletters(pipeline.process)
        assert counts.get("stored") == 3 and counts["still_dead"] == 0, counts
        (s,) = store.series()
        assert s.points == 3 and s.last_value == 23.0
        assert store.deadletter_counts() == {}
    finally:
        store.close()
