"""The store contract, on columnar batches.

One process owns a store (the running node); the CLI and API go through that owner. Writes are
idempotent per (series, timestamp): the last write wins and the replaced rows are counted, so a
message redelivered after a crash can never double a reading.

`commit_ingest` is the unit the runtime acknowledges to MQTT: points, dead letters and the
message ledger of one batch commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from greennanny.model import Batch, SeriesKey


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


@dataclass(frozen=True, slots=True)
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
    written: int
    replaced: int


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
        self, *, site: str | None = None, zone: str | None = None, quantity: str | None = None
    ) -> list[SeriesInfo]: ...

    def series_by_id(self, series_id: int) -> SeriesInfo | None: ...

    def query(
        self, series_id: int, start_ns: int | None, end_ns: int | None, every_ns: int | None = None
    ) -> pd.DataFrame: ...

    def query_long(
        self, series_ids: list[int], start_ns: int, end_ns: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def deadletters(self, *, reason: str | None = None, limit: int = 100) -> list[dict[str, Any]]: ...

    def deadletter_counts(self) -> dict[str, int]: ...

    def outcome_counts(self) -> dict[str, int]: ...

    def close(self) -> None: ...
