"""Field faults of ../shared/cases/field-faults.md about the ChirpStack v3 and TTN envelopes, each
through the real pipeline and store (build_pipeline, as tests/unit/test_pipeline_bad_input.py does).

The field maps these devices need are not in field_maps.py yet, so each test adds its own for its
duration (monkeypatch): the fault is in the envelope, not in the map.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import pytest

from greennanny.config import config_from_dict
from greennanny.ingest.field_maps import FIELD_MAPS, FieldSpec
from greennanny.ingest.ttn_v3 import TtnV3
from greennanny.model import Quality, Uplink
from greennanny.runtime.clock import FakeClock
from greennanny.runtime.node import apply_config_devices, build_pipeline
from greennanny.store.base import DeviceRecord, IngestCommit, SeriesInfo
from greennanny.store.duckdb import DuckDBStore

NOW = 1_710_064_800 * 10**9  # 2024-03-10T10:00:00Z
CS3 = [{"topic": "application/+/device/#", "format": "chirpstack_v3"}]
TTN = [{"topic": "v3/+/devices/+/up", "format": "ttn_v3"}, {"topic": "ttn/+/devices/+/up", "format": "ttn_v3"}]


def run(tmp_path: Path, subscriptions: list[dict[str, str]], devices: dict[str, dict[str, str]],
        msgs: list[Uplink], now_ns: int) -> tuple[IngestCommit, dict[str, SeriesInfo]]:
    """Process `msgs` with a fresh node's pipeline, commit, and read the stored series back by quantity."""
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path)}, "mqtt": {"subscriptions": subscriptions},
                            "devices": devices}, base_dir=tmp_path)
    store = DuckDBStore(cfg.store_path)
    try:
        apply_config_devices(store, cfg)
        commit = build_pipeline(cfg, store, FakeClock(now_ns)).process(msgs)
        store.commit_ingest(commit)
        return commit, {s.key.quantity: s for s in store.series()}
    finally:
        store.close()


# -- BR-02: ChirpStack v3 `json` marshaler: objectJSON is a string, devEUI is base64 ----------------------
BR02_BODY: dict[str, Any] = {"applicationID": "3", "applicationName": "greenhouse", "deviceName": "gh1-co2-07",
                             "devEUI": "obLD1OX2Bwg=", "fCnt": 812, "fPort": 2, "data": "AQIDBA==",
                             "objectJSON": "{\"co2\":612.0,\"humidity\":71.5,\"temperature\":23.4}"}
BR02_JSON_V3 = {**{k: v for k, v in BR02_BODY.items() if k != "objectJSON"}, "devEUI": "a1b2c3d4e5f60708",
                "object": {"co2": 612.0, "humidity": 71.5, "temperature": 23.4}}


@pytest.mark.parametrize("body", [BR02_BODY, BR02_JSON_V3], ids=["protobuf_json", "json_v3"])
def test_BR_02_chirpstack_v3_objectJSON_string_and_base64_devEUI_stored_for_the_right_device(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any]) -> None:
    up = Uplink("application/3/device/a1b2c3d4e5f60708/event/up", json.dumps(body).encode(), NOW)
    commit, series = run(tmp_path, CS3, {"a1b2c3d4e5f60708": {"field_map": "generic-th-co2", "zone": "house-1"}},
                         [up], NOW)
    assert [e.outcome for e in commit.ledger] == ["stored"] and not commit.deadletters
    assert {q: (s.key.device, s.points, s.last_value) for q, s in series.items()} == {
        "co2": ("a1b2c3d4e5f60708", 1, 612.0),
        "relative_humidity": ("a1b2c3d4e5f60708", 1, 71.5),
        "air_temperature": ("a1b2c3d4e5f60708", 1, 23.4),
    }


# -- BR-07: numeric readings sent as JSON strings are silently dropped (TTN v2 layout) -------------------
BR07 = ('{"app_id":"greenhouse-th","dev_id":"gh2-lht-01","hardware_serial":"A1B2C3D4E5F60009",'
        '"port":2,"counter":5922,'
        '"payload_fields":{"BatV":3.073,"Hum_SHT":"37.8","TempC_DS":"327.67","TempC_SHT":"36.16"},'
        '"metadata":{"time":"2020-07-16T23:44:05.909063943Z"}}')
LHT65 = {"BatV": FieldSpec("battery_voltage"), "Hum_SHT": FieldSpec("relative_humidity"),
         "TempC_SHT": FieldSpec("air_temperature"), "TempC_DS": FieldSpec("soil_temperature")}
BR07_TS = 1_594_943_045_909_063_943  # 2020-07-16T23:44:05.909063943Z


