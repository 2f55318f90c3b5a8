"""The one validated TOML config file.

Every table is a pydantic model with `extra="forbid"` and a description on every field: the
descriptions are the documentation (`greennanny config init` writes them as comments), and a
wrong key or value fails at load with the dotted key path and the value given.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from greennanny.errors import ConfigError
from greennanny.model import QUANTITIES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class NodeConfig(_Section):
    data_dir: str = Field("./data", description="Directory of the store file and node state (relative to the config file).")
    site: str = Field("greenhouse", description="Site name used when a message does not name one.")


class ApiConfig(_Section):
    host: str = Field("127.0.0.1", description="Address the API binds. Anything but loopback requires a token.")
    port: int = Field(8710, ge=1, le=65535, description="TCP port of the API and dashboard.")
    token_file: str = Field("api_token", description="File holding the API bearer token (mode 0600), relative to the config file. Empty: no token.")
    url: str = Field("", description="URL the CLI uses to reach a running node; empty means http://host:port.")


class Subscription(_Section):
    topic: str = Field(description="MQTT topic filter (+ and # wildcards).")
    format: Literal["chirpstack_v4", "chirpstack_v3", "ttn_v3", "json", "line_protocol", "senml"] = Field(
        description="Envelope of messages on this filter.")


def _default_subscriptions() -> list[Subscription]:
    return [
        Subscription(topic="application/+/device/+/event/+", format="chirpstack_v4"),
        Subscription(topic="greennanny/+/+/+", format="json"),
    ]


class MqttConfig(_Section):
    url: str = Field("mqtt://127.0.0.1:1883", description="Broker URL, mqtt:// or mqtts:// (TLS).")
    client_id: str = Field("greennanny-node", description="Client id; fixed so the broker keeps the persistent session across restarts.")
    qos: Literal[0, 1] = Field(1, description="Subscription QoS. 1 is needed for at-least-once delivery; 0 loses messages on reconnect.")
    username: str = Field("", description="Broker user name (empty: anonymous).")
    password_file: str = Field("", description="File holding the broker password, relative to the config file. Never put the password itself here.")
    ca_file: str = Field("", description="CA certificate for mqtts:// (empty: system CAs).")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds.")
    subscriptions: list[Subscription] = Field(default_factory=_default_subscriptions, description="Topic filters and their envelope format.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("mqtt://", "mqtts://")):
            raise ValueError(f"{v!r} must start with mqtt:// or mqtts://")
        return v


class PipelineConfig(_Section):
    batch_max_messages: int = Field(2000, ge=1, le=100000, description="Messages per store commit at most.")
    batch_max_wait_ms: int = Field(200, ge=1, le=10000, description="Longest a message waits before its batch commits (and is acked).")
    batch_idle_ms: int = Field(5, ge=1, le=10000, description="A batch commits early when no message arrived for this long: a broker that has sent its whole in-flight window waits for our acks, so waiting longer only stalls.")
    dedup_window_s: int = Field(120, ge=0, le=86400, description="Same devEUI+fCnt+payload within this window is a duplicate.")
    mode: Literal["live", "backfill"] = Field("live", description="live: device times more than 5 min ahead of the node clock are quarantined; backfill: accept historical data as it comes.")


class ForecastConfig(_Section):
    enabled: bool = Field(True, description="Fit and refresh forecasts for every series with enough history.")
    horizon_h: int = Field(24, ge=1, le=24 * 14, description="Forecast horizon in hours.")
    step_min: int = Field(15, ge=1, le=60, description="Grid step of forecasts in minutes.")
    refresh_min: int = Field(60, ge=1, le=24 * 60, description="How often forecasts are refreshed, in minutes.")
    history_days: int = Field(28, ge=2, le=365, description="Days of history a model is fitted on.")
    backtest_origins: int = Field(3, ge=1, le=30, description="Rolling origins of the selection backtest per series.")
    quantities: list[str] = Field(
        default_factory=lambda: ["air_temperature", "relative_humidity", "co2", "soil_moisture", "soil_temperature"],
        description="Quantities that get forecasts.",
    )

    @field_validator("quantities")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [q for q in v if q not in QUANTITIES]
        if bad:
            raise ValueError(f"unknown quantities {bad}")
        return v


class InfluxWriteConfig(_Section):
    """InfluxDB 1.x compatible `/write` on the node's API port, for Telegraf's `influxdb` output."""

    enabled: bool = Field(True, description="Serve /write, /ping and /query (CREATE DATABASE) like InfluxDB 1.x.")
    username: str = Field("", description="v1 user name clients must send (u= query, Basic auth or Token user:pass). Empty with no password: no v1 auth.")
    password_file: str = Field("", description="File holding the v1 password, relative to the config file.")
    default_zone: str = Field("default", description="Zone of points whose line has no zone tag.")

    def credentials(self, cfg: Config) -> tuple[str, str] | None:
        if not self.username and not self.password_file:
            return None
        pw = cfg.path(self.password_file).read_text().strip() if self.password_file else ""
        return self.username, pw


class DeviceConfig(_Section):
    codec: str = Field("", description="Payload codec for raw `data` (for example milesight).")
    model: str = Field("", description="Device model for table-driven codecs (for example EM300-TH).")
    field_map: str = Field("", description="Field map name for a network-server-decoded `object` (for example rbs305-ath).")
    site: str = Field("", description="Site of the device (empty: node.site).")
    zone: str = Field(description="Zone (compartment, room, bay) the device is in.")
    name: str = Field("", description="Human name of the device.")
    interval_s: int = Field(0, ge=0, le=7 * 86400, description="Expected reporting interval in seconds (0: unknown); bounds the dedup window and flags silent devices.")

    @model_validator(mode="after")
    def _usable(self) -> DeviceConfig:
        from greennanny.ingest.device_check import device_problem

        problem = device_problem(self.codec, self.model, self.field_map)
        if problem:
            raise ValueError(problem)
        return self


class Config(_Section):
    node: NodeConfig = Field(default_factory=NodeConfig, description="The node itself.")
    api: ApiConfig = Field(default_factory=ApiConfig, description="REST API and dashboard.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="The MQTT broker the node subscribes to.")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="Batching and dedupe.")
    forecast: ForecastConfig = Field(default_factory=ForecastConfig, description="Forecasting.")
    influx_write: InfluxWriteConfig = Field(default_factory=InfluxWriteConfig, description="InfluxDB 1.x compatible write endpoint.")
    devices: dict[str, DeviceConfig] = Field(default_factory=dict, description="Devices by devEUI (lower-case hex); applied to the registry at start and wins on conflict.")

    # Where the file was loaded from: relative paths resolve against it. Not a TOML key.
    base_dir: Path = Field(default=Path("."), exclude=True, description="internal")

    @field_validator("devices")
    @classmethod
    def _eui(cls, v: dict[str, DeviceConfig]) -> dict[str, DeviceConfig]:
        out = {}
        for eui, dev in v.items():
            e = eui.lower()
            if len(e) != 16 or any(c not in "0123456789abcdef" for c in e):
                raise ValueError(f"device key {eui!r} is not a 16-hex-digit devEUI")
            out[e] = dev
        return out

    def path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else (self.base_dir / q)

    @property
    def data_dir(self) -> Path:
        return self.path(self.node.data_dir)

    @property
    def store_path(self) -> Path:
        return self.data_dir / "greennanny.duckdb"

    @property
    def api_url(self) -> str:
        if self.api.url:
            return self.api.url.rstrip("/")
        host = "127.0.0.1" if self.api.host in ("0.0.0.0", "::", "") else self.api.host
        return f"http://{host}:{self.api.port}"

    def api_token(self) -> str | None:
        if not self.api.token_file:
            return None
        p = self.path(self.api.token_file)
        return p.read_text().strip() if p.exists() else None

    def mqtt_password(self) -> str | None:
        if not self.mqtt.password_file:
            return None
        return self.path(self.mqtt.password_file).read_text().strip()


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: dotted key path, what is wrong, the value given."""
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {path}: {msg}{shown}")
    return "\n".join(lines)


