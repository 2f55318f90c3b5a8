"""The [alerts] and [derived] config tables: rules, crop profiles, notifiers, derived metrics.

Kept beside the code that reads them (config.py imports these models), so a rule's keys and
their documentation live in one place. Every field carries its description: `config init`
writes them as comments.
"""

from __future__ import annotations

import functools
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from greennanny.model import QUANTITIES

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _name(v: str, what: str) -> str:
    if not NAME.match(v):
        raise ValueError(f"{what} {v!r}: use 1-64 of a-z 0-9 _ . - (it is a topic level and a URL part)")
    return v


class RuleConfig(_Section):
    name: str = Field(..., description="Rule name: unique, a-z 0-9 _ . - (it names the MQTT state topic and the alerts).")
    kind: Literal["threshold", "rate", "stale", "forecast"] = Field("threshold", description="threshold: the actual value beyond `value` for `for_s`; rate: change per hour over `window_s` beyond `value`; stale: no reading for `stale_after_s` (or stale_factor x the device's reporting interval); forecast: the latest forecast crosses `value` within `horizon_h` with probability >= `probability`.")
    quantity: str = Field(..., description="Quantity of the series the rule watches (a name from the quantities table, for example air_temperature or vpd).")
    site: str = Field("", description="Only series of this site (empty: every site).")
    zone: str = Field("", description="Only series of this zone (empty: every zone).")
    device: str = Field("", description="Only series of this device (empty: every device, derived series included).")
    op: Literal["above", "below"] = Field("above", description="above: alert when the value (or rate) is above `value`; below: when it is below.")
    value: float = Field(0.0, description="Threshold in the quantity's unit (rate: unit per hour; forecast: the level the forecast must not cross).")
    clear: float | None = Field(None, description="Level the value must pass back over for the alert to resolve (hysteresis): below `value` for op=above, above it for op=below. Empty: `value` itself.")
    for_s: int = Field(0, ge=0, le=7 * 86400, description="Seconds the condition must hold before the alert fires (pending until then); 0 fires at once.")
    window_s: int = Field(900, ge=60, le=86400, description="rate: the span the change per hour is measured over.")
    stale_after_s: int = Field(0, ge=0, le=30 * 86400, description="stale: seconds without a reading that make a series stale; 0: stale_factor x the device's reporting interval from the registry (or the series' own median spacing).")
    stale_factor: float = Field(3.0, ge=1.0, le=100.0, description="stale: multiple of the expected reporting interval, used when stale_after_s is 0.")
    horizon_h: float = Field(6.0, gt=0, le=14 * 24, description="forecast: look this many hours ahead of now.")
    probability: float = Field(0.5, gt=0.0, lt=1.0, description="forecast: fire when the probability of crossing at some step within the horizon is at least this (from the forecast's 80 % and 95 % intervals).")
    clear_probability: float | None = Field(None, ge=0.0, lt=1.0, description="forecast: resolve when the crossing probability falls below this (hysteresis); empty: half of `probability`.")
    severity: Literal["info", "warning", "critical"] = Field("warning", description="Severity carried by the alert and its notifications.")
    notify: list[str] = Field(default_factory=list, description="Names of the notifiers that get this rule's events (empty: all of them).")

    @field_validator("name")
    @classmethod
    def _n(cls, v: str) -> str:
        return _name(v, "rule name")

    @field_validator("quantity")
    @classmethod
    def _q(cls, v: str, info: ValidationInfo) -> str:
        if v not in QUANTITIES:
            raise ValueError(f"rule {info.data.get('name', '?')!r}: unknown quantity {v!r}; known: "
                             f"{', '.join(sorted(QUANTITIES))}")
        return v

    @model_validator(mode="after")
    def _levels(self) -> RuleConfig:
        if self.kind != "stale" and "value" not in self.model_fields_set:
            raise ValueError(f"rule {self.name!r}: value is required for a {self.kind} rule (the level it alerts on)")
        if self.clear is not None and self.kind in ("threshold", "rate", "forecast"):
            wrong = self.clear > self.value if self.op == "above" else self.clear < self.value
            if wrong:
                side = "at or below" if self.op == "above" else "at or above"
                raise ValueError(f"rule {self.name!r}: clear = {self.clear:g} must be {side} value = {self.value:g} "
                                 f"for op = {self.op!r} (it is the level that ends the alert)")
        if self.clear_probability is not None and self.clear_probability > self.probability:
            raise ValueError(f"rule {self.name!r}: clear_probability = {self.clear_probability:g} is above "
                             f"probability = {self.probability:g}")
        return self

    @property
    def clear_level(self) -> float:
        return self.value if self.clear is None else self.clear

    @property
    def clear_p(self) -> float:
        return self.probability / 2 if self.clear_probability is None else self.clear_probability


