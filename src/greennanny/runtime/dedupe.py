"""Once-only delivery: MQTT QoS 1 and LoRaWAN gateways deliver at least once; we store once.

Two keys per message: the exact key (ChirpStack's deduplicationId, or a hash of topic+payload),
remembered for `retain_s`; and the window key (devEUI + fCnt + payload) that only counts within
`window_s` of the message's own time, because frame counters reset and repeat legitimately.
At start the runtime seeds the exact keys from the store's ledger, so a message committed just
before a crash and redelivered after it is recognised.

A batch is a unit: `begin` ... `commit`, or `rollback` when the batch never reaches the store (the
pipeline raised on it), so messages that were never stored are not taken for duplicates later,
when they come back from the dead letters or from the broker.
"""

from __future__ import annotations

from collections import OrderedDict


class Deduper:
    def __init__(self, window_s: int, retain_s: int = 48 * 3600) -> None:
        self.window_ns = window_s * 1_000_000_000
        self.retain_ns = retain_s * 1_000_000_000
        self._exact: OrderedDict[str, int] = OrderedDict()
        self._window: dict[str, int] = {}
        self._journal: list[tuple[bool, str, int | None]] | None = None  # (exact?, key, previous value)
        self._next_expiry = 0

    def begin(self) -> None:
        self._journal = []

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        """Forget every key the current batch added (keys that expired meanwhile stay expired)."""
        for exact, key, prev in reversed(self._journal or []):
            table: dict[str, int] = self._exact if exact else self._window
            if prev is None:
                table.pop(key, None)
            else:
                table[key] = prev
        self._journal = None

    def seed(self, keys: list[tuple[str, int]]) -> None:
        for k, t in keys:
            self._exact[k] = t

    def is_duplicate(self, exact: str, window: str, ts_ns: int, received_ns: int,
                     window_ns: int | None = None) -> bool:
        """True when seen; otherwise remembers the message and returns False.

        `window_ns` overrides the window for one device (half its reporting interval).
        """
        if exact and exact in self._exact:
            return True
        win = self.window_ns if window_ns is None else window_ns
        if window and win:
            prev = self._window.get(window)
            if prev is not None and abs(ts_ns - prev) <= win:
                return True
        if self._journal is not None:
            if exact:
                self._journal.append((True, exact, None))
            if window:
                self._journal.append((False, window, self._window.get(window)))
        if exact:
            self._exact[exact] = received_ns
        if window:
            self._window[window] = ts_ns
        if not 0 <= self._next_expiry - received_ns <= 1_000_000_000:  # a second passed, or time went back
            self._expire(received_ns)
        return False

    def _expire(self, now_ns: int) -> None:
        """Forget exact keys older than `retain_s`; runs at most once a second of receive time
        (keys then live up to a second longer than `retain_s`, which nothing can tell apart)."""
        self._next_expiry = now_ns + 1_000_000_000
        cutoff = now_ns - self.retain_ns
        while self._exact:
            k, t = next(iter(self._exact.items()))
            if t >= cutoff:
                break
            self._exact.popitem(last=False)
        if len(self._window) > 200_000:
            # Window keys matter only for minutes; drop the oldest half when the table grows.
            for k in sorted(self._window, key=self._window.__getitem__)[: len(self._window) // 2]:
                del self._window[k]
