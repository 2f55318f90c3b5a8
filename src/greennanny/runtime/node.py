"""The edge node: wires config to plugins, owns the store, runs ingest, forecasts and the API.

Threads: paho's network thread fills the inbox; the ingest thread takes batches from it, runs
the pure pipeline, commits to the store and then acks in receive order; the forecast thread
refreshes forecasts on its cadence; uvicorn serves the API. Only this process opens the store.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from greennanny.alerts.engine import AlertEngine
from greennanny.config import Config
from greennanny.decoders.base import Decoder
from greennanny.errors import ConfigError, StoreUnavailable
from greennanny.ingest.mqtt import MqttInput
from greennanny.ingest.registry import build_handlers, subscription_handler
from greennanny.model import Uplink
from greennanny.runtime.clock import Clock, SystemClock
from greennanny.runtime.dedupe import Deduper
from greennanny.runtime.pipeline import IngestPipeline, Route, all_dead
from greennanny.store.base import DeviceRecord
from greennanny.store.duckdb import DuckDBStore, retention_from

log = logging.getLogger("greennanny.node")


def codecs() -> dict[str, Decoder]:
    from greennanny.decoders.milesight import MilesightDecoder

    return {"milesight": MilesightDecoder()}


def apply_config_devices(store: DuckDBStore, cfg: Config) -> int:
    """The config's [devices] win over the registry; each overridden record is logged."""
    n = 0
    for eui, d in cfg.devices.items():
        rec = DeviceRecord(eui, d.codec, d.model, d.field_map, d.site or cfg.node.site, d.zone, d.name, "config",
                           d.interval_s)
        prev = store.upsert_device(rec)
        if prev is not None:
            log.warning("device %s: config overrides the registry record %s", eui, prev)
        n += 1
    return n


class DeviceCache:
    """Registry lookups for the hot path; cleared whenever the registry changes (onboarding)."""

    def __init__(self, store: DuckDBStore) -> None:
        self.store = store
        self._cache: dict[str, DeviceRecord | None] = {}

    def __call__(self, eui: str) -> DeviceRecord | None:
        """The device's record; a miss is cached too, so a flood from an unregistered device
        costs a dict lookup per message instead of a query (every registry change clears it)."""
        try:
            return self._cache[eui]
        except KeyError:
            pass
        if len(self._cache) > 100_000:  # bounded: random devEUIs must not grow memory
            self._cache.clear()
        rec = self._cache[eui] = self.store.device(eui)
        return rec

    def clear(self) -> None:
        self._cache.clear()


def build_pipeline(cfg: Config, store: DuckDBStore, clock: Clock) -> IngestPipeline:
    lookup = DeviceCache(store)
    handlers = build_handlers(lookup, codecs(), cfg.node.site)
    missing = sorted({s.format for s in cfg.mqtt.subscriptions} - set(handlers))
    if missing:
        raise ConfigError(f"mqtt.subscriptions: format(s) {missing} are not available in this build")
    routes = [Route(s.topic, subscription_handler(s, handlers, lookup, cfg.node.site)) for s in cfg.mqtt.subscriptions]
    dedupe = Deduper(cfg.pipeline.dedup_window_s)
    dedupe.seed(store.recent_dedup_keys(clock.now_ns() - dedupe.retain_ns))
    pipeline = IngestPipeline(routes, dedupe, clock, live=cfg.pipeline.mode == "live")
    pipeline.devices = lookup
    pipeline.refresh_devices()
    if pipeline.live:
        pipeline.first_seen = store.first_seen_by_device()
    return pipeline


@dataclass
class NodeStats:
    messages: int = 0
    batches: int = 0
    points: int = 0
    replaced: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    last_commit_ns: int = 0
    first_commit_ns: int = 0  # with first_batch: the node's own clock for its ingest rate (bench/ingest.py)
    first_batch: int = 0
    maintenance: dict[str, int] = field(default_factory=dict)  # what the last compaction/retention run did
    store_error: str | None = None  # why commits are failing right now (a full disk ...), None when they succeed


