"""One batch of raw messages -> one `IngestCommit` (points, dead letters, ledger).

Pure and synchronous: the caller owns I/O (MQTT, the store) and the clock. Every message gets
exactly one outcome from `model.Outcome`; whatever a handler or decoder raises becomes a dead
letter with its reason and the raw bytes, so no payload can stop ingest.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from greennanny.errors import DecodeError, InputError
from greennanny.ingest.envelope import Handled, topic_matches
from greennanny.ingest.timeparse import LATEST_NS, Y2000_NS
from greennanny.model import Batch, BatchBuilder, Outcome, Quality, Uplink
from greennanny.runtime.clock import Clock
from greennanny.runtime.dedupe import Deduper
from greennanny.store.base import DeadLetter, IngestCommit, LedgerEntry

log = logging.getLogger("greennanny.pipeline")

FUTURE_TOLERANCE_NS = 5 * 60 * 1_000_000_000
MAX_BEFORE_FIRST_NS = 30 * 86_400 * 1_000_000_000


@dataclass
class Route:
    topic_filter: str
    handler: object  # has .handle(Uplink) -> Handled


class IngestPipeline:
    def __init__(self, routes: Sequence[Route], deduper: Deduper, clock: Clock, *, live: bool = True) -> None:
        # The most specific filter wins (greennanny/senml/+/+ before greennanny/+/+/+), whatever the
        # order in the config: more literal levels first, a trailing # last.
        self.routes = sorted(routes, key=lambda r: (-sum(p not in ("+", "#") for p in r.topic_filter.split("/")),
                                                    r.topic_filter.endswith("#")))
        self.deduper = deduper
        self.clock = clock
        self.live = live
        self.unmapped: Counter[str] = Counter()
        self.f_cnts: dict[str, int] = {}  # last frame counter per device
        self.first_seen: dict[str, int] = {}  # first accepted reading per device (live time sanity)
        self.intervals: dict[str, int] = {}  # expected reporting interval (s) per device
        self.devices: Any = None  # the registry lookup the handlers use (has .clear() and .store)
        self._routes_by_topic: dict[str, object | None] = {}
        self._lock = threading.Lock()  # the ingest thread and a dead-letter replay share dedupe state

    def refresh_devices(self) -> None:
        """Forget cached registry records (after onboarding) and re-read reporting intervals."""
        if self.devices is not None:
            self.devices.clear()
            self.intervals = {d.dev_eui: d.interval_s for d in self.devices.store.devices() if d.interval_s}

    def _route(self, topic: str) -> object | None:
        """The handler of the most specific matching filter; remembered per topic (a node sees
        the same few thousand topics all day, and matching every filter cost 1.5 us a message)."""
        try:
            return self._routes_by_topic[topic]
        except KeyError:
            pass
        if len(self._routes_by_topic) > 100_000:  # bounded: topics with random parts must not grow memory
            self._routes_by_topic.clear()
        found = self._routes_by_topic[topic] = next(
            (r.handler for r in self.routes if topic_matches(r.topic_filter, topic)), None)
        return found

    def process(self, uplinks: Sequence[Uplink]) -> IngestCommit:
        """One commit for `uplinks`. If it raises, the pipeline's memory (dedupe keys, frame
        counters, first-seen times) is as before the call: nothing of the batch was stored."""
        with self._lock:
            f_cnts, first_seen = dict(self.f_cnts), dict(self.first_seen)
            self.deduper.begin()
            try:
                out = self._process(uplinks)
            except BaseException:
                self.deduper.rollback()
                self.f_cnts, self.first_seen = f_cnts, first_seen
                raise
            self.deduper.commit()
            return out

    def _process(self, uplinks: Sequence[Uplink]) -> IngestCommit:
        out = IngestCommit(batch=None)  # type: ignore[arg-type]
        builder = BatchBuilder()
        now = self.clock.now_ns()
        add = builder.add_readings
        for up in uplinks:
            try:
                handler = self._route(up.topic)
                if handler is None:
                    raise InputError(f"no subscription format matches topic {up.topic!r}", reason="unknown_topic")
                h: Handled = handler.handle(up)  # type: ignore[attr-defined]
            except InputError as exc:
                self._dead(out, up, exc.reason, _describe(exc), getattr(exc, "device", ""))
                continue
            except Exception as exc:
                log.exception("handler failed on topic %s", up.topic)
                self._dead(out, up, "internal_error", f"{type(exc).__name__}: {exc}")
                continue
            for k in h.unmapped:
                self.unmapped[f"{h.kind}:{k}"] += 1
            if h.outcome == Outcome.NON_UPLINK:
                dup = self.deduper.is_duplicate(h.dedup_key, "", h.ts_ns, up.received_ns)
                outcome = Outcome.DUPLICATE if dup else Outcome.NON_UPLINK
                out.ledger.append(LedgerEntry(up.received_ns, up.topic, outcome.value, h.kind, h.dedup_key))
                if not dup:
                    out.device_events.extend((h.ts_ns, h.device, kind, detail) for kind, detail in h.events)
                continue
            if self.deduper.is_duplicate(h.dedup_key, h.window_key, h.ts_ns, up.received_ns,
                                         window_ns=self._window_ns(h.device)):
                out.ledger.append(LedgerEntry(up.received_ns, up.topic, Outcome.DUPLICATE.value, h.kind, ""))
                continue
            bad_time = self._time_problem(h, now)
            if bad_time:
                out.deadletters.append(DeadLetter(up.received_ns, up.topic, up.payload, "quarantined", bad_time,
                                                  "quarantine"))
                out.ledger.append(LedgerEntry(up.received_ns, up.topic, Outcome.QUARANTINED.value, h.kind,
                                              h.dedup_key))
                continue
            self._frame_counter(h, out)
            if h.health:
                add(h.site, h.zone, h.device, h.ts_ns, h.health)
            n = add(h.site, h.zone, h.device, h.ts_ns, h.readings) if h.readings else 0
            for p in h.points:
                builder.add(p.key, p.ts_ns or h.ts_ns, p.value, int(p.quality), p.reason)
                n += 1
            for raw, reason, detail in h.rejected:
                out.deadletters.append(DeadLetter(up.received_ns, up.topic, raw, reason, detail))
            for kind, detail in h.events:
                out.device_events.append((h.ts_ns, h.device, kind, detail))
            out.ledger.append(LedgerEntry(up.received_ns, up.topic, h.outcome.value, h.kind, h.dedup_key, n))
        out.batch = builder.build()
        return out

    def _window_ns(self, device: str) -> int | None:
        """The dedup window of a device: at most half its expected reporting interval."""
        interval = self.intervals.get(device, 0)
        return None if not interval else min(self.deduper.window_ns, interval * 1_000_000_000 // 2)

    def _frame_counter(self, h: Handled, out: IngestCommit) -> None:
        """A frame counter that goes back (device reboot, rejoin, 16/32-bit wrap) is an event.

        All readings are kept: a reset is not a duplicate (dedupe ran before, within its window).
        """
        if h.f_cnt is None or not h.device:
            return
        prev = self.f_cnts.get(h.device)
        self.f_cnts[h.device] = h.f_cnt
        if prev is not None and h.f_cnt < prev:
            kind = "fcnt_wrap" if prev >= 0xFFF0 and h.f_cnt < 0x10 else "fcnt_reset"
            out.device_events.append((h.ts_ns, h.device, kind, f"fCnt {prev} -> {h.f_cnt}"))

    def _time_problem(self, h: Handled, now: int) -> str | None:
        """Why this message's times cannot be stored (it is then quarantined whole), or None.

        Checked before anything reaches the batch builder: a stamp that does not fit the int64
        column would otherwise raise for the whole batch and stop ingest (field fault BR-09).
        """
        first = self.first_seen.get(h.device) if h.device else None
        ts = h.ts_ns
        # The common case, decided without building the list of stamps: one stamp, the message's.
        if (Y2000_NS <= ts <= LATEST_NS and not h.points and (first is None or ts >= first)
                and (not self.live or ts <= now + FUTURE_TOLERANCE_NS)
                and all(r.ts_ns is None for r in h.readings)):
            if h.device and first is None:
                self.first_seen[h.device] = ts
            return None
        stamps = [h.ts_ns] + [r.ts_ns for r in h.readings if r.ts_ns is not None] + [p.ts_ns for p in h.points if p.ts_ns]
        for t in stamps:
            if t < Y2000_NS:
                return f"timestamp {t} ns is before 2000-01-01 (device clock not set?)"
            if t > LATEST_NS:  # in backfill mode too
                return f"timestamp {t} ns is after 2262-04-11T23:47:16Z, the last instant int64 nanoseconds can hold"
            if not self.live:
                continue
            if t > now + FUTURE_TOLERANCE_NS:
                return f"timestamp {t} ns is {(t - now) / 1e9:.0f} s ahead of the node clock"
            if first is not None and t < first - MAX_BEFORE_FIRST_NS:
                return (f"timestamp {t} ns is {(first - t) / 86400e9:.0f} days before the device's first accepted "
                        f"reading (device clock reset?)")
        if h.device and (first is None or h.ts_ns < first):
            self.first_seen[h.device] = h.ts_ns
        return None

    @staticmethod
    def _dead(out: IngestCommit, up: Uplink, reason: str, detail: str, device: str = "") -> None:
        out.deadletters.append(DeadLetter(up.received_ns, up.topic, up.payload, reason, detail, device=device))
        out.ledger.append(LedgerEntry(up.received_ns, up.topic, Outcome.DEAD_LETTER.value, reason, ""))


def all_dead(uplinks: Sequence[Uplink], detail: str) -> IngestCommit:
    """Every message of a batch the pipeline raised on, kept raw as an `internal_error` dead letter.

    The runtime's last line of defence (field fault BR-09): a bug that escapes the per-message
    handling costs that batch a replay (`greennanny deadletters replay` once fixed), never the
    ingest thread, which would otherwise die while MQTT and the API still look healthy.
    """
    out = IngestCommit(batch=Batch.empty())
    for up in uplinks:
        IngestPipeline._dead(out, up, "internal_error", detail)
    return out


def _describe(exc: InputError) -> str:
    msg = str(exc)
    if isinstance(exc, DecodeError):
        if exc.field and exc.field not in msg:
            msg = f"{exc.field}: {msg}"
        if exc.offset is not None and "offset" not in msg:
            msg += f" (byte offset {exc.offset})"
    return msg


def quality_counts(commit: IngestCommit) -> Mapping[str, int]:
    q = commit.batch.quality
    return {Quality(v).name.lower(): int((q == v).sum()) for v in set(q.tolist())}
