"""The one validated TOML config file.

Every table is a pydantic model with `extra="forbid"` and a description on every field: the
descriptions are the documentation (`greennanny config init` writes them as comments), and a
wrong key or value fails at load with the dotted key path and the value given.
"""

from __future__ import annotations

import difflib
import logging
import os
import secrets
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from greennanny.alerts.config import AlertsConfig, DerivedConfig
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
    template: str = Field("", description="json only: the devices' own topic layout, levels {site}, {zone}, {device} (required) and {quantity} named, + ignored, the rest literal (for example /sys/+/{site}/{device}/thing/event/property/post). Empty: greennanny/<site>/<zone>/<device>.")
    fields: str = Field("", description="With a template: dotted path to the object that holds the readings (for example params); empty: the top level.")
    zone: str = Field("", description="With a template: zone of devices when the template has no {zone} and the device registry does not know the device (empty: default).")
    aliases: dict[str, str] = Field(default_factory=dict, description="With a template: vendor key or {quantity} level text -> canonical quantity, for example { temp = \"air_temperature\" }.")
    availability: bool = Field(False, description="With a template: the payload is the device's availability (online/offline), recorded as a device event, not a measurement.")

    @field_validator("template")
    @classmethod
    def _template(cls, v: str, info: ValidationInfo) -> str:
        if not v:
            return v
        if "format" in info.data and info.data["format"] != "json":
            raise ValueError(f"a template is only for format \"json\", not {info.data['format']!r}")
        from greennanny.ingest.topic_template import TopicTemplate

        problem = TopicTemplate.parse(v).filter_problem(info.data["topic"]) if "topic" in info.data else None
        if problem:
            raise ValueError(f"template {v!r} does not agree with topic {info.data['topic']!r}: {problem}")
        return v

    @field_validator("fields", "zone", "aliases", "availability")
    @classmethod
    def _needs_template(cls, v: Any, info: ValidationInfo) -> Any:
        if v and "template" in info.data and not info.data["template"]:
            raise ValueError(f"{info.field_name} = {v!r} needs a template (and format \"json\")")
        if info.field_name == "fields" and v and not all(v.split(".")):
            raise ValueError(f"fields = {v!r} has an empty part; write a dotted path such as params or data.values")
        if info.field_name == "aliases":
            for key, q in v.items():
                if q not in QUANTITIES:
                    near = difflib.get_close_matches(q, QUANTITIES, n=3)
                    hint = f"; did you mean {', '.join(near)}?" if near else "; see model.QUANTITIES"
                    raise ValueError(f"aliases.{key} = {q!r} is not a known quantity{hint}")
        if info.field_name == "availability" and v:
            tpl = info.data.get("template", "")
            if "{quantity}" in tpl or info.data.get("fields") or info.data.get("aliases"):
                raise ValueError("availability = true takes no {quantity} level, fields or aliases: "
                                 "its payload is online/offline")
        return v


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


def _known_quantities(v: list[str]) -> list[str]:
    bad = [q for q in v if q not in QUANTITIES]
    if bad:
        raise ValueError(f"unknown quantities {bad}")
    return v


class ForecastInputConfig(_Section):
    """One exogenous input of the forecasts (forecast/panel.py `Exog`), found per forecast series."""

    name: str = Field(..., min_length=1, description="Name of the input in models and logs (for example outside_temperature).")
    quantity: str = Field(..., description="Quantity of the series that provides it.")
    zone: str = Field("", description="Zone of the providing series in the forecast series' site (for example outside); empty: the forecast series' own zone.")
    role: str = Field("lagged", description="lagged: observations, used only as known at the forecast origin; known: a plan or a weather forecast stored with future timestamps, used at the forecast's own steps.")
    for_quantities: list[str] = Field(default_factory=list, description="Forecast quantities that use the input (empty: every forecast quantity).")

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if v not in ("lagged", "known"):
            raise ValueError(f"role {v!r} must be lagged or known (an oracle, future observed values, is for benchmarks only)")
        return v

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, v: str) -> str:
        if v not in QUANTITIES:
            raise ValueError(f"unknown quantity {v!r}")
        return v

    @field_validator("for_quantities")
    @classmethod
    def _for(cls, v: list[str]) -> list[str]:
        return _known_quantities(v)


