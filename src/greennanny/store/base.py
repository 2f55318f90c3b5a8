"""The store contract, on columnar batches.

One process owns a store (the running node); the CLI and API go through that owner. Writes are
idempotent per (series, timestamp): the last write wins and the replaced rows are counted, so a
message redelivered after a crash can never double a reading.

`commit_ingest` is the unit the runtime acknowledges to MQTT: points, dead letters and the
message ledger of one batch commit together or not at all.

Rows a backend cannot keep (a non-finite value marked OK, a point beyond the server's retention,
a field-type conflict) are set aside in `WriteResult.rejected`, each with its reason, while the
rest of the batch is stored. Each backend names what it offers in `capabilities` (the `CAP_*`
names below); an operation it lacks raises `NotSupported` (see docs/store.md and
docs/design/002-store-contract.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from greennanny.errors import NotSupported
from greennanny.model import Batch, SeriesKey

# Capability names. Every backend has the first group (the contract suite checks it); the
# second are data features a backend may lack; the third what only the node's own store has.
CAP_WRITE = "write"
CAP_QUERY = "query"  # one series, raw or bucketed (mean/min/max/count columns)
CAP_QUERY_MANY = "query_many"  # many series in one call, raw or one aggregate per bucket
CAP_DOWNSAMPLE = "downsample"  # `every` + an aggregate of AGGREGATES
CAP_LATEST = "latest"
CAP_SERIES = "series"  # listing by site/zone/device/quantity
CAP_DELETE_RANGE = "delete_range"

CAP_RETENTION = "retention"
CAP_COUNTS_OVERWRITES = "counts_overwrites"  # `replaced` also counts rows stored by earlier writes
CAP_UNSERVED_ROWS = "unserved_rows"  # keeps missing/quarantined rows and every reason (not served; `notes`)

CAP_INGEST_COMMIT = "ingest_commit"  # points + dead letters + ledger in one transaction
CAP_DEADLETTERS = "deadletters"
CAP_DEVICES = "devices"
CAP_FORECASTS = "forecasts"

Aggregate = Literal["min", "mean", "max", "last", "count"]
AGGREGATES: tuple[str, ...] = ("min", "mean", "max", "last", "count")

# Reason codes of rejected rows (`WriteResult.rejected.reasons` hold "code: detail").
REJECT_NOT_FINITE = "not_finite"
REJECT_BEYOND_RETENTION = "beyond_retention"
REJECT_FIELD_TYPE = "field_type_conflict"


def check_aggregate(agg: str) -> str:
    """`agg` if it is one of AGGREGATES, else ValueError naming the allowed ones."""
    if agg not in AGGREGATES:
        raise ValueError(f"aggregate {agg!r} is not one of {', '.join(AGGREGATES)}")
    return agg


def take_rows(batch: Batch, rows: np.ndarray, reasons: dict[int, str] | None = None) -> Batch:
    """The rows `rows` (positions, in order) of `batch` as a batch of their own; `reasons` maps a
    position in `batch` to the reason to give that row (else the row keeps its own, if any)."""
    rows = np.asarray(rows, dtype=np.int64)
    out_reasons: dict[int, str] = {}
    if batch.reasons or reasons:
        where = np.full(len(batch), -1, dtype=np.int64)  # old position -> new position
        where[rows] = np.arange(len(rows))
        for source in (batch.reasons, reasons or {}):  # given reasons win
            for old, reason in source.items():
                if where[old] >= 0:
                    out_reasons[int(where[old])] = reason
    return Batch(
        batch.keys,
        batch.key_index[rows],
        batch.ts_ns[rows],
        batch.value[rows],
        batch.quality[rows],
        out_reasons,
    )


def split_not_finite(batch: Batch) -> tuple[Batch, Batch]:
    """(rows to store, rows rejected): a row marked OK or flagged must carry a finite number.

    Missing and quarantined rows are left alone (a missing row's value is NaN by definition).
    """
    served = (batch.quality == 0) | (batch.quality == 2)
    bad = served & ~np.isfinite(batch.value)
    if not bad.any():
        return batch, Batch.empty()
    bad_rows = np.flatnonzero(bad)
    reasons = {int(r): f"{REJECT_NOT_FINITE}: value {float(batch.value[r])!r} is not a finite number"
               for r in bad_rows.tolist()}
    return take_rows(batch, np.flatnonzero(~bad)), take_rows(batch, bad_rows, reasons)


def not_supported(backend: str, capability: str, why: str = "") -> NotSupported:
    """The error a backend raises for an operation it lacks (the message names both)."""
    return NotSupported(
        f"the {backend} store does not support {capability}" + (f": {why}" if why else "")
    )


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    id: int
    key: SeriesKey
    unit: str
    points: int
    first_ns: int | None
    last_ns: int | None
    last_value: float | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_ns: int
    topic: str
    payload: bytes
    reason: str
    detail: str
    source: str = "mqtt"
    device: str = ""  # the device the message came from, where the envelope could tell


@dataclass(slots=True)  # not frozen: made per message on the hot path, and a frozen __init__ costs 3x (0.8 vs 0.25 us)
class LedgerEntry:
    """What happened to one message (one row per message received)."""

    received_ns: int
    topic: str
    outcome: str
    kind: str
    dedup_key: str
    points: int = 0


@dataclass(slots=True)
class IngestCommit:
    batch: Batch
    deadletters: list[DeadLetter] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)
    device_events: list[tuple[int, str, str, str]] = field(default_factory=list)  # ts, devEUI, kind, detail


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: rows stored, rows that replaced a row at the same (series, ts), and the
    rows set aside, each with its reason ("code: detail") in `rejected.reasons` (not part of ==,
    which compares the counts)."""

    written: int
    replaced: int
    rejected: Batch = field(default_factory=Batch.empty, compare=False)

    def rejected_counts(self) -> dict[str, int]:
        """Rejected rows by reason code (`not_finite`, `beyond_retention`, ...)."""
        out: dict[str, int] = {}
        for reason in self.rejected.reasons.values():
            code = reason.split(":", 1)[0]
            out[code] = out.get(code, 0) + 1
        return out


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    dev_eui: str
    codec: str
    model: str
    field_map: str
    site: str
    zone: str
    name: str
    source: str  # "config" or "api"
    interval_s: int = 0  # expected reporting interval, 0 = unknown


class Store(Protocol):
    """What every backend offers; `capabilities` names the optional parts it has."""

    capabilities: frozenset[str]

    def write(self, batch: Batch) -> WriteResult: ...

    def commit_ingest(self, commit: IngestCommit) -> WriteResult: ...

    def series(
        self,
        *,
        site: str | None = None,
        zone: str | None = None,
        quantity: str | None = None,
        device: str | None = None,
    ) -> list[SeriesInfo]: ...

    def series_by_id(self, series_id: int) -> SeriesInfo | None: ...

    def query(
        self, series_id: int, start_ns: int | None, end_ns: int | None, every_ns: int | None = None
    ) -> pd.DataFrame:
        """One series in [start, end): columns ts, value, quality; with `every`, one row per bucket
        that has points: ts (bucket start, epoch-aligned), value (mean), min, max, count."""
        ...

    def query_many(
        self,
        series_ids: Sequence[int],
        start_ns: int | None,
        end_ns: int | None,
        *,
        every_ns: int | None = None,
        agg: Aggregate = "mean",
    ) -> pd.DataFrame:
        """Many series in [start, end), served rows only (quality OK or flagged), sorted by
        (series_id, ts). Raw: columns series_id, ts, value, quality. With `every`: series_id, ts
        (bucket start, epoch-aligned floor), value (`agg` over the bucket; count as a float)."""
        ...

    def latest(self, series_ids: Sequence[int] | None = None) -> pd.DataFrame:
        """The newest served point of each series (all when None): columns series_id, ts, value."""
        ...

    def notes(self, series_ids: Sequence[int], start_ns: int | None, end_ns: int | None) -> pd.DataFrame:
        """Every stored row in [start, end) of the series whose quality is not OK (flagged, missing,
        quarantined), with its reason ("" when none was given): columns series_id, ts, quality,
        reason, sorted by (series_id, ts). Needs `unserved_rows` (exports read it: store/export.py)."""
        ...

    def delete_range(
        self, start_ns: int | None, end_ns: int | None, *, series_ids: Sequence[int] | None = None
    ) -> int:
        """Delete points in [start, end) of the given series (all when None); returns how many."""
        ...

    def retention(self) -> int | None:
        """How long points are kept, in ns (None: forever)."""
        ...

    def set_retention(self, keep_ns: int | None) -> None:
        """Keep points for `keep_ns` (None: forever); older ones go on the backend's schedule."""
        ...

    def query_long(
        self, series_ids: list[int], start_ns: int, end_ns: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def count_points(self) -> int: ...

    def deadletters(self, *, reason: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    def deadletter_counts(self) -> dict[str, int]: ...

    def outcome_counts(self) -> dict[str, int]: ...

    def close(self) -> None: ...


def concat_batches(a: Batch, b: Batch) -> Batch:
    """Two batches over the same keys as one (rejected rows of two checks)."""
    if not len(a):
        return b
    if not len(b):
        return a
    keys = list(dict.fromkeys([*a.keys, *b.keys]))
    pos = {k: i for i, k in enumerate(keys)}
    ai = np.array([pos[k] for k in a.keys], np.int32)[a.key_index]
    bi = np.array([pos[k] for k in b.keys], np.int32)[b.key_index]
    reasons = dict(a.reasons) | {len(a) + r: why for r, why in b.reasons.items()}
    return Batch(keys, np.concatenate([ai, bi]), np.concatenate([a.ts_ns, b.ts_ns]),
                 np.concatenate([a.value, b.value]), np.concatenate([a.quality, b.quality]), reasons)