def test_BR_07_ttn_numbers_as_strings_are_stored_and_the_327_67_sentinel_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decision: ttn_v3 reads the TTN v2 layout too (converted to v3 first), so this input works as
    given. TempC_DS is the LHT65's external probe; mapped here to soil_temperature."""
    assert FIELD_MAPS["dragino-lht65"] == LHT65  # the shipped map
    received = BR07_TS + 2 * 10**9
    up = Uplink("ttn/greenhouse-th/devices/gh2-lht-01/up", BR07.encode(), received)
    commit, series = run(tmp_path, TTN, {"a1b2c3d4e5f60009": {"field_map": "dragino-lht65", "zone": "gh2"}},
                         [up], received)
    assert [e.outcome for e in commit.ledger] == ["stored"] and not commit.deadletters
    got = {s.key.quantity: (s.key.device, s.first_ns, s.last_value) for s in series.values()}
    assert got == {
        "battery_voltage": ("a1b2c3d4e5f60009", BR07_TS, 3.073),
        "relative_humidity": ("a1b2c3d4e5f60009", BR07_TS, 37.8),
        "air_temperature": ("a1b2c3d4e5f60009", BR07_TS, 36.16),
        # kept as a row (so nothing is silently dropped) but never served or alerted on:
        "soil_temperature": ("a1b2c3d4e5f60009", BR07_TS, None),
    }
    ds = next(p for p in commit.batch.points() if p.key.quantity == "soil_temperature")
    assert ds.quality is Quality.MISSING and math.isnan(ds.value)
    assert ds.reason == "TempC_DS='327.67' is the sentinel for no reading"


def test_BR_07_a_value_that_cannot_be_a_number_is_kept_missing_with_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rest of BR-07: "N" (a digit the device could not read) and an unknown key are never dropped silently."""
    assert FIELD_MAPS["dragino-lht65"] == LHT65  # the shipped map
    body = json.loads(BR07)
    body["payload_fields"] = {"Hum_SHT": "N", "TempC_SHT": "36.16 °C", "Ext_sensor": "Temperature Sensor"}
    device = DeviceRecord("a1b2c3d4e5f60009", "", "", "dragino-lht65", "s", "z", "", "test")
    h = TtnV3(lambda e: device, {}, "s").handle(
        Uplink("ttn/greenhouse-th/devices/gh2-lht-01/up", json.dumps(body).encode(), BR07_TS))
    by_q = {r.quantity: r for r in h.readings}
    assert by_q["air_temperature"].value == 36.16  # the unit text is taken off
    assert by_q["relative_humidity"].quality is Quality.MISSING
    assert by_q["relative_humidity"].reason == "Hum_SHT='N' is not a number"
    assert h.unmapped == ["Ext_sensor"] and "Ext_sensor" in h.detail


# -- BR-03: the same LoRaWAN frame delivered twice, 48 s apart (the report is about ChirpStack AS v3) ---
BR03_DATA = "AXVcA2c0AQRoZQ=="  # battery 92, 30.8 degC, 50.5 %RH


def br03_cs3(time: str, rssi: int, uplink_id: str) -> Uplink:
    body = {"applicationID": "3", "devEUI": base64.b64encode(bytes.fromhex("a1b2c3d4e5f60002")).decode(),
            "fCnt": 104, "fPort": 85, "data": BR03_DATA,
            "rxInfo": [{"gatewayID": "AwMDAwMDAwM=", "time": time, "rssi": rssi, "loRaSNR": 9, "uplinkID": uplink_id}]}
    return Uplink("application/3/device/a1b2c3d4e5f60002/event/up", json.dumps(body).encode(), NOW)


def br03_ttn(time: str, rssi: int, as_up: str) -> Uplink:
    body = {"end_device_ids": {"device_id": "gh1-th-02", "dev_eui": "A1B2C3D4E5F60002",
                               "application_ids": {"application_id": "gh"}},
            "correlation_ids": [f"as:up:{as_up}"], "received_at": time,
            "uplink_message": {"f_port": 85, "f_cnt": 104, "frm_payload": BR03_DATA, "received_at": time,
                               "rx_metadata": [{"gateway_ids": {"gateway_id": "gw1"}, "rssi": rssi, "snr": 9}]}}
    return Uplink("v3/gh/devices/gh1-th-02/up", json.dumps(body).encode(), NOW)


@pytest.mark.parametrize(("subs", "make"), [(CS3, br03_cs3), (TTN, br03_ttn)], ids=["chirpstack_v3", "ttn_v3"])
def test_BR_03_same_frame_48s_later_through_v3_envelopes_is_stored_once(
        tmp_path: Path, subs: list[dict[str, str]], make: Any) -> None:
    msgs = [make("2024-03-10T10:00:00Z", -73, "A"), make("2024-03-10T10:00:48Z", -76, "B")]
    commit, series = run(tmp_path, subs, {"a1b2c3d4e5f60002": {"codec": "milesight", "model": "EM300-TH",
                                                               "zone": "house-1"}}, msgs, NOW + 60 * 10**9)
    assert [e.outcome for e in commit.ledger] == ["stored", "duplicate"]
    got = {q: (s.points, s.first_ns, s.last_value) for q, s in series.items()}
    assert got["air_temperature"] == (1, NOW, 30.8)
    assert got["relative_humidity"] == (1, NOW, 50.5)
    assert got["battery"] == (1, NOW, 92.0)
    assert got["rssi"] == (1, NOW, -73.0)  # the first delivery's radio reading, not the duplicate's