def config_from_dict(data: dict[str, Any], *, source: str = "config", base_dir: Path | None = None) -> Config:
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    if base_dir is not None:
        cfg.base_dir = base_dir
    return cfg


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found (create one with `greennanny config init {p}`)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    cfg = config_from_dict(data, source=str(p), base_dir=p.resolve().parent)
    check_security(cfg)
    return cfg


def check_security(cfg: Config) -> None:
    """Refuse an API on a non-loopback address without a token (secure by default)."""
    if cfg.api.host not in ("127.0.0.1", "localhost", "::1") and not cfg.api_token():
        raise ConfigError(
            f"api.host: binding {cfg.api.host!r} needs an API token; "
            f"api.token_file {cfg.api.token_file!r} is missing or empty (run `greennanny config init`)"
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


def _section_lines(name: str, model: type[BaseModel], values: BaseModel) -> list[str]:
    lines = [f"[{name}]"] if name else []
    for fname, f in model.model_fields.items():
        if f.exclude:
            continue
        v = getattr(values, fname)
        if isinstance(v, list) and v and isinstance(v[0], BaseModel):
            continue
        if isinstance(v, (BaseModel, dict)):
            continue
        lines.append(f"# {f.description}")
        lines.append(f"{fname} = {_toml_value(v)}")
    return lines


def sample_config(data_dir: str = "./data") -> str:
    """A commented config with every key and its default; `config init` writes this."""
    cfg = Config(node=NodeConfig(data_dir=data_dir))
    out = ["# greennanny configuration. Every key is shown with its default and what it does.", ""]
    for sec in ("node", "api", "mqtt", "pipeline", "forecast", "influx_write"):
        field = Config.model_fields[sec]
        out.append(f"# {field.description}")
        val = getattr(cfg, sec)
        out += _section_lines(sec, type(val), val)
        out.append("")
    for sub in cfg.mqtt.subscriptions:
        out.append("# " + str(MqttConfig.model_fields["subscriptions"].description))
        out.append("[[mqtt.subscriptions]]")
        out += _section_lines("", Subscription, sub)
        out.append("")
    out.append("# " + str(Config.model_fields["devices"].description))
    out.append("# Example (uncomment and edit):")
    for fname, f in DeviceConfig.model_fields.items():
        out.append(f"#   {fname}: {f.description}")
    out.append('# [devices."24e124136b316543"]')
    out.append('# codec = "milesight"')
    out.append('# model = "EM300-TH"')
    out.append('# zone = "house-1"')
    return "\n".join(out) + "\n"


def write_token(path: Path) -> None:
    """A new random API token in a file only its owner can read (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    os.chmod(path, 0o600)
