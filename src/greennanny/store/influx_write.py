"""The InfluxDB store's write path: what is set aside before sending, and how the server's
answers to each request are sorted into rows stored and rows set aside (with their reason).

Before sending (nothing InfluxDB would refuse or silently mangle goes out):
- a non-finite value marked OK or flagged (`not_finite`, as on every backend);
- a missing or quarantined row (`missing`, `quarantined`): InfluxDB has no NaN, and this backend
  keeps served rows only;
- a tag 1.x cannot read back (`bad_tag`), a quantity outside model.QUANTITIES
  (`unknown_quantity`), a time outside InfluxDB's range (`time_out_of_range`), a key whose
  series id is another key's (`series_id_collision`).
Within the batch the last row per (series, ts) wins; the others are counted as replaced.

The server's answers, per request of `batch_size` lines:
- "partial write: points beyond retention policy dropped=N" (400 on 1.x, 500 on 2.x, BR-14)
  sets aside the N oldest rows of the request (`beyond_retention`). Those are exactly the ones
  1.x drops: every point before the shard group that straddles now - duration. After a 500 the
  rest is sent once more, since a 500 does not promise it was stored, and never again.
- a field type conflict sets aside the rows of the measurements whose `value` or `quality`
  SHOW FIELD KEYS shows with another type than ours (`field_type_conflict`);
- "unable to parse" sets aside the lines it quotes (`unparsed`);
- a 413 is split in halves until it fits; any other 4xx sets aside the request's rows with the
  server's message (`refused`). Nothing here retries: store/influx_client.py retries 5xx.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from greennanny.model import QUANTITIES, Batch, SeriesKey, round_to_resolution
from greennanny.store.base import (
    REJECT_BEYOND_RETENTION,
    REJECT_FIELD_TYPE,
    WriteResult,
    split_not_finite,
    take_rows,
)
from greennanny.store.influx_client import InfluxClient, WriteAnswer, ident
from greennanny.store.influx_lines import MAX_NANO_TIME, MIN_NANO_TIME, encode_rows, series_prefix, tag_problem

log = logging.getLogger("greennanny.store.influxdb")

FIELD_TYPES = {"value": "float", "quality": "integer"}  # as SHOW FIELD KEYS names them
_TAGS = ("site", "zone", "device")


class InfluxWriter:
    """Writes batches through `client`; `register(key)` returns the key already holding that
    key's series id (a collision), else None."""

    def __init__(self, client: InfluxClient, batch_size: int, register: Callable[[SeriesKey], SeriesKey | None]) -> None:
        self.client = client
        self.batch_size = batch_size
        self._register = register
        self.unidentified_dropped = 0  # rows the server dropped that no message let us name

    def _key_problem(self, key: SeriesKey) -> str | None:
        problem = next((p for t in _TAGS if (p := tag_problem(t, getattr(key, t)))), None)
        if problem is not None:
            return f"bad_tag: {problem}"
        if key.quantity not in QUANTITIES:
            return f"unknown_quantity: {key.quantity!r} is not in model.QUANTITIES"
        other = self._register(key)
        return f"series_id_collision: {key} has the series id of {other}" if other is not None else None

    def write(self, batch: Batch) -> WriteResult:
        batch, not_finite = split_not_finite(batch)
        reasons: dict[int, str] = {}
        prefixes = []
        for i, key in enumerate(batch.keys):
            problem = self._key_problem(key)
            prefixes.append("" if problem else series_prefix(key))
            if problem:
                reasons.update(dict.fromkeys(np.flatnonzero(batch.key_index == i).tolist(), problem))
        for r in np.flatnonzero(batch.quality == 1).tolist():
            reasons.setdefault(r, "missing: InfluxDB cannot store a missing value (no NaN)")
        for r in np.flatnonzero(batch.quality == 3).tolist():
            reasons.setdefault(r, "quarantined: the InfluxDB store keeps served rows only")
        for r in np.flatnonzero((batch.ts_ns < MIN_NANO_TIME) | (batch.ts_ns > MAX_NANO_TIME)).tolist():
            reasons.setdefault(r, f"time_out_of_range: {int(batch.ts_ns[r])} ns is outside InfluxDB's time range")
        keep = np.ones(len(batch), dtype=bool)
        keep[list(reasons)] = False
        rows = np.flatnonzero(keep)
        # Last wins inside the batch: keep the final row of each (series, ts), count the others.
        dup = pd.DataFrame({"k": batch.key_index[rows], "t": batch.ts_ns[rows]}).duplicated(keep="last").to_numpy()
        rows = rows[~dup]
        # Values are kept at their quantity's storage resolution, as on every backend (rows of an
        # unknown quantity are set aside already: any resolution does for them).
        names = [k.quantity if k.quantity in QUANTITIES else "illuminance" for k in batch.keys]
        value = round_to_resolution(batch.value, names, batch.key_index)
        rounded = Batch(batch.keys, batch.key_index, batch.ts_ns, value, batch.quality, batch.reasons)
        written = 0
        for lo in range(0, len(rows), self.batch_size):
            n, dropped = self._send(rounded, rows[lo:lo + self.batch_size], prefixes)
            written += n
            reasons.update(dropped)
        rejected = [not_finite]
        if reasons:
            rejected.append(take_rows(batch, np.array(sorted(reasons), dtype=np.int64), reasons))
        return WriteResult(written, int(dup.sum()), Batch.concat(rejected))

    def _send(
        self, batch: Batch, rows: np.ndarray, prefixes: list[str], *, retry_500: bool = True
    ) -> tuple[int, dict[int, str]]:
        """One request's rows: (rows stored, {row: reason} of the rows set aside)."""
        if not len(rows):
            return 0, {}
        ans = self.client.write(encode_rows(batch, rows, prefixes))
        if ans.ok:
            return len(rows), {}
        if ans.status == 413 and len(rows) > 1:  # too large for this server: halve it
            half = len(rows) // 2
            n1, r1 = self._send(batch, rows[:half], prefixes, retry_500=retry_500)
            n2, r2 = self._send(batch, rows[half:], prefixes, retry_500=retry_500)
            return n1 + n2, r1 | r2
        if ans.partial and ans.beyond_retention:
            return self._beyond_retention(batch, rows, prefixes, ans, retry_500)
        if ans.partial and "field type conflict" in ans.message:
            return self._type_conflict(batch, rows, ans)
        if ans.partial and "unable to parse" in ans.message:
            quoted = set(re.findall(r"unable to parse '(.*?)': ", ans.message))
            lines = encode_rows(batch, rows, prefixes)
            bad = {int(r): f"unparsed: {ans.message[:300]}" for r, line in zip(rows.tolist(), lines, strict=True)
                   if line in quoted}
            return len(rows) - len(bad), bad
        if ans.partial:
            n = min(ans.dropped or 0, len(rows))
            self.unidentified_dropped += n
            log.warning("influxdb dropped %d of %d points without saying which: %s", n, len(rows), ans.message)
            return len(rows) - n, {}
        log.warning("influxdb refused a write of %d points: HTTP %d: %s", len(rows), ans.status, ans.message)
        return 0, dict.fromkeys(rows.tolist(), f"refused: HTTP {ans.status}: {ans.message[:300]}")

    def _beyond_retention(
        self, batch: Batch, rows: np.ndarray, prefixes: list[str], ans: WriteAnswer, retry_500: bool
    ) -> tuple[int, dict[int, str]]:
        n = min(ans.dropped if ans.dropped is not None else len(rows), len(rows))
        order = np.argsort(batch.ts_ns[rows], kind="stable")
        old, rest = rows[order[:n]], np.sort(rows[order[n:]])
        policy = self.client.database + (f".{self.client.retention_policy}" if self.client.retention_policy else "")
        why = f"{REJECT_BEYOND_RETENTION}: older than the retention policy of {policy} (HTTP {ans.status}: {ans.message[:200]})"
        log.warning("influxdb: %d of %d points beyond retention set aside (HTTP %d)", n, len(rows), ans.status)
        reasons = dict.fromkeys(old.tolist(), why)
        if ans.status >= 500 and retry_500 and len(rest):
            # A 500 does not promise the rest was stored: send it once more (last wins), never again.
            written, more = self._send(batch, rest, prefixes, retry_500=False)
            return written, reasons | more
        return len(rest), reasons

    def _type_conflict(self, batch: Batch, rows: np.ndarray, ans: WriteAnswer) -> tuple[int, dict[int, str]]:
        kinds: dict[str, dict[str, str]] = {}
        for s in self.client.query(f"SHOW FIELD KEYS ON {ident(self.client.database)}")[0]:
            kinds[s["name"]] = {k: t for k, t in s["values"]}
        bad_q = {m: f"{REJECT_FIELD_TYPE}: {m}.{f} is {kinds[m][f]} in InfluxDB, greennanny writes {t}"
                 for m in {k.quantity for k in batch.keys} if m in kinds
                 for f, t in FIELD_TYPES.items() if kinds[m].get(f, t) != t}
        quantity = [batch.keys[i].quantity for i in batch.key_index[rows].tolist()]
        bad = {int(r): bad_q[q] for r, q in zip(rows.tolist(), quantity, strict=True) if q in bad_q}
        if ans.dropped is not None and ans.dropped != len(bad):
            log.warning("influxdb dropped %d points for field types, %d identified: %s",
                        ans.dropped, len(bad), ans.message)
        return len(rows) - len(bad), bad