class ForecastConfig(_Section):
    enabled: bool = Field(True, description="Fit and refresh forecasts for every series with enough history.")
    horizon_h: int = Field(24, ge=1, le=24 * 14, description="Forecast horizon in hours.")
    step_min: int = Field(15, ge=1, le=60, description="Grid step of forecasts in minutes.")
    refresh_min: int = Field(15, ge=1, le=24 * 60, description="How often forecasts are refreshed, in minutes, on the wall-clock grid (:00, :15, ...); a refresh refits each series' chosen model on new data.")
    refit_h: int = Field(24, ge=0, le=24 * 30, description="How often the model per series is chosen again by backtest (with new interval widths), in hours; 0: at every refresh.")
    history_days: int = Field(28, ge=2, le=365, description="Days of history a model is fitted on.")
    backtest_origins: int = Field(3, ge=1, le=30, description="Rolling origins of the selection backtest per series.")
    models: list[str] = Field(default_factory=lambda: ["blend", "lagreg", "profile", "ets"], min_length=1, description="Candidate models of the per-series backtest (names in forecast/models); the first is preferred.")
    prefer_margin: float = Field(0.2, ge=0.0, lt=1.0, description="Another candidate replaces the first only if its backtest MASE is lower by this fraction (a 3-origin backtest is noisy; switching on noise costs accuracy).")
    promotion_gate: bool = Field(True, description="A refit's new version replaces production only if it beats production on the same recent backtest origins by promotion_margin, with calibrated intervals (mlops/gate.py); off: every refit goes live.")
    promotion_margin: float = Field(0.02, ge=0.0, lt=1.0, description="Fraction by which a candidate's MASE must be below production's on the gate's origins to be promoted.")
    promotion_coverage_min: float = Field(0.6, ge=0.0, le=1.0, description="Lowest share of the actuals inside the candidate's 80 % interval on the gate's origins for it to count as calibrated.")
    promotion_coverage_max: float = Field(0.99, ge=0.0, le=1.0, description="Highest such share (an interval that covers everything is too wide to act on).")
    monitor: bool = Field(True, description="After each run: score the forecasts whose targets arrived, then look for sensor faults (step, stuck, silent), drift and accuracy decay (mlops/monitor.py); each finding is an event, drift and decay ask for a retrain.")
    retrain_max_series: int = Field(500, ge=1, le=100_000, description="Budget: at most this many asked-for retrains (drift, decay, by hand) go the full way in one run; the rest wait for the next run, so thousands of retrains never starve ingest.")
    fault_step_min: dict[str, float] = Field(default_factory=lambda: {"air_temperature": 2.0, "leaf_temperature": 2.0, "soil_temperature": 2.0, "relative_humidity": 15.0}, description="Per quantity: the smallest jump between two readings checked as a sensor step (unit of the quantity); quantities not listed are not checked for steps.")
    drift_delta: float = Field(0.1, ge=0.0, le=10.0, description="Page-Hinkley on the daily live MASE: rises smaller than this are tolerated.")
    drift_lambda: float = Field(1.5, gt=0.0, le=100.0, description="Page-Hinkley alarm threshold (accumulated daily MASE above the running mean plus drift_delta).")
    drift_cooldown_days: int = Field(30, ge=1, le=365, description="Days a series is left alone after a drift or decay finding (its retrain needs new scores to be judged).")
    chunk_series: int = Field(500, ge=1, le=100_000, description="Series fitted together in one panel; a run goes chunk by chunk (bounded memory, progress, one store write a chunk).")
    max_gap_min: int = Field(60, ge=0, le=24 * 60, description="Longest gap, in minutes, filled by linear interpolation before fitting; longer gaps stay missing (0: none filled).")
    stuck_factor: float = Field(4.0, ge=1.0, le=100.0, description="A run of identical readings is a stuck sensor when it has this many times the points of the series' normal long run (its 99.9th-percentile run); stuck spans are kept out of training.")
    stuck_after_min: int = Field(60, ge=1, le=7 * 24 * 60, description="A run of identical readings shorter than this, in minutes from its first to its last point, is never called stuck.")
    min_history_days: float = Field(2.0, gt=0, le=365, description="Days of finite history a series needs before models are chosen by backtest; shorter series fall back to seasonal naive or last value, with the reason stored.")
    quantities: list[str] = Field(
        default_factory=lambda: ["air_temperature", "relative_humidity", "co2", "soil_moisture", "soil_temperature"],
        description="Quantities that get forecasts.",
    )
    tz: str = Field("UTC", description="The site's IANA time zone: calendar features follow its local clock across summer time (storage stays UTC).")
    inputs: list[ForecastInputConfig] = Field(default_factory=list, description="Exogenous inputs ([[forecast.inputs]]); the lagreg model and blend's lagreg member use them.")

    def fault_rules(self) -> Any:
        from greennanny.mlops.faults import FaultRules

        return FaultRules(step_min=dict(self.fault_step_min))

    def drift_rules(self) -> Any:
        from greennanny.mlops.drift import DriftRules

        return DriftRules(delta=self.drift_delta, lam=self.drift_lambda, cooldown_days=self.drift_cooldown_days)

    @field_validator("tz")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"tz {v!r} is not an IANA time zone (for example Europe/Amsterdam)") from None
        return v

    @field_validator("inputs")
    @classmethod
    def _unique_inputs(cls, v: list[ForecastInputConfig]) -> list[ForecastInputConfig]:
        names = [i.name for i in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"input names {dup} are given more than once")
        return v

    @field_validator("quantities")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return _known_quantities(v)

    @model_validator(mode="after")
    def _history_fits(self) -> ForecastConfig:
        if self.min_history_days > self.history_days:
            raise ValueError(f"min_history_days={self.min_history_days} is more than the history_days={self.history_days} "
                             "a model is fitted on: every series would fall back")
        return self


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


