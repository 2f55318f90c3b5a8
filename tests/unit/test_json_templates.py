"""json subscriptions with a topic template: the grammar, the config checks, the handler, dedupe,
and that the default greennanny/<site>/<zone>/<device> layout is untouched beside them."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from greennanny.config import config_from_dict
from greennanny.config_sample import TEMPLATE_EXAMPLE, sample_config
from greennanny.errors import ConfigError, DecodeError
from greennanny.ingest.json_topic import TemplateJsonTopic
from greennanny.ingest.topic_template import TopicTemplate
from greennanny.model import QUANTITIES, Outcome, Quality, Uplink
from greennanny.runtime.clock import FakeClock
from greennanny.runtime.node import build_pipeline
from greennanny.store.base import DeviceRecord
from greennanny.store.duckdb import DuckDBStore

NOW = 1_710_064_800 * 10**9  # 2024-03-10T10:00:00Z
HA = "{site}/{device}/sensor/{quantity}/state"


def handler(template: str, **kw: Any) -> TemplateJsonTopic:
    return TemplateJsonTopic(TopicTemplate.parse(template), **kw)


def up(topic: str, payload: bytes | str, t: int = NOW) -> Uplink:
    return Uplink(topic, payload.encode() if isinstance(payload, str) else payload, t)


# -- the template grammar ---------------------------------------------------------------------------------
def test_levels_follow_mqtt_a_leading_slash_is_an_empty_level_0():
    t = TopicTemplate.parse("/sys/+/{site}/{device}/post")
    assert t.values("/sys/app/gh1/d1/post") == {"site": "gh1", "device": "d1"}
    for topic in ("sys/app/gh1/d1/post", "//sys/app/gh1/d1/post", "/sys/app/gh1/d1/post/"):
        with pytest.raises(ValueError):
            t.values(topic)


def test_foo_slash_foo_and_foo_trailing_slash_are_three_different_topics():
    plain, leading, trailing = (TopicTemplate.parse(x) for x in ("foo/{device}", "/foo/{device}", "foo/{device}/"))
    assert plain.values("foo/d") == {"device": "d"}
    assert leading.values("/foo/d") == {"device": "d"}
    assert trailing.values("foo/d/") == {"device": "d"}
    for t, topic in ((plain, "/foo/d"), (leading, "foo/d"), (trailing, "foo/d"), (plain, "foo/d/")):
        with pytest.raises(ValueError, match="levels"):
            t.values(topic)
    with pytest.raises(ValueError, match=r"level 0 is 'x', the template has '' \(empty"):
        leading.values("x/foo/d")


def test_a_named_level_must_not_be_empty():
    with pytest.raises(ValueError, match=r"level 1 \(\{device\}\) is empty"):
        TopicTemplate.parse("gh/{device}/status").values("gh//status")


@pytest.mark.parametrize("text, problem", [
    ("", "cannot be empty"),
    ("gh/{site}/status", "no {device} level"),
    ("gh/{device}/{device}", "appears twice"),
    ("gh/{device}/#", "no # in a template"),
    ("gh/x+/{device}", "must be literal text"),
    ("gh/{room}/{device}", "must be literal text"),
])
def test_bad_templates_say_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=problem.replace("{", r"\{").replace("}", r"\}").replace("+", r"\+")):
        TopicTemplate.parse(text)


@pytest.mark.parametrize("topic_filter, template, ok", [
    ("/sys/+/+/+/post", "/sys/+/{site}/{device}/post", True),
    ("sys/+/+/+/post", "/sys/+/{site}/{device}/post", False),  # level counts differ
    ("/sys/+/+/+/post", "sys/+/{site}/{device}/post/", False),  # level 0: '' vs 'sys'
    ("gh1/+/status", "{site}/{device}/status", True),  # a named level on a literal filter level
    ("+/+/status", "gh1/{device}/status", True),  # narrower than the filter
    ("homeassistant/#", "homeassistant/sensor/{device}/{quantity}/state", True),
    ("homeassistant/#", "ha/sensor/{device}/state", False),
    ("a/b/#", "a/{device}", True),  # a/# also matches a itself
])
def test_the_template_must_agree_with_the_filter(topic_filter, template, ok):
    assert (TopicTemplate.parse(template).filter_problem(topic_filter) is None) is ok


# -- the config -------------------------------------------------------------------------------------------
def sub_error(**sub: Any) -> str:
    with pytest.raises(ConfigError) as e:
        config_from_dict({"mqtt": {"subscriptions": [{"format": "json", **sub}]}})
    return str(e.value)


def test_config_errors_name_the_dotted_key_and_the_value():
    msg = sub_error(topic="/sys/+/+/+/post", template="sys/+/{site}/{device}/post")
    assert "mqtt.subscriptions.0.template" in msg and "'sys/+/{site}/{device}/post'" in msg
    assert "level 0" in msg and "empty" in msg
    msg = sub_error(topic="a/+", template="a/{device}", aliases={"temp": "air_temp"})
    assert "mqtt.subscriptions.0.aliases" in msg and "aliases.temp = 'air_temp'" in msg and "air_temperature" in msg
    msg = sub_error(topic="a/+", template="a/{site}")
    assert "mqtt.subscriptions.0.template" in msg and "{device}" in msg
    msg = sub_error(topic="a/+", format="senml", template="a/{device}")
    assert "only for format \"json\"" in msg
    msg = sub_error(topic="a/+", fields="params")
    assert "mqtt.subscriptions.0.fields" in msg and "needs a template" in msg
    msg = sub_error(topic="a/+", template="a/{device}", fields="params..x")
    assert "mqtt.subscriptions.0.fields" in msg and "empty part" in msg
    msg = sub_error(topic="a/+/+", template="a/{device}/{quantity}", availability=True)
    assert "mqtt.subscriptions.0.availability" in msg
    msg = sub_error(topic="a/+", template="a/{device}", colour="red")
    assert "mqtt.subscriptions.0.colour: unknown key" in msg


def test_the_sample_lists_template_subscriptions_that_validate_when_uncommented():
    text = sample_config()
    assert all(f"#   {k}: " in text for k in ("template", "fields", "zone", "aliases", "availability"))
    assert "".join("# " + line + "\n" if line else "#\n" for line in TEMPLATE_EXAMPLE.splitlines()) in text
    subs = tomllib.loads(TEMPLATE_EXAMPLE)["mqtt"]["subscriptions"]
    cfg = config_from_dict({"mqtt": {"subscriptions": subs}})
    assert [s.template for s in cfg.mqtt.subscriptions][1] == HA
    # the active default subscriptions do not list the template keys
    assert "template = " not in tomllib.loads(text).get("mqtt", {}).get("subscriptions", [{}])[0]


def test_the_readme_template_example_validates():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    subs = tomllib.loads(block)["mqtt"]["subscriptions"]
    assert [s.template for s in config_from_dict({"mqtt": {"subscriptions": subs}}).mqtt.subscriptions] == [
        "/sys/+/{site}/{device}/thing/event/property/post", HA, "{site}/{device}/status"]


def test_power_factor_is_a_quantity_like_its_neighbours():
    q = QUANTITIES["power_factor"]
    assert (q.unit, q.resolution, q.valid_min, q.valid_max) == ("1", 0.001, -1.0, 1.0)


# -- the handler ------------------------------------------------------------------------------------------
def test_readings_under_a_dotted_path_with_aliases_and_unknown_keys_listed():
    h = handler("/sys/+/{site}/{device}/post", fields="data.params", zone="house-2",
                aliases={"temp": "air_temperature", "hum": "relative_humidity"})
    got = h.handle(up("/sys/app/gh1/d1/post", '{"time": "2024-03-10T09:59:00Z", "data": {"params": '
                      '{"temp": "21.5", "hum": 63, "co2": 612, "rssi_raw": -70}}}'))
    assert (got.site, got.zone, got.device, got.ts_ns) == ("gh1", "house-2", "d1", NOW - 60 * 10**9)
    assert [(r.quantity, r.value) for r in got.readings] == [("air_temperature", 21.5), ("relative_humidity", 63.0),
                                                             ("co2", 612.0)]
    assert got.unmapped == ["rssi_raw"] and got.dedup_key.startswith("j:")


def test_time_inside_the_fields_object_and_per_key_value_time_objects():
    h = handler("/sys/+/{site}/{device}/post", fields="params")
    got = h.handle(up("/sys/a/gh1/d1/post", '{"params": {"ts": 1710064700, "battery": 87}}'))
    assert got.ts_ns == (NOW // 10**9 - 100) * 10**9 and got.readings[0].ts_ns is None
    got = h.handle(up("/sys/a/gh1/d1/post", '{"params": {"battery": {"value": 87, "time": 1658304432058}}}'))
    assert got.readings[0].ts_ns == 1658304432058 * 10**6 and got.dedup_key  # its own time: exact dedupe
    with pytest.raises(DecodeError, match="no object at 'params'"):
        h.handle(up("/sys/a/gh1/d1/post", '{"battery": 87}'))


@pytest.mark.parametrize("payload, value, quality", [
    ("21.5", 21.5, Quality.OK), ('"21.5"', 21.5, Quality.OK), (" 21.5\n", 21.5, Quality.OK),
    ("nan", math.nan, Quality.MISSING), ("NaN", math.nan, Quality.MISSING), ("unknown", math.nan, Quality.MISSING),
    ("unavailable", math.nan, Quality.MISSING), ("null", math.nan, Quality.MISSING), ("", math.nan, Quality.MISSING),
    ("ON", math.nan, Quality.MISSING), ("95", 95.0, Quality.FLAGGED),
    ('{"value": 0.5, "ts": 1710064800}', 0.5, Quality.OK),
])
def test_a_quantity_level_takes_a_bare_scalar(payload, value, quality):
    got = handler(HA).handle(up("gh1/th/sensor/air_temperature/state", payload))
    (r,) = got.readings
    assert r.quantity == "air_temperature" and r.quality is quality
    assert (math.isnan(r.value) and math.isnan(value)) or r.value == value
    if quality is Quality.MISSING:
        assert r.reason and ("air_temperature=" in r.reason or "value=" in r.reason)


def test_a_quantity_level_maps_through_aliases_and_an_unknown_one_is_a_dead_letter():
    got = handler(HA, aliases={"temperature": "air_temperature"}).handle(up("gh1/th/sensor/temperature/state", "21"))
    assert got.readings[0].quantity == "air_temperature"
    with pytest.raises(DecodeError, match="'wifi_signal' is not a known quantity") as e:
        handler(HA).handle(up("gh1/th/sensor/wifi_signal/state", "-60"))
    assert e.value.reason == "no_known_quantity"


@pytest.mark.parametrize("payload, reason", [("[1, 2]", "invalid_envelope"), ('{"value": 1', "invalid_json"),
                                             (b"\xff\xfe", "invalid_json")])
def test_bad_scalar_payloads_are_dead_letters(payload, reason):
    with pytest.raises(DecodeError) as e:
        handler(HA).handle(up("gh1/fan/sensor/power_factor/state", payload))
    assert e.value.reason == reason


def test_a_topic_that_does_not_fit_names_the_topic_and_the_template():
    with pytest.raises(DecodeError) as e:
        handler(HA).handle(up("gh1/fan/binary_sensor/power_factor/state", "1"))
    assert e.value.reason == "bad_topic"
    assert "'gh1/fan/binary_sensor/power_factor/state'" in str(e.value) and HA in str(e.value)
    assert "level 2 is 'binary_sensor'" in str(e.value)


@pytest.mark.parametrize("payload, state", [("online", "online"), ("Online", "online"), ("offline", "offline"),
                                            ("true", "online"), ("false", "offline"), ('{"state": "online"}', "online"),
                                            ("0", "offline")])
def test_availability_is_a_device_event(payload, state):
    got = handler("{site}/{device}/status", availability=True).handle(up("gh1/fan-ctrl/status", payload))
    assert got.outcome is Outcome.NON_UPLINK and not got.readings
    assert got.events == [("availability", state)] and got.device == "fan-ctrl"
    with pytest.raises(DecodeError) as e:
        handler("{site}/{device}/status", availability=True).handle(up("gh1/fan-ctrl/status", "rebooting"))
    assert e.value.reason == "bad_availability"


def test_zone_and_site_come_from_the_template_else_the_registry_else_the_subscription():
    reg = {"a1b2c3d4e5f60004": DeviceRecord("a1b2c3d4e5f60004", "", "", "", "north", "house-9", "", "api")}
    h = handler("t/{device}/{quantity}", zone="house-1", devices=reg.get, default_site="gh")
    known = h.handle(up("t/A1B2C3D4E5F60004/co2", "600"))
    assert (known.site, known.zone, known.device) == ("north", "house-9", "A1B2C3D4E5F60004")
    other = h.handle(up("t/probe/co2", "600"))
    assert (other.site, other.zone) == ("gh", "house-1")
    assert handler("t/{device}/{quantity}").handle(up("t/probe/co2", "600")).zone == "default"
    named = handler("{site}/{zone}/{device}/{quantity}", zone="z", devices=reg.get)
    assert (named.handle(up("s/z1/a1b2c3d4e5f60004/co2", "1")).zone) == "z1"


# -- through the pipeline: dedupe, routing beside the default layout --------------------------------------
@pytest.fixture
def pipeline(tmp_path: Path):
    subs = [{"topic": "greennanny/+/+/+", "format": "json"},
            {"topic": "+/+/sensor/+/state", "format": "json", "template": HA},
            {"topic": "/sys/+/+/+/post", "format": "json", "template": "/sys/+/{site}/{device}/post",
             "fields": "params"}]
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path)}, "mqtt": {"subscriptions": subs},
                            "pipeline": {"dedup_window_s": 120}}, base_dir=tmp_path)
    store = DuckDBStore(cfg.store_path)
    yield build_pipeline(cfg, store, FakeClock(NOW + 3600 * 10**9))
    store.close()


def test_a_scalar_without_its_own_time_repeats_legitimately_but_a_quick_redelivery_is_a_duplicate(pipeline):
    topic = "gh1/fan/sensor/power_factor/state"
    c = pipeline.process([up(topic, "0.93", NOW), up(topic, "0.93", NOW + 5 * 10**9),
                          up(topic, "0.93", NOW + 300 * 10**9)])
    assert [e.outcome for e in c.ledger] == ["stored", "duplicate", "stored"]
    assert [p.ts_ns for p in c.batch.points()] == [NOW, NOW + 300 * 10**9]


def test_a_message_with_its_own_time_is_deduplicated_exactly(pipeline):
    body = '{"params": {"battery": 87}, "timestamp": 1710064800000}'
    c = pipeline.process([up("/sys/a/gh1/d1/post", body, NOW), up("/sys/a/gh1/d1/post", body, NOW + 600 * 10**9)])
    assert [e.outcome for e in c.ledger] == ["stored", "duplicate"]


def test_the_default_layout_is_unchanged_beside_template_routes(pipeline):
    c = pipeline.process([up("greennanny/gh/house-1/probe", '{"air_temperature": 21.5, "ts": 1710064800}'),
                          up("greennanny/gh/house-1/probe", '{"temp": 21.5}'),
                          up("gh1/fan/sensor/power_factor/state", "0.5")])
    assert [e.outcome for e in c.ledger] == ["stored", "dead_letter", "stored"]
    assert [str(p.key) for p in c.batch.points()] == ["gh/house-1/probe/air_temperature",
                                                      "gh1/default/fan/power_factor"]
    assert c.deadletters[0].reason == "no_known_quantity"
