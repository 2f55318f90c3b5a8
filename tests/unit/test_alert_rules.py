"""Rule conditions and their config: forecast crossing probability from the intervals, rate of
change, staleness, crop profiles, and config errors that name the rule and the value."""

from __future__ import annotations

import math
import tomllib

import numpy as np
import pandas as pd
import pytest

from greennanny.alerts import rules as cond
from greennanny.alerts.config import AlertsConfig, RuleConfig
from greennanny.config import config_from_dict
from greennanny.config_sample import ALERTS_EXAMPLE
from greennanny.errors import ConfigError

S = 1_000_000_000
H = 3600 * S


def rule(**kw: object) -> RuleConfig:
    return RuleConfig.model_validate({"name": "r", "quantity": "air_temperature", **kw})


def test_step_probability_reads_sigma_off_the_80_interval() -> None:
    mean = np.array([30.0, 28.0, 25.0, 31.0])
    lo, hi = mean - 2.0, mean + 2.0  # sigma = 2 / 1.2816 = 1.56
    p = cond.step_probability(mean, lo, hi, 30.0, above=True)
    assert p[0] == pytest.approx(0.5)  # the centre is on the level
    assert p[1] == pytest.approx(0.10, abs=1e-9)  # the level is the upper edge of the 80 % interval
    assert p[2] == pytest.approx(0.5 * math.erfc(5 / (2 / cond.Z80) / math.sqrt(2)), rel=1e-9)
    assert p[3] > 0.5
    below = cond.step_probability(mean, lo, hi, 26.0, above=False)
    assert below[1] == pytest.approx(0.10) and below[2] > 0.5
    # a zero-width interval is certain either way
    assert list(cond.step_probability(np.array([29.0, 31.0]), np.array([29.0, 31.0]), np.array([29.0, 31.0]), 30.0,
                                      True)) == [0.0, 1.0]


def test_crossing_gives_probability_and_expected_time_within_the_horizon() -> None:
    now = 1_000 * H
    ts = now + np.arange(1, 49) * 15 * 60 * S  # 12 h at 15 min
    mean = 25.0 + 8.0 * np.sin(np.linspace(0, np.pi, 48))  # peaks at 33 in 6 h
    pts = pd.DataFrame({"ts": ts, "mean": mean, "lo80": mean - 1.5, "hi80": mean + 1.5})
    r = rule(kind="forecast", value=32.0, horizon_h=6, probability=0.5)
    c = cond.crossing(pts, now, 6 * H, r, now)
    assert c is not None and c.probability > 0.7
    first = int(ts[np.argmax(mean > 32.0)])
    assert c.expected_ns == first and c.likely_ns is not None and c.likely_ns <= first
    short = cond.crossing(pts, now, 2 * H, r, now)  # the peak is beyond a 2-hour horizon
    assert short is not None and short.probability < 0.01 and short.expected_ns is None
    assert cond.crossing(pts, int(ts[-1]), 6 * H, r, now) is None  # nothing left ahead


def test_rate_per_hour_needs_a_whole_window() -> None:
    ts = np.arange(0, 31) * 60 * S
    v = 20.0 + np.arange(31) * 0.1  # +6 degC/h
    r = cond.rate_per_hour(ts, v, 15 * 60 * S)
    assert np.isnan(r[:15]).all() and r[15:] == pytest.approx(6.0)


def test_stale_limit_from_rule_device_or_spacing() -> None:
    ts = np.arange(10) * 60 * S
    assert cond.stale_after_ns(rule(kind="stale", stale_after_s=120), 0, ts) == 120 * S
    assert cond.stale_after_ns(rule(kind="stale", stale_factor=3), 600, ts) == 1800 * S
    assert cond.stale_after_ns(rule(kind="stale", stale_factor=3), 0, ts) == 300 * S  # 3 x 60 s, floor 5 min
    assert cond.stale_after_ns(rule(kind="stale", stale_factor=10), 0, ts) == 600 * S