class InfluxDBStoreConfig(_Section):
    """InfluxDB 1.x as the store (docs/store.md): v1 /write and InfluxQL /query over HTTP."""

    url: str = Field("http://127.0.0.1:8086", description="Base URL of the InfluxDB HTTP API (http:// or https://).")
    database: str = Field("greennanny", description="Database to write to and query (on 2.x: the database of a DBRP mapping).")
    retention_policy: str = Field("", description="Retention policy to write to and manage; empty: the database's default policy.")
    username: str = Field("", description="v1 user name (empty: no authentication, or a token).")
    password_file: str = Field("", description="File holding the v1 password, relative to the config file. Never put the password itself here.")
    token_file: str = Field("", description="File holding an API token (InfluxDB 2.x/3.x v1-compatible API), sent as `Authorization: Token`; wins over username/password.")
    create_database: bool = Field(True, description="Send CREATE DATABASE at start (1.x; turn off on 2.x/3.x, where a DBRP mapping or the database must exist).")
    timeout_s: float = Field(10.0, gt=0, le=300, description="HTTP timeout per request, in seconds.")
    batch_size: int = Field(5000, ge=1, le=100_000, description="Lines per write request (InfluxDB suggests 5,000 to 10,000).")
    max_retries: int = Field(5, ge=0, le=20, description="Retries, with exponential backoff, of a request that failed with a 5xx, a 429 or a connection error (never any other 4xx).")

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"{v!r} must start with http:// or https://")
        return v


class RetentionConfig(_Section):
    """How long the embedded store keeps each tier (docs/design/003-store-tiers.md); 0 keeps forever."""

    raw_days: int = Field(90, ge=0, le=36500, description="Days of raw points (hot rows and cold day files).")
    rollup_1m_days: int = Field(365, ge=0, le=36500, description="Days of 1-minute rollups (min/mean/max/count); at least raw_days, so a plot never has a hole between tiers.")
    rollup_1h_days: int = Field(0, ge=0, le=36500, description="Days of 1-hour rollups; 0 keeps them forever (8,760 rows a series a year).")
    forecasts_days: int = Field(30, ge=0, le=36500, description="Days of stored forecast runs and their points (by when the run was made); 0 keeps them forever.")
    ledger_days: int = Field(30, ge=0, le=36500, description="Days of the message ledger (one row per message received; the outcome counts cover this span); 0 keeps it forever.")
    deadletters_days: int = Field(90, ge=0, le=36500, description="Days of dead letters and device events; 0 keeps them forever.")
    events_days: int = Field(365, ge=0, le=36500, description="Days of closed history: resolved alerts with their events and deliveries (pending ones are kept until delivered or failed), expired silences, closed model health events and promotion-gate decisions; the audit log is kept forever. 0 keeps them forever.")
    forecasts_thin_after_h: int = Field(48, ge=0, le=24 * 3650, description="Hours after which a scored forecast run is removed unless it is the series' latest or its first of that UTC day (its accuracy is kept in the live scores); 0 keeps every run until forecasts_days.")
    model_versions_kept: int = Field(3, ge=1, le=1000, description="Model versions per series whose artifacts are kept: the newest this many and the production one. Older versions keep their registry rows and lineage; a rollback to one of them is refused, saying its artifact was removed.")
    compact_after_h: int = Field(48, ge=1, le=24 * 365, description="A UTC day moves from the hot DuckDB rows to its compressed Parquet file this many hours after it ends (late points still land after that, and win).")
    interval_min: int = Field(60, ge=1, le=24 * 60, description="How often the node runs compaction and retention, in minutes.")

    @model_validator(mode="after")
    def _rollups_outlive_raw(self) -> RetentionConfig:
        def span(days: int) -> float:
            return float("inf") if days == 0 else days

        if span(self.rollup_1m_days) < span(self.raw_days) or span(self.rollup_1h_days) < span(self.rollup_1m_days):
            raise ValueError(f"rollups must be kept at least as long as what they summarise: raw_days={self.raw_days}, "
                             f"rollup_1m_days={self.rollup_1m_days}, rollup_1h_days={self.rollup_1h_days} (0 = forever)")
        return self