class Band(_Section):
    low: float = Field(..., description="Lower edge of the target band (unit of the quantity).")
    high: float = Field(..., description="Upper edge of the target band.")
    for_s: int = Field(900, ge=0, le=7 * 86400, description="Seconds outside the band before the alert fires.")

    @model_validator(mode="after")
    def _order(self) -> Band:
        if self.low >= self.high:
            raise ValueError(f"band low = {self.low:g} must be below high = {self.high:g}")
        return self


class CropProfile(_Section):
    """Target bands by crop and growth stage, applied to zones: each band becomes two threshold
    rules (below low, above high) with a clear level 10 % of the band's width inside it."""

    name: str = Field(..., description="Profile name, for example house-1-tomato.")
    preset: str = Field("", description="A built-in profile whose bands are the starting point (alerts/data/crop_profiles.toml: lettuce-vegetative, tomato-vegetative, tomato-generative, cucumber-generative); `bands` given here win key by key.")
    crop: str = Field("", description="Crop, for the record (tomato, lettuce, ...).")
    stage: str = Field("", description="Growth stage, for the record (propagation, vegetative, generative, ...).")
    zones: list[str] = Field(default_factory=list, description="Zones the profile applies to (empty: every zone).")
    site: str = Field("", description="Only this site (empty: every site).")
    bands: dict[str, Band] = Field(default_factory=dict, description="Quantity -> target band, for example vpd = { low = 0.5, high = 1.2 }.")
    severity: Literal["info", "warning", "critical"] = Field("warning", description="Severity of the band alerts.")

    @field_validator("name")
    @classmethod
    def _n(cls, v: str) -> str:
        return _name(v, "profile name")

    @field_validator("bands")
    @classmethod
    def _q(cls, v: dict[str, Band]) -> dict[str, Band]:
        for q in v:
            if q not in QUANTITIES:
                raise ValueError(f"band of unknown quantity {q!r}; known: {', '.join(sorted(QUANTITIES))}")
        return v

    @model_validator(mode="after")
    def _preset(self) -> CropProfile:
        if self.preset:
            presets = crop_presets()
            if self.preset not in presets:
                raise ValueError(f"profile {self.name!r}: preset {self.preset!r} is not one of {', '.join(presets)}")
            p = presets[self.preset]
            self.bands = {**{q: Band.model_validate(b) for q, b in p.get("bands", {}).items()}, **self.bands}
            self.crop = self.crop or p.get("crop", "")
            self.stage = self.stage or p.get("stage", "")
        if not self.bands:
            raise ValueError(f"profile {self.name!r}: no bands (give bands or a preset)")
        return self

    def rules(self) -> list[RuleConfig]:
        out = []
        for zone in self.zones or [""]:
            for q, b in self.bands.items():
                margin = 0.1 * (b.high - b.low)
                z = f".{zone}" if zone else ""
                out.append(RuleConfig(name=f"{self.name}{z}.{q}.low", quantity=q, site=self.site, zone=zone, op="below",
                                      value=b.low, clear=b.low + margin, for_s=b.for_s, severity=self.severity))
                out.append(RuleConfig(name=f"{self.name}{z}.{q}.high", quantity=q, site=self.site, zone=zone,
                                      op="above", value=b.high, clear=b.high - margin, for_s=b.for_s,
                                      severity=self.severity))
        return out


@functools.cache
def crop_presets() -> dict[str, dict[str, Any]]:
    """The built-in crop profiles (data, with their sources, in alerts/data/crop_profiles.toml)."""
    return tomllib.loads((Path(__file__).parent / "data" / "crop_profiles.toml").read_text())


