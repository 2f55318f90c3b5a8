"""The rule engine: each round reads what arrived since the last, steps the machines, persists.

Why rounds over the store and not a hook in ingest: the store is the one place where readings
are deduplicated and range-checked (a duplicate LoRaWAN frame is one stored point, BR-03; a
327.67 degC probe-missing marker is flagged and kept out of alerts, BR-09), derived series (VPD,
dew point) land there too, and forecasts are only there. A round costs one query per rule over
the last `interval_s` of data, and the tracks remember the last sample stepped, so a restart
continues where it stopped and never fires an episode twice.

Rules come from the config and from the API (`alert_rules` table); a name is unique across both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from greennanny.alerts import rules as cond
from greennanny.alerts.config import AlertsConfig, RuleConfig
from greennanny.alerts.machine import Track
from greennanny.alerts.tables import Change, commit_round, load_tracks
from greennanny.errors import ConfigError, InputError
from greennanny.model import Quality
from greennanny.store.base import SeriesInfo
from greennanny.store.duckdb import DuckDBStore

log = logging.getLogger("greennanny.alerts")
S = 1_000_000_000
FIRST_LOOKBACK_NS = 3600 * S  # a new rule looks at the last hour: the condition as it stands now
DERIVABLE = {"vpd", "vpd_leaf", "dew_point", "dew_point_margin", "absolute_humidity", "humidity_deficit",
             "saturation_vapour_pressure", "vapour_pressure", "dli", "gdd"}


@dataclass
class RoundStats:
    rules: int = 0
    series: int = 0
    samples: int = 0
    transitions: dict[str, int] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)


def api_rules(store: DuckDBStore) -> list[RuleConfig]:
    out = []
    for name, body in store.reader().execute("SELECT name, body FROM alert_rules ORDER BY created_ns").fetchall():
        try:
            out.append(RuleConfig.model_validate_json(body))
        except ValidationError as exc:  # written by an older version: skip it loudly, never crash the node
            log.error("alert rule %s from the API no longer validates, skipped: %s", name, exc)
    return out


def check_rule_series(store: DuckDBStore, rule: RuleConfig, *, where: str) -> None:
    """A rule must name series that exist (or derived ones whose inputs exist). On a store with no
    series at all (a node's first start) nothing can be checked and nothing is refused."""
    if not store.series():
        return
    if store.series(site=rule.site or None, zone=rule.zone or None, quantity=rule.quantity, device=rule.device or None):
        return
    if rule.quantity in DERIVABLE and not rule.device and store.series(
            site=rule.site or None, zone=rule.zone or None, quantity="air_temperature"):
        return
    have = sorted({f"{s.key.site}/{s.key.zone}" for s in store.series(quantity=rule.quantity)})
    sel = ", ".join(f"{k}={v!r}" for k, v in (("site", rule.site), ("zone", rule.zone), ("device", rule.device)) if v)
    raise ConfigError(f"{where} rule {rule.name!r}: no series of quantity {rule.quantity!r}"
                      + (f" with {sel}" if sel else "")
                      + (f"; that quantity is in {', '.join(have[:10])}" if have else "; no series has that quantity"))


class AlertEngine:
    def __init__(self, store: DuckDBStore, cfg: AlertsConfig, *, on_events: Callable[[], None] | None = None,
                 first_lookback_ns: int = FIRST_LOOKBACK_NS) -> None:
        self.store = store
        self.first_lookback_ns = first_lookback_ns  # how far back a rule's first round looks (the demo: its history)
        self.cfg = cfg
        self.notifiers = [n.name for n in cfg.notifiers]
        self.on_events = on_events
        self.tracks = load_tracks(store)
        self.rules = self.all_rules()

    def all_rules(self) -> list[RuleConfig]:
        from_config = self.cfg.all_rules()
        names = {r.name for r in from_config}
        extra = [r for r in api_rules(self.store) if r.name not in names]
        return from_config + extra

    def check(self) -> None:
        """Refuse, naming the rule, a rule of the config that matches no series (node start)."""
        for r in self.cfg.all_rules():
            check_rule_series(self.store, r, where="alerts.rules:")

    def targets(self, rule: RuleConfig) -> list[str]:
        return list(rule.notify) or self.notifiers

    @staticmethod
    def _series(rule: RuleConfig, every: Sequence[SeriesInfo]) -> list[SeriesInfo]:
        """The rule's series out of the round's one listing (a listing per rule cost a summary
        query over the tiers each)."""
        return [s for s in every if s.key.quantity == rule.quantity and (not rule.site or s.key.site == rule.site)
                and (not rule.zone or s.key.zone == rule.zone) and (not rule.device or s.key.device == rule.device)]

    def _track(self, rule: RuleConfig, sid: int) -> Track:
        key = (rule.name, sid)
        t = self.tracks.get(key)
        if t is None:
            t = self.tracks[key] = Track(rule.name, sid)
        return t

    def run(self, now_ns: int) -> RoundStats:
        """One round over every rule; persists tracks, alerts and events in one transaction."""
        self.rules = self.all_rules()
        stats = RoundStats(rules=len(self.rules))
        changes: list[Change] = []
        touched: dict[tuple[str, int], Track] = {}
        intervals = {d.dev_eui: d.interval_s for d in self.store.devices() if d.interval_s}
        every = self.store.series()
        for rule in self.rules:
            infos = self._series(rule, every)
            stats.series += len(infos)
            if not infos:
                continue
            try:
                steps = self._evaluate(rule, infos, now_ns, intervals)
            except Exception:  # one broken rule must not stop the others
                log.exception("alert rule %s failed this round", rule.name)
                continue
            for info, samples in steps:
                t = self._track(rule, info.id)
                before = (t.state, t.last_ts)
                for ts, value, breach, clear, detail in samples:
                    stats.samples += 1
                    tr = t.step(ts, value, breach, clear, rule.for_s * S, above=rule.op == "above", detail=detail)
                    if tr is not None:
                        stats.transitions[tr.kind] = stats.transitions.get(tr.kind, 0) + 1
                        changes.append(Change(t, tr, rule, _series_dict(info), self.targets(rule)))
                if (t.state, t.last_ts) != before:
                    touched[(rule.name, info.id)] = t
        if touched or changes:
            stats.events = commit_round(self.store, now_ns, list(touched.values()), changes)
        if stats.events and self.on_events is not None:
            self.on_events()
        return stats

    # -- conditions per kind ----------------------------------------------------------------------
    def _evaluate(self, rule: RuleConfig, infos: Sequence[SeriesInfo], now_ns: int,
                  intervals: dict[str, int]) -> list[tuple[SeriesInfo, list[tuple[int, float, bool, bool, dict[str, Any] | None]]]]:
        if rule.kind == "stale":
            return [(i, self._stale(rule, i, now_ns, intervals)) for i in infos]
        if rule.kind == "forecast":
            return [(i, self._forecast(rule, i, now_ns)) for i in infos]
        return self._readings(rule, infos, now_ns)

    def _readings(self, rule: RuleConfig, infos: Sequence[SeriesInfo], now_ns: int) -> list[Any]:
        back = rule.window_s * S if rule.kind == "rate" else 0
        starts = {i.id: (t.last_ts + 1 if (t := self.tracks.get((rule.name, i.id))) and t.last_ts >= 0
                         else now_ns - self.first_lookback_ns) for i in infos}
        df = self.store.query_many(list(starts), min(starts.values()) - back, now_ns + 1)
        df = df[df["quality"].to_numpy() == int(Quality.OK)]  # flagged readings never raise or clear an alert
        out = []
        by_id = {i.id: i for i in infos}
        for sid, g in df.groupby("series_id", sort=True):
            info = by_id[int(sid)]  # type: ignore[call-overload]
            ts = g["ts"].to_numpy(np.int64)
            v = g["value"].to_numpy(np.float64)
            if rule.kind == "rate":
                v = cond.rate_per_hour(ts, v, rule.window_s * S)
            breach, clear = cond.level(v, rule)
            keep = (ts >= starts[info.id]) & np.isfinite(v)
            out.append((info, [(int(a), float(b), bool(c), bool(d), None) for a, b, c, d in
                               zip(ts[keep], v[keep], breach[keep], clear[keep])]))
        return out

    def _stale(self, rule: RuleConfig, info: SeriesInfo, now_ns: int, intervals: dict[str, int]) -> list[Any]:
        if info.last_ns is None:
            return []
        spacing = np.array([0, (info.last_ns - info.first_ns) // max(info.points - 1, 1)]) if info.first_ns else np.array([])
        limit = cond.stale_after_ns(rule, intervals.get(info.key.device, 0), np.cumsum(spacing))
        age = now_ns - int(info.last_ns)
        detail = {"last_reading_ns": int(info.last_ns), "stale_after_s": limit / S}
        return [(now_ns, age / S, age > limit, age <= limit, detail)]

    def _forecast(self, rule: RuleConfig, info: SeriesInfo, now_ns: int) -> list[Any]:
        got = self.store.latest_forecast(info.id)
        if got is None:
            return []
        meta, pts = got
        made = int(meta["made_ns"])
        t = self.tracks.get((rule.name, info.id))
        if t is not None and made <= t.last_ts:
            return []
        c = cond.crossing(pts, max(now_ns, made), int(rule.horizon_h * 3600 * S), rule, made)
        if c is None:
            return []
        detail = {**c.as_dict(), "horizon_h": rule.horizon_h, "model": meta["model"], "run_id": int(meta["run_id"])}
        return [(made, c.probability, c.probability >= rule.probability, c.probability < rule.clear_p, detail)]


def _series_dict(info: SeriesInfo) -> dict[str, Any]:
    return {"id": info.id, "site": info.key.site, "zone": info.key.zone, "device": info.key.device,
            "quantity": info.key.quantity, "unit": info.unit}


def add_rule(store: DuckDBStore, cfg: AlertsConfig, body: dict[str, Any], *, actor: str, now_ns: int) -> RuleConfig:
    """A rule from the API: validated like the config's, refused if its name is taken or it
    matches no series; audited."""
    from greennanny.mlops.registry import _audit

    try:
        rule = RuleConfig.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"rule {'.'.join(str(p) for p in first['loc']) or 'body'}: {first['msg']} "
                         f"(got {first.get('input')!r})") from None
    taken = {r.name for r in cfg.all_rules()} | {r.name for r in api_rules(store)}
    if rule.name in taken:
        raise InputError(f"name: rule {rule.name!r} exists already")
    unknown = sorted(set(rule.notify) - {n.name for n in cfg.notifiers})
    if unknown:
        raise InputError(f"notify: unknown notifier(s) {unknown}")
    try:
        check_rule_series(store, rule, where="")
    except ConfigError as exc:
        raise InputError(str(exc).strip()) from None

    def tx(con: Any) -> None:
        con.execute("INSERT INTO alert_rules VALUES (?, ?, ?, ?)", [rule.name, rule.model_dump_json(), now_ns, actor])
        _audit(con, now_ns, actor, "alert_rule_add", f"rule {rule.name}", json.loads(rule.model_dump_json()))

    store.transaction(tx)
    return rule


def delete_rule(store: DuckDBStore, name: str, *, actor: str, now_ns: int) -> None:
    from greennanny.mlops.registry import _audit

    if name not in {r.name for r in api_rules(store)}:
        raise InputError(f"name: no rule {name!r} was added through the API (rules of the config file are changed there)")

    def tx(con: Any) -> None:
        con.execute("DELETE FROM alert_rules WHERE name = ?", [name])
        con.execute("DELETE FROM alert_tracks WHERE rule = ? AND state <> 'firing'", [name])
        _audit(con, now_ns, actor, "alert_rule_delete", f"rule {name}", {})

    store.transaction(tx)


def rule_rows(engine_rules: Sequence[RuleConfig], store: DuckDBStore) -> list[dict[str, Any]]:
    """Every rule with where it comes from and how many series it watches now."""
    api = {r.name for r in api_rules(store)}
    out = []
    for r in engine_rules:
        n = len(store.series(site=r.site or None, zone=r.zone or None, quantity=r.quantity, device=r.device or None))
        out.append({**json.loads(r.model_dump_json()), "source": "api" if r.name in api else "config", "series": n})
    return out