class StoreConfig(_Section):
    backend: Literal["duckdb", "influxdb"] = Field("duckdb", description="duckdb: the embedded file in node.data_dir (the node runs on this). influxdb: an InfluxDB server, see [store.influxdb]; the node refuses it for now, since its ledger, dead letters and devices live in DuckDB (docs/store.md).")
    influxdb: InfluxDBStoreConfig = Field(default_factory=InfluxDBStoreConfig, description="InfluxDB server store (used when backend = \"influxdb\").")
    retention: RetentionConfig = Field(default_factory=RetentionConfig, description="Retention and compaction of the embedded store.")


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
    store: StoreConfig = Field(default_factory=StoreConfig, description="Where points are stored.")
    derived: DerivedConfig = Field(default_factory=DerivedConfig, description="Derived crop-climate series per zone.")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Alert rules, crop profiles and notifiers.")
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


def _dotted(loc: tuple[Any, ...], data: Any) -> str:
    """The key path; an element of a table array is named by its `name` when it has one
    (alerts.rules[heat].probability, not alerts.rules.0.probability)."""
    parts: list[str] = []
    node = data
    for p in loc:
        if isinstance(p, int) and isinstance(node, list) and p < len(node):
            node = node[p]
            name = node.get("name") if isinstance(node, dict) else None
            if isinstance(name, str) and parts:
                parts[-1] += f"[{name}]"
            else:
                parts.append(str(p))
            continue
        node = node.get(p) if isinstance(node, dict) else None
        parts.append(str(p))
    return ".".join(parts)


def format_validation_error(exc: ValidationError, source: str, data: Any = None) -> str:
    """One line per problem: dotted key path, what is wrong, the value given."""
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        path = _dotted(tuple(err["loc"]), data) or "(top level)"
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
        raise ConfigError(format_validation_error(exc, source, data)) from None
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
    """Refuse an API on a non-loopback address without a token, and a token file that other
    users can read (as ssh refuses such a key); warn about other secret files that are."""
    if cfg.api.token_file:
        token = cfg.path(cfg.api.token_file)
        if token.exists() and token.stat().st_mode & 0o077:
            raise ConfigError(
                f"api.token_file: {token} has mode {stat.S_IMODE(token.stat().st_mode):04o}, readable by other "
                f"users; run `chmod 600 {token}` (or `greennanny config init --force` for a new token)")
    if cfg.api.host not in ("127.0.0.1", "localhost", "::1") and not cfg.api_token():
        raise ConfigError(
            f"api.host: binding {cfg.api.host!r} needs an API token; "
            f"api.token_file {cfg.api.token_file!r} is missing or empty (run `greennanny config init`)"
        )
    for key, name in (("mqtt.password_file", cfg.mqtt.password_file),
                      ("influx_write.password_file", cfg.influx_write.password_file),
                      ("store.influxdb.password_file", cfg.store.influxdb.password_file),
                      ("store.influxdb.token_file", cfg.store.influxdb.token_file)):
        if name and (f := cfg.path(name)).exists() and f.stat().st_mode & 0o077:
            logging.getLogger("greennanny.config").warning(
                "%s: %s is readable by other users (mode %04o); chmod 600 it", key, f, stat.S_IMODE(f.stat().st_mode))


def write_token(path: Path) -> None:
    """A new random API token in a file only its owner can read (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    os.chmod(path, 0o600)
