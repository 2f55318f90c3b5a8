"""The commented sample config that `greennanny config init` writes: every key with its default
and its description, taken from the schema in greennanny.config, so the two cannot drift apart."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel

from greennanny.alerts.config import Band, CropProfile, NotifierConfig, RuleConfig
from greennanny.config import (
    Config,
    DeviceConfig,
    InfluxDBStoreConfig,
    MqttConfig,
    NodeConfig,
    RetentionConfig,
    StoreConfig,
    Subscription,
)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def _section_lines(name: str, model: type[BaseModel], values: BaseModel, keys: set[str] | None = None) -> list[str]:
    """The table's keys with their defaults, each under its description; `keys` limits which."""
    lines = [f"[{name}]"] if name else []
    for fname, f in model.model_fields.items():
        if f.exclude or (keys is not None and fname not in keys):
            continue
        v = getattr(values, fname)
        if isinstance(v, list) and any(isinstance(a, type) and issubclass(a, BaseModel) for a in get_args(f.annotation)):
            continue  # tables of their own ([[...]]), shown as commented examples
        if v is None:
            lines.append(f"# {f.description}")
            lines.append(f"# {fname} =  (not set)")
            continue
        if isinstance(v, (BaseModel, dict)):
            continue
        lines.append(f"# {f.description}")
        lines.append(f"{fname} = {_toml_value(v)}")
    return lines


JSON_TEMPLATE_KEYS = ("template", "fields", "zone", "aliases", "availability")

TEMPLATE_EXAMPLE = """\
[[mqtt.subscriptions]]
topic = "/sys/+/+/+/thing/event/property/post"
format = "json"
template = "/sys/+/{site}/{device}/thing/event/property/post"
fields = "params"
zone = "house-1"
aliases = { temp = "air_temperature", humidity = "relative_humidity" }

[[mqtt.subscriptions]]
topic = "+/+/sensor/+/state"
format = "json"
template = "{site}/{device}/sensor/{quantity}/state"

[[mqtt.subscriptions]]
topic = "+/+/status"
format = "json"
template = "{site}/{device}/status"
availability = true
"""


def _template_example() -> list[str]:
    """Commented json subscriptions for devices in their vendor's topic layout."""
    out = ["# Plain MQTT devices in their vendor's own topic layout (uncomment and edit): a vendor IoT",
           "# platform with readings under params, and Home Assistant style state and status topics.",
           "# The keys only for json subscriptions:"]
    for fname in JSON_TEMPLATE_KEYS:
        out.append(f"#   {fname}: {Subscription.model_fields[fname].description}")
    out += [f"# {line}" if line else "#" for line in TEMPLATE_EXAMPLE.splitlines()]
    return out + [""]


ALERTS_EXAMPLE = """\
[[alerts.rules]]
name = "heat"
quantity = "air_temperature"
value = 32.0
clear = 30.0
for_s = 300
severity = "critical"

[[alerts.rules]]
name = "heat-ahead"
kind = "forecast"
quantity = "air_temperature"
value = 32.0
horizon_h = 6
probability = 0.5

[[alerts.rules]]
name = "silent"
kind = "stale"
quantity = "air_temperature"

[[alerts.profiles]]
name = "tomato-vegetative"
crop = "tomato"
stage = "vegetative"
zones = ["house-1"]
bands = { vpd = { low = 0.5, high = 1.2 }, co2 = { low = 400, high = 1200 } }

[[alerts.notifiers]]
name = "ops-mqtt"
kind = "mqtt"

[[alerts.notifiers]]
name = "ops-webhook"
kind = "webhook"
url = "https://alerts.example.net/greennanny"
token_file = "webhook_token"
"""


def _alerts_example() -> list[str]:
    """Commented rules, a crop profile and notifiers, each key with its description."""
    out = ["# Alert rules, crop profiles and notifiers (uncomment and edit). Keys of a rule:"]
    out += [f"#   {k}: {f.description}" for k, f in RuleConfig.model_fields.items()]
    out.append("# Keys of a crop profile:")
    out += [f"#   {k}: {f.description}" for k, f in CropProfile.model_fields.items()]
    out += [f"#   band {k}: {f.description}" for k, f in Band.model_fields.items()]
    out.append("# Keys of a notifier:")
    out += [f"#   {k}: {f.description}" for k, f in NotifierConfig.model_fields.items()]
    out += [f"# {line}" if line else "#" for line in ALERTS_EXAMPLE.splitlines()]
    return out + [""]


def sample_config(data_dir: str = "./data") -> str:
    """A commented config with every key and its default; `config init` writes this."""
    cfg = Config(node=NodeConfig(data_dir=data_dir))
    out = ["# greennanny configuration. Every key is shown with its default and what it does.", ""]
    for sec in ("node", "api", "mqtt", "pipeline", "forecast", "influx_write", "store", "derived", "alerts"):
        field = Config.model_fields[sec]
        out.append(f"# {field.description}")
        val = getattr(cfg, sec)
        out += _section_lines(sec, type(val), val)
        out.append("")
    out.append(f"# {StoreConfig.model_fields['retention'].description}")
    out += _section_lines("store.retention", RetentionConfig, cfg.store.retention)
    out.append("")
    out.append(f"# {StoreConfig.model_fields['influxdb'].description}")
    out += _section_lines("store.influxdb", InfluxDBStoreConfig, cfg.store.influxdb)
    out.append("")
    for sub in cfg.mqtt.subscriptions:
        out.append("# " + str(MqttConfig.model_fields["subscriptions"].description))
        out.append("[[mqtt.subscriptions]]")
        out += _section_lines("", Subscription, sub, keys=sub.model_fields_set)
        out.append("")
    out += _template_example()
    out += _alerts_example()
    out.append("# " + str(Config.model_fields["devices"].description))
    out.append("# Example (uncomment and edit):")
    for fname, f in DeviceConfig.model_fields.items():
        out.append(f"#   {fname}: {f.description}")
    out.append('# [devices."24e124136b316543"]')
    out.append('# codec = "milesight"')
    out.append('# model = "EM300-TH"')
    out.append('# zone = "house-1"')
    return "\n".join(out) + "\n"