class NotifierConfig(_Section):
    name: str = Field(..., description="Notifier name (rules name it in `notify`).")
    kind: Literal["mqtt", "webhook"] = Field(..., description="mqtt: publish on the node's broker connection settings ([mqtt]); webhook: HTTP POST of JSON.")
    topic_prefix: str = Field("greennanny/alerts", description="mqtt: events go to <prefix>/events (QoS 1) and each alert's state, retained, to <prefix>/state/<rule>/<series id>.")
    url: str = Field("", description="webhook: URL to POST to (https:// for anything off this machine).")
    token_file: str = Field("", description="webhook: file holding a bearer token sent as Authorization (relative to the config file); never the token itself.")
    timeout_s: float = Field(5.0, gt=0, le=120, description="Seconds per attempt: webhook connect and each wait for the answer (a hanging receiver is a failed attempt); mqtt the wait for the connection and the broker's acknowledgements.")
    backoff_s: float = Field(2.0, gt=0, le=3600, description="First retry after this many seconds; each next one waits twice as long, up to backoff_max_s.")
    backoff_max_s: float = Field(60.0, gt=0, le=86400, description="Longest wait between two attempts.")
    give_up_h: float = Field(72.0, gt=0, le=24 * 365, description="An event still undelivered after this many hours is marked failed (kept, visible in `alerts list --deliveries`).")

    @field_validator("name")
    @classmethod
    def _n(cls, v: str) -> str:
        return _name(v, "notifier name")

    @model_validator(mode="after")
    def _url(self) -> NotifierConfig:
        if self.kind == "webhook" and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"notifier {self.name!r}: url = {self.url!r} must be an http:// or https:// URL")
        return self


class AlertsConfig(_Section):
    enabled: bool = Field(True, description="Evaluate the rules on the node.")
    interval_s: int = Field(30, ge=1, le=3600, description="Seconds between two evaluation rounds (each round reads only what arrived since the last).")
    rules: list[RuleConfig] = Field(default_factory=list, description="Alert rules ([[alerts.rules]]).")
    profiles: list[CropProfile] = Field(default_factory=list, description="Crop profiles ([[alerts.profiles]]): target bands per zone.")
    notifiers: list[NotifierConfig] = Field(default_factory=list, description="Where alert events go ([[alerts.notifiers]]).")

    @model_validator(mode="after")
    def _unique(self) -> AlertsConfig:
        names = [r.name for r in self.all_rules()]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rule names must be unique: {', '.join(dup)} used more than once")
        notifiers = {n.name for n in self.notifiers}
        if len(notifiers) != len(self.notifiers):
            raise ValueError("notifier names must be unique")
        for r in self.rules:
            unknown = sorted(set(r.notify) - notifiers)
            if unknown:
                raise ValueError(f"rule {r.name!r}: notify names unknown notifier(s) {unknown}")
        return self

    def all_rules(self) -> list[RuleConfig]:
        out = list(self.rules)
        for p in self.profiles:
            out.extend(p.rules())
        return out


class DerivedConfig(_Section):
    enabled: bool = Field(True, description="Compute the derived crop-climate series (VPD, dew point, ...) per zone.")
    interval_s: int = Field(60, ge=1, le=3600, description="Seconds between two rounds of derivation.")
    tolerance_s: int = Field(300, ge=1, le=3600, description="Inputs of one zone are matched in time within this many seconds; a derived point without a partner this close is missing, with the reason.")
    formula: Literal["fao56", "alduchov"] = Field("fao56", description="Saturation vapour pressure: fao56 (Tetens with FAO-56 constants) or alduchov (Magnus, Alduchov & Eskridge 1996).")
    leaf_offset_c: float | None = Field(None, ge=-10, le=10, description="Leaf VPD without a leaf sensor: leaf temperature = air temperature + this offset (degC; typically -1 to -2 under sun). Empty: leaf VPD only where a leaf temperature is measured.")
    dli_day_start: str = Field("rolling", description="DLI window: 'rolling' (the last 24 h, a point an hour) or the local time HH:MM the light day starts (one value a day at its end); never a fixed midnight under grow lights.")
    lux_to_ppfd: float = Field(0.0185, gt=0, le=1.0, description="umol/m2/s per lux when only illuminance is measured: 0.0185 sunlight, 0.0135 white LED (~4000 K), 0.0125 HPS; docs/alerts.md lists sources.")
    gdd_base_c: float = Field(10.0, ge=-10, le=30, description="Base temperature of growing degree days (degC).")

    @field_validator("dli_day_start")
    @classmethod
    def _day(cls, v: str) -> str:
        if v != "rolling" and not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", v):
            raise ValueError(f"dli_day_start {v!r}: 'rolling' or a local time HH:MM")
        return v
