"""Issue 2's bad-input list through the real pipeline: each is a dead letter or a value with a
reason, counted, and none stops ingest. Also: a message committed but not acked before a crash
is recognised when the broker redelivers it."""

from __future__ import annotations

import base64
import json
import math

import pytest

from greennanny.config import config_from_dict
from greennanny.model import Quality, Uplink
from greennanny.runtime.clock import FakeClock
from greennanny.runtime.node import apply_config_devices, build_pipeline
from greennanny.store.duckdb import DuckDBStore

EUI = "24e124136b316543"
APP = "5d3f0c2e-0000-4000-8000-000000000001"
NOW = 1_710_064_800 * 10**9  # 2024-03-10T10:00:00Z


@pytest.fixture
def env(tmp_path):
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path)},
                            "devices": {EUI: {"codec": "milesight", "model": "EM300-TH", "zone": "house-1"}}},
                           base_dir=tmp_path)
    store = DuckDBStore(cfg.store_path)
    apply_config_devices(store, cfg)
    yield cfg, store
    store.close()


def up(data: bytes | str, *, eui: str = EUI, f_cnt: int = 1, dedup: str = "d-1", time: str = "2024-03-10T10:00:00Z",
       raw: bytes | None = None) -> Uplink:
    b64 = data if isinstance(data, str) else base64.b64encode(data).decode()
    body = {"deduplicationId": dedup, "time": time, "deviceInfo": {"devEui": eui, "applicationId": APP},
            "fCnt": f_cnt, "fPort": 85, "data": b64}
    return Uplink(f"application/{APP}/device/{eui}/event/up", raw or json.dumps(body).encode(), NOW, 1, f_cnt)


def js(body: str, topic: str = "greennanny/gh1/house-1/probe-1") -> Uplink:
    return Uplink(topic, body.encode(), NOW, 1, 1)


def run(env, msgs):
    cfg, store = env
    p = build_pipeline(cfg, store, FakeClock(NOW))
    commit = p.process(msgs)
    store.commit_ingest(commit)
    return commit


GOOD = bytes.fromhex("01755C03673401046865")  # battery 92, 30.8 degC, 50.5 %RH


def test_each_bad_input_is_a_dead_letter_with_its_reason_and_ingest_goes_on(env):
    msgs = [
        js("{not json"),
        up("@@notbase64@@", dedup="d-2"),
        up(GOOD, eui="a1b2c3d4e5f60708", dedup="d-3"),
        up(GOOD[:-1], dedup="d-4", f_cnt=4),  # humidity channel cut short
        up(GOOD, dedup="d-5", f_cnt=5),  # and a good one after all that
    ]
    c = run(env, msgs)
    reasons = [(d.reason, d.detail) for d in c.deadletters]
    assert [r for r, _ in reasons] == ["invalid_json", "bad_base64", "unknown_device", "decode_error"]
    assert "line 1 column 2" in reasons[0][1]
    assert "data=" in reasons[1][1]
    assert "a1b2c3d4e5f60708" in reasons[2][1]
    assert "offset 9" in reasons[3][1]
    assert [e.outcome for e in c.ledger] == ["dead_letter"] * 4 + ["stored"]
    assert sorted(p.key.quantity for p in c.batch.points()) == ["air_temperature", "battery", "relative_humidity"]
    # The raw bytes are kept as they came.
    assert c.deadletters[0].payload == b"{not json"


def test_number_as_string_is_parsed_and_nan_unavailable_are_missing_with_reason(env):
    c = run(env, [js('{"air_temperature": "21.5", "relative_humidity": "unavailable", "co2": "nan", "ts": 1710064800123}')])
    by_q = {p.key.quantity: p for p in c.batch.points()}
    assert by_q["air_temperature"].value == 21.5 and by_q["air_temperature"].quality is Quality.OK
    assert by_q["relative_humidity"].quality is Quality.MISSING and math.isnan(by_q["relative_humidity"].value)
    assert "relative_humidity='unavailable'" in by_q["relative_humidity"].reason
    assert by_q["co2"].quality is Quality.MISSING
    # A timestamp in milliseconds is recognised, exactly.
    assert by_q["air_temperature"].ts_ns == 1_710_064_800_123_000_000


def test_redelivery_after_commit_without_ack_is_a_duplicate(env):
    """The crash window: committed, not yet acked. A new pipeline (after restart) seeds its dedupe
    from the store's ledger and recognises the broker's redelivery."""
    cfg, store = env
    run(env, [up(GOOD, dedup="d-9", f_cnt=9)])
    restarted = build_pipeline(cfg, store, FakeClock(NOW + 10**9))
    c = restarted.process([up(GOOD, dedup="d-9", f_cnt=9)])
    assert [e.outcome for e in c.ledger] == ["duplicate"] and len(c.batch) == 0