class Node:
    def __init__(self, cfg: Config, *, clock: Clock | None = None, client_id: str | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        if cfg.store.backend != "duckdb":  # the ledger, dead letters and devices live in DuckDB
            raise ConfigError(f"store.backend = {cfg.store.backend!r}: the node runs on duckdb only so far "
                              "(InfluxDBStore serves the store contract; see docs/store.md)")
        self.store = DuckDBStore(cfg.store_path, retention=retention_from(cfg.store.retention))
        from greennanny.mlops.registry import record_config

        changed = record_config(self.store, cfg.model_dump(mode="json"), self.clock.now_ns())
        if changed:  # the audit log keeps config changes beside the model changes they explain
            log.info("configuration changed since the last start: %s", ", ".join(changed))
        apply_config_devices(self.store, cfg)
        self.pipeline = build_pipeline(cfg, self.store, self.clock)
        self.inbox: queue.SimpleQueue[list[Uplink]] = queue.SimpleQueue()  # runs of messages in receive order
        self.mqtt = MqttInput(cfg.mqtt, self.inbox, self.clock, password=cfg.mqtt_password(),
                              client_id=client_id)
        self.stats = NodeStats()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.forecaster: object | None = None
        self.alerts: AlertEngine | None = None
        self.deriver: Any = None
        self.dispatcher: Any = None
        if cfg.alerts.enabled:
            self.alerts = AlertEngine(self.store, cfg.alerts, on_events=self._wake_notifiers)
            self.alerts.check()  # a rule that names no series is a config error at start, naming the rule

    def start(self, *, mqtt: bool = True, forecasts: bool = True, alerts: bool = True) -> None:
        if mqtt:
            self.mqtt.start()
            t = threading.Thread(target=self._ingest_loop, name="ingest", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._maintenance_loop, name="maintenance", daemon=True)
        t.start()
        self._threads.append(t)
        if forecasts and self.cfg.forecast.enabled:
            from greennanny.forecast.service import ForecastService

            svc = ForecastService(self.store, self.cfg.forecast, self.clock, resume=True)
            self.forecaster = svc
            t = threading.Thread(target=svc.loop, args=(self._stop,), name="forecast", daemon=True)
            t.start()
            self._threads.append(t)
        if alerts:
            self._start_alerts()

    def _wake_notifiers(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def _start_alerts(self) -> None:
        """Derived series, the rule engine and the notifiers' dispatcher (each notifier on its
        own thread: one that is down never holds up the rules or the others)."""
        from greennanny.alerts.notify import Dispatcher, build_notifiers
        from greennanny.processors.derived import Deriver

        if self.cfg.derived.enabled:
            self.deriver = Deriver(self.store, self.cfg.derived, self.cfg.forecast.tz)
        if self.alerts is not None and self.cfg.alerts.notifiers:
            self.dispatcher = Dispatcher(self.store, build_notifiers(self.cfg), self.cfg.alerts.notifiers, self.clock)
            self.dispatcher.start()
        if self.deriver is not None or self.alerts is not None:
            t = threading.Thread(target=self._alerts_loop, name="alerts", daemon=True)
            t.start()
            self._threads.append(t)

    def _alerts_loop(self) -> None:
        """Every round: derive what the new readings allow, then evaluate the rules on it."""
        every = min(self.cfg.alerts.interval_s, self.cfg.derived.interval_s)
        while not self._stop.wait(every):
            self.alerts_round()

    def alerts_round(self, now_ns: int | None = None) -> dict[str, Any]:
        now = self.clock.now_ns() if now_ns is None else now_ns
        out: dict[str, Any] = {}
        try:
            if self.deriver is not None:
                out["derived"] = self.deriver.run(now)
            if self.alerts is not None:
                st = self.alerts.run(now)
                out["alerts"] = {"rules": st.rules, "series": st.series, "transitions": st.transitions,
                                 "events": len(st.events)}
        except StoreUnavailable as exc:
            log.error("alerts round skipped, the store is unavailable: %s", exc)
        except Exception:  # the next round retries; ingest is never affected
            log.exception("alerts round failed")
        return out

    def _maintenance_loop(self) -> None:
        """Compaction and retention on `store.retention.interval_min`, first a minute after start.

        It takes the store's lock like a commit does, so ingest waits for it (a compaction of one
        day of 1,000 series takes about a second); a failure is logged and tried again next time.
        """
        wait = 60.0
        while not self._stop.wait(wait):
            wait = self.cfg.store.retention.interval_min * 60.0
            try:
                done = self.store.maintain(self.clock.now_ns())
                self.stats.maintenance = done
                log.info("store maintenance: %s", done)
            except StoreUnavailable as exc:  # a full disk: rolled back whole, the store stays readable
                log.error("store maintenance failed, retrying in %s min: %s", self.cfg.store.retention.interval_min, exc)
            except Exception:  # a failed run must not end the node; the next one retries
                log.exception("store maintenance failed; retrying in %s min", self.cfg.store.retention.interval_min)

    def _ingest_loop(self) -> None:
        """Gather a batch, commit it, ack it; repeat.

        A batch ends at `batch_max_messages`, at `batch_max_wait_ms` after its first message, or
        when the inbox stayed empty for `batch_idle_ms`. The idle rule matters: a broker sends at
        most its in-flight window (max_inflight_messages) before it waits for PUBACKs, and we ack
        only after the commit, so waiting for a full batch that cannot come would stall ingest.
        """
        pcfg = self.cfg.pipeline
        max_n, max_wait, idle = pcfg.batch_max_messages, pcfg.batch_max_wait_ms / 1000, pcfg.batch_idle_ms / 1000
        get, get_nowait = self.inbox.get, self.inbox.get_nowait
        while not self._stop.is_set():
            try:
                first = get(timeout=0.2)
            except queue.Empty:
                continue
            batch = list(first)
            deadline = time.monotonic() + max_wait
            while len(batch) < max_n:  # a run read in one pass stays whole, so a batch may pass max_n by one run
                try:
                    batch += get_nowait()
                    continue
                except queue.Empty:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch += get(timeout=min(left, idle))
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[Uplink]) -> None:
        try:
            commit = self.pipeline.process(batch)
        except Exception as exc:  # a bug must not end this thread while MQTT and the API look alive
            log.exception("pipeline raised on a batch of %d messages (topics %s); kept as dead letters",
                          len(batch), sorted({up.topic for up in batch})[:5])
            commit = all_dead(batch, f"pipeline raised {type(exc).__name__}: {exc}")
        failed_at, tries = 0.0, 0
        while True:
            try:
                res = self.store.commit_ingest(commit)
                break
            except StoreUnavailable as exc:
                # Nothing is acked, so nothing is lost: retry until the store is back. Logged once
                # per episode (a full disk can last hours), and once more when it ends.
                tries += 1
                if self.stats.store_error is None:
                    log.error("store commit failed; retrying every 2 s without acking (MQTT keeps the "
                              "messages) until it succeeds: %s", exc)
                    failed_at = time.monotonic()
                self.stats.store_error = str(exc)
                if self._stop.wait(2):
                    return
        if self.stats.store_error is not None:
            log.warning("store commits succeed again after %d failed attempts over %.0f s; ingest resumed",
                        tries, time.monotonic() - failed_at if failed_at else 0.0)
            self.stats.store_error = None
        self.mqtt.ack_batch(batch)  # receive order, one write
        s = self.stats
        s.messages += len(batch)
        s.batches += 1
        s.points += res.written
        s.replaced += res.replaced
        s.outcomes.update(e.outcome for e in commit.ledger)
        s.last_commit_ns = self.clock.now_ns()
        if not s.first_commit_ns:
            s.first_commit_ns, s.first_batch = s.last_commit_ns, len(batch)

    def drain(self, timeout: float) -> bool:
        """Wait until the inbox is empty and the last batch committed (for demo and tests)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.inbox.empty():
                before = self.stats.messages
                time.sleep(self.cfg.pipeline.batch_max_wait_ms / 1000 + 0.3)
                if self.inbox.empty() and self.stats.messages == before:
                    return True
            else:
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        self._stop.set()
        try:
            self.mqtt.stop()
        except Exception:  # stopping must not fail; say why it was not clean
            log.warning("MQTT client did not stop cleanly", exc_info=True)
        if self.dispatcher is not None:
            self.dispatcher.stop()
        for t in self._threads:
            t.join(timeout=10)
        self.store.close()