def test_config_errors_name_the_rule_and_the_value() -> None:
    bad = [({"name": "Heat Alarm", "quantity": "air_temperature"}, "rule name 'Heat Alarm'"),
           ({"name": "h", "quantity": "temp"}, "unknown quantity 'temp'"),
           ({"name": "h", "quantity": "co2", "op": "below", "value": 400, "clear": 300},
            "clear = 300 must be at or above value = 400"),
           ({"name": "h", "quantity": "co2", "kind": "forecast", "probability": 1.5}, "probability"),
           ({"name": "h", "quantity": "co2", "value": 1, "notify": ["pager"]}, "unknown notifier(s) ['pager']"),
           ({"name": "h", "quantity": "co2"}, "value is required for a threshold rule")]
    for body, msg in bad:
        with pytest.raises(ConfigError) as e:
            config_from_dict({"alerts": {"rules": [body]}})
        assert msg in str(e.value), str(e.value)
        assert "alerts" in str(e.value) and ("'h'" in str(e.value) or "[h]" in str(e.value) or "Heat Alarm" in str(e.value))
    with pytest.raises(ConfigError, match="unique: h"):
        config_from_dict({"alerts": {"rules": [{"name": "h", "quantity": "co2", "value": 1},
                                               {"name": "h", "quantity": "vpd", "value": 1}]}})
    with pytest.raises(ConfigError, match="url = 'ftp://x' must be an http"):
        config_from_dict({"alerts": {"notifiers": [{"name": "w", "kind": "webhook", "url": "ftp://x"}]}})


def test_crop_profile_preset_becomes_band_rules_with_hysteresis() -> None:
    cfg = AlertsConfig.model_validate({"profiles": [
        {"name": "h1", "preset": "tomato-generative", "zones": ["house-1", "house-2"],
         "bands": {"co2": {"low": 400, "high": 1000, "for_s": 600}}}]})
    rules = {r.name: r for r in cfg.all_rules()}
    assert len(rules) == 2 * 2 * 4  # two zones x four bands x low/high
    hi = rules["h1.house-2.vpd.high"]
    assert (hi.zone, hi.op, hi.value, hi.clear_level, hi.for_s) == ("house-2", "above", 1.2, pytest.approx(1.11), 1800)
    lo = rules["h1.house-1.co2.low"]  # the zone's own band wins over the preset's
    assert (lo.op, lo.value, lo.clear_level, lo.for_s) == ("below", 400.0, pytest.approx(460.0), 600)
    assert cfg.profiles[0].crop == "tomato" and cfg.profiles[0].stage == "generative"
    with pytest.raises(ValueError, match="preset 'tomatoes' is not one of"):
        AlertsConfig.model_validate({"profiles": [{"name": "x", "preset": "tomatoes"}]})
    with pytest.raises(ValueError, match="no bands"):
        AlertsConfig.model_validate({"profiles": [{"name": "x"}]})


def test_the_sample_configs_alert_example_validates() -> None:
    cfg = config_from_dict(tomllib.loads(ALERTS_EXAMPLE))
    kinds = {r.name: r.kind for r in cfg.alerts.all_rules()}
    assert kinds["heat"] == "threshold" and kinds["heat-ahead"] == "forecast" and kinds["silent"] == "stale"
    assert {n.kind for n in cfg.alerts.notifiers} == {"mqtt", "webhook"}


def test_the_readmes_alert_example_validates() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[2] / "README.md").read_text()
    block = next(b.split("\n", 1)[1] for b in text.split("```toml")[1:] if "[[alerts.rules]]" in b).split("```")[0]
    cfg = config_from_dict(tomllib.loads(block))
    names = [r.name for r in cfg.alerts.all_rules()]
    assert names[:2] == ["heat", "heat-ahead"] and len(names) == 2 + 8  # the preset's four bands, low and high