def test_same_frame_through_another_gateway_48s_later_is_stored_once_BR_03(env):
    """Field fault BR-03: one uplink (fCnt 104) delivered twice, 48 s apart, other dedup ids."""
    data = base64.b64decode("AXVcA2c0AQRoZQ==")
    c = run(env, [up(data, f_cnt=104, dedup="A", time="2024-03-10T10:00:00Z"),
                  up(data, f_cnt=104, dedup="B", time="2024-03-10T10:00:48Z")])
    assert [e.outcome for e in c.ledger] == ["stored", "duplicate"]
    got = {p.key.quantity: (p.ts_ns, p.value) for p in c.batch.points()}
    assert got == {"battery": (NOW, 92.0), "air_temperature": (NOW, 30.8), "relative_humidity": (NOW, 50.5)}
    # "Alert rules are evaluated once": a rule on the reading sees one point and fires one alert.
    from greennanny.alerts.config import AlertsConfig
    from greennanny.alerts.engine import AlertEngine

    rules = AlertsConfig.model_validate({"rules": [{"name": "hot", "quantity": "air_temperature", "value": 30.0}]})
    stats = AlertEngine(env[1], rules).run(NOW + 60 * 10**9)
    assert (stats.samples, stats.transitions, len(stats.events)) == (1, {"firing": 1}, 1)


def test_a_decoder_bug_becomes_a_dead_letter_not_a_crash(env, monkeypatch):
    from greennanny.decoders.milesight import MilesightDecoder

    def boom(self, payload, *, model=None):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(MilesightDecoder, "decode", boom)
    c = run(env, [up(GOOD, dedup="x")])
    assert c.deadletters[0].reason == "internal_error" and "ZeroDivisionError" in c.deadletters[0].detail


def test_device_clock_in_1970_is_quarantined_with_raw_kept(env):
    c = run(env, [js('{"air_temperature": 20, "ts": 12}')])
    assert [e.outcome for e in c.ledger] == ["quarantined"]
    assert "before 2000-01-01" in c.deadletters[0].detail and c.deadletters[0].payload


# A real vector frame per required model, cut inside its last channel's data: the dead letter
# must name the byte offset where that channel's data starts.
TRUNCATED = {  # model: (vector frame, offset of the cut channel's data, bytes of it kept)
    "EM300-TH": ("01755C03673401046865", 9, 0),  # humidity (1 byte) at 9
    "EM320-TH": ("01755C0367CCFF046865", 5, 1),  # temperature (2 bytes) at 5
    "AM307": ("077DE704087D070009733F27", 10, 1),  # pressure at 10
    "AM308": ("077DE704087D070009733F270B7D20000C7D3000", 18, 1),  # pm10 at 18
    "EM500-CO2": ("01756403671901046873057D670406736827", 16, 1),  # pressure at 16
}


@pytest.mark.parametrize("model", sorted(TRUNCATED))
def test_truncated_frame_per_model_is_a_dead_letter_naming_the_offset(tmp_path, model):
    frame_hex, offset, kept = TRUNCATED[model]
    frame = bytes.fromhex(frame_hex)[: offset + kept]
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path)},
                            "devices": {EUI: {"codec": "milesight", "model": model, "zone": "z"}}}, base_dir=tmp_path)
    store = DuckDBStore(cfg.store_path)
    try:
        apply_config_devices(store, cfg)
        c = build_pipeline(cfg, store, FakeClock(NOW)).process([up(frame)])
        (dl,) = c.deadletters
        assert dl.reason == "decode_error" and f"offset {offset}" in dl.detail and dl.payload
    finally:
        store.close()


def test_config_devices_win_over_the_registry_and_the_override_is_logged(env, caplog):
    from greennanny.store.base import DeviceRecord

    cfg, store = env
    store.upsert_device(DeviceRecord(EUI, "milesight", "EM300-TH", "", "greenhouse", "house-9", "", "api"))
    with caplog.at_level("WARNING", logger="greennanny.node"):
        apply_config_devices(store, cfg)
    rec = store.device(EUI)
    assert rec is not None and (rec.zone, rec.source) == ("house-1", "config")
    assert any("config overrides the registry record" in r.getMessage() and "house-9" in r.getMessage()
               for r in caplog.records)
