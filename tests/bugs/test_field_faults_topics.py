"""Field faults of ../shared/cases/field-faults.md about plain MQTT devices in their vendor's topic
layout (json subscriptions with a topic template), each through the real pipeline and store
(build_pipeline, as tests/unit/test_pipeline_bad_input.py does)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from greennanny.config import config_from_dict
from greennanny.ingest.envelope import topic_matches
from greennanny.model import Quality, Uplink
from greennanny.runtime.clock import FakeClock
from greennanny.runtime.node import build_pipeline
from greennanny.store.base import IngestCommit, SeriesInfo
from greennanny.store.duckdb import DuckDBStore

NOW = 1_710_064_800 * 10**9  # 2024-03-10T10:00:00Z


def run(tmp_path: Path, subscriptions: list[dict[str, Any]], msgs: list[Uplink]
        ) -> tuple[IngestCommit, dict[str, SeriesInfo], list[tuple[int, str, str, str]], list[tuple[int, float, int]]]:
    """Process `msgs` with a fresh node's pipeline and commit; the stored series, events and all rows."""
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path), "site": "greenhouse"},
                            "mqtt": {"subscriptions": subscriptions}}, base_dir=tmp_path)
    store = DuckDBStore(cfg.store_path)
    try:
        commit = build_pipeline(cfg, store, FakeClock(NOW)).process(msgs)
        store.commit_ingest(commit)
        rows = [(int(r.ts), None if r.value != r.value else float(r.value), int(r.quality))
                for r in store.rows().sort_values("ts", kind="stable").itertuples()]
        return commit, {s.key.quantity: s for s in store.series()}, store.device_events(), rows
    finally:
        store.close()


# -- BR-08: a topic with a leading `/`: the empty first level is level 0 --------------------------------
BR08_TOPIC = "/sys/gh-app/gh1/a1b2c3d4e5f60004/thing/event/property/post"
BR08_PAYLOAD = (b'{"id":"1","version":"1.0","params":{"battery":87},"method":"thing.event.property.post",'
                b'"timestamp":1658304432058}')
BR08_SUB = {"topic": "/sys/+/+/+/thing/event/property/post", "format": "json",
            "template": "/sys/+/{site}/{device}/thing/event/property/post", "fields": "params", "zone": "house-1"}


def test_BR_08_leading_slash_is_an_empty_level_0_so_level_3_is_site_and_level_4_device(tmp_path: Path) -> None:
    commit, series, _, _ = run(tmp_path, [BR08_SUB], [Uplink(BR08_TOPIC, BR08_PAYLOAD, NOW)])
    assert [e.outcome for e in commit.ledger] == ["stored"] and not commit.deadletters
    (p,) = commit.batch.points()
    assert (p.key.site, p.key.zone, p.key.device, p.key.quantity) == ("gh1", "house-1", "a1b2c3d4e5f60004", "battery")
    assert p.value == 87.0 and p.quality is Quality.OK
    assert p.ts_ns == 1658304432058 * 10**6
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=p.ts_ns // 1000)
    assert when.isoformat(timespec="milliseconds").replace("+00:00", "Z") == "2022-07-20T08:07:12.058Z"
    s = series["battery"]
    assert (s.points, s.last_value, s.first_ns) == (1, 87.0, 1658304432058 * 10**6)


def test_BR_08_a_pattern_without_the_leading_slash_does_not_match(tmp_path: Path) -> None:
    no_slash = "sys/+/+/+/thing/event/+/post"
    assert not topic_matches(no_slash, BR08_TOPIC) and topic_matches(BR08_SUB["topic"], BR08_TOPIC)
    sub = {"topic": no_slash, "format": "json", "template": "sys/+/{site}/{device}/thing/event/property/post",
           "fields": "params"}
    commit, series, _, _ = run(tmp_path, [sub], [Uplink(BR08_TOPIC, BR08_PAYLOAD, NOW)])
    assert [d.reason for d in commit.deadletters] == ["unknown_topic"] and not series
    assert BR08_TOPIC in commit.deadletters[0].detail


def test_BR_08_a_slashed_topic_under_a_broader_filter_that_misfits_the_template_is_a_dead_letter(tmp_path: Path) -> None:
    sub = {**BR08_SUB, "topic": "#", "template": "sys/+/{site}/{device}/thing/event/property/post"}
    commit, series, _, _ = run(tmp_path, [sub], [Uplink(BR08_TOPIC, BR08_PAYLOAD, NOW)])
    (dl,) = commit.deadletters
    assert dl.reason == "bad_topic" and not series
    assert BR08_TOPIC in dl.detail and "sys/+/{site}/{device}/thing/event/property/post" in dl.detail


# -- BR-11: `nan` / `online` payloads on numeric sensor topics (Home Assistant layout) ------------------
HA_SUBS = [{"topic": "+/+/sensor/+/state", "format": "json", "template": "{site}/{device}/sensor/{quantity}/state"},
           {"topic": "+/+/status", "format": "json", "template": "{site}/{device}/status", "availability": True}]
STATE = "gh1/fan-ctrl/sensor/power_factor/state"


@pytest.mark.parametrize("word", ["nan", "unavailable", "unknown"])
def test_BR_11_nan_is_missing_online_is_availability_then_0_93_is_stored(tmp_path: Path, word: str) -> None:
    msgs = [Uplink(STATE, word.encode(), NOW), Uplink("gh1/fan-ctrl/status", b"online", NOW + 10**9),
            Uplink(STATE, b"0.93", NOW + 2 * 10**9)]
    commit, series, events, rows = run(tmp_path, HA_SUBS, msgs)
    assert [e.outcome for e in commit.ledger] == ["stored", "non_uplink", "stored"] and not commit.deadletters
    missing, stored = commit.batch.points()
    assert missing.key == stored.key and (missing.key.site, missing.key.device) == ("gh1", "fan-ctrl")
    assert missing.key.quantity == "power_factor" and missing.key.zone == "default"
    # (1) a gap with its reason, never a float NaN offered as a value
    assert missing.quality is Quality.MISSING and math.isnan(missing.value)
    assert missing.reason == f"power_factor={word!r} means no value"
    # (2) availability is a device event, not a measurement
    assert events == [(NOW + 10**9, "fan-ctrl", "availability", "online")]
    assert set(series) == {"power_factor"}
    # (3) stored as 0.93
    assert (stored.value, stored.quality, stored.ts_ns) == (0.93, Quality.OK, NOW + 2 * 10**9)
    assert series["power_factor"].last_value == 0.93
    assert [(ts, q) for ts, _, q in rows] == [(NOW, int(Quality.MISSING)), (NOW + 2 * 10**9, int(Quality.OK))]
    assert rows[0][1] is None or math.isnan(rows[0][1])  # stored as a gap (NULL), with its quality and reason
    assert rows[1][1] == 0.93


def test_BR_11_the_same_payloads_as_json_scalars_behave_the_same(tmp_path: Path) -> None:
    msgs = [Uplink(STATE, json.dumps("nan").encode(), NOW), Uplink(STATE, b"NaN", NOW + 1),
            Uplink("gh1/fan-ctrl/status", b'"online"', NOW + 2), Uplink(STATE, b'"0.93"', NOW + 3)]
    commit, _, events, _ = run(tmp_path, HA_SUBS, msgs)
    assert [e.outcome for e in commit.ledger] == ["stored", "stored", "non_uplink", "stored"]
    assert [p.quality for p in commit.batch.points()] == [Quality.MISSING, Quality.MISSING, Quality.OK]
    assert [e[3] for e in events] == ["online"]
