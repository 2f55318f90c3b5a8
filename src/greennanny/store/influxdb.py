"""The server store: InfluxDB 1.x over its HTTP API (line protocol to /write, InfluxQL to /query).

Layout: one measurement per quantity, tags `site`, `zone`, `device`, fields `value` (always a
float) and `quality` (always an integer), timestamps in ns (store/influx_lines.py says why each
of those matters). Writes go out in requests of `batch_size` lines, gzip, retried with backoff
by store/influx_client.py; within a batch the last row per (series, ts) wins and the others are
counted as replaced, and across writes InfluxDB itself keeps the last point at an instant (not
counted: InfluxDB does not say, so `counts_overwrites` is not a capability here).

Rows InfluxDB cannot or will not keep (a tag 1.x cannot read back, points beyond the retention
policy, a field-type conflict ...) are set aside in `WriteResult.rejected` with their reason
while the rest of the batch is stored: store/influx_write.py.

Series ids: the contract speaks int series ids, InfluxDB has none. The id is a deterministic
hash of the key (BLAKE2b of site/zone/device/quantity, 31 bits), so every process (the node, the
CLI, a reader elsewhere) derives the same id with no table to keep in step, and series written
by another tool with the same tags get ids too. Two keys that hash alike are detected: the
second key's rows are set aside (`series_id_collision`) and the listing raises, naming both. For
n series the chance of any collision is about n^2 / 2^32 (500 series: 6e-5; 10,000: 2 %).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from greennanny.errors import StoreError
from greennanny.model import QUANTITIES, Batch, SeriesKey
from greennanny.store.base import (
    CAP_DEADLETTERS,
    CAP_DELETE_RANGE,
    CAP_DOWNSAMPLE,
    CAP_INGEST_COMMIT,
    CAP_LATEST,
    CAP_QUERY,
    CAP_QUERY_MANY,
    CAP_RETENTION,
    CAP_SERIES,
    CAP_WRITE,
    Aggregate,
    IngestCommit,
    SeriesInfo,
    WriteResult,
    check_aggregate,
    not_supported,
)
from greennanny.store.influx_client import InfluxClient, ident, literal
from greennanny.store.influx_lines import MAX_NANO_TIME, MIN_NANO_TIME, parse_series_key
from greennanny.store.influx_write import InfluxWriter

if TYPE_CHECKING:
    from greennanny.config import Config

_TAGS = ("site", "zone", "device")
_GROUP_TAGS = 'GROUP BY "site","zone","device"'
_EMPTY_RAW: dict[str, Any] = {"series_id": np.int64, "ts": np.int64, "value": np.float64, "quality": np.uint8}


def series_id(key: SeriesKey) -> int:
    """The stable int31 id of a key (never 0): the same in every process, no table needed."""
    text = f"{key.site}\x1f{key.zone}\x1f{key.device}\x1f{key.quantity}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=4).digest(), "big") & 0x7FFFFFFF or 1


def parse_go_duration(text: str) -> int:
    """`336h0m0s`, `1h0m0s`, `0s` (as SHOW RETENTION POLICIES prints them) -> ns."""
    units = {"h": 3_600_000_000_000, "m": 60_000_000_000, "s": 1_000_000_000, "ms": 1_000_000,
             "us": 1_000, "µs": 1_000, "ns": 1}
    total = 0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|h|m|s)", text):
        total += round(float(number) * units[unit])
    return total


def _key_cond(key: SeriesKey) -> str:
    return "(" + " AND ".join(f"{ident(t)} = {literal(getattr(key, t))}" for t in _TAGS) + ")"


def _time_cond(start_ns: int | None, end_ns: int | None) -> list[str]:
    out = []
    if start_ns is not None:
        out.append(f"time >= {max(int(start_ns), MIN_NANO_TIME)}")
    if end_ns is not None:
        out.append(f"time < {min(int(end_ns), MAX_NANO_TIME + 1)}")
    return out


def _where(conds: Iterable[str]) -> str:
    conds = [c for c in conds if c]
    return " WHERE " + " AND ".join(conds) if conds else ""


def _key_of(series: dict[str, Any]) -> SeriesKey:
    tags = series.get("tags") or {}
    return SeriesKey(tags.get("site", ""), tags.get("zone", ""), tags.get("device", ""), series["name"])


class InfluxDBStore:
    """InfluxDB 1.x backend of the store contract (see store/base.py and docs/store.md)."""

    name = "influxdb"
    capabilities = frozenset({
        CAP_WRITE, CAP_QUERY, CAP_QUERY_MANY, CAP_DOWNSAMPLE, CAP_LATEST, CAP_SERIES, CAP_DELETE_RANGE,
        CAP_RETENTION,
    })

    def __init__(self, client: InfluxClient, *, batch_size: int = 5000, create_database: bool = True) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.client = client
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._keys: dict[int, SeriesKey] = {}
        self._writer = InfluxWriter(client, batch_size, self._register)
        client.ping()
        if create_database:
            try:
                client.query(f"CREATE DATABASE {ident(client.database)}")
            except StoreError as exc:
                raise StoreError(f"{exc}; if the database exists and this user may not create one, set "
                                 "store.influxdb.create_database = false") from exc
        self._refresh_keys()

    @classmethod
    def from_config(cls, cfg: Config) -> InfluxDBStore:
        """The store `[store.influxdb]` describes (credentials read from their files)."""
        ic = cfg.store.influxdb
        password = cfg.path(ic.password_file).read_text().strip() if ic.password_file else ""
        token = cfg.path(ic.token_file).read_text().strip() if ic.token_file else ""
        client = InfluxClient(ic.url, ic.database, retention_policy=ic.retention_policy, username=ic.username,
                              password=password, token=token, timeout_s=ic.timeout_s, max_retries=ic.max_retries)
        return cls(client, batch_size=ic.batch_size, create_database=ic.create_database)

    def __repr__(self) -> str:
        return f"InfluxDBStore({self.client!r})"

    @property
    def unidentified_dropped(self) -> int:
        """Points the server dropped in partial writes whose message did not say which."""
        return self._writer.unidentified_dropped

    def close(self) -> None:
        self.client.close()

    # -- series ids ---------------------------------------------------------------------------
    def _register(self, key: SeriesKey) -> SeriesKey | None:
        """Remember a key's id; the other key when that id is already another's, else None."""
        with self._lock:
            other = self._keys.setdefault(series_id(key), key)
        return None if other == key else other

    def _refresh_keys(self, conds: Sequence[str] = (), quantity: str | None = None) -> list[SeriesKey]:
        """The keys InfluxDB has (SHOW SERIES), registered; only quantity measurements count."""
        q = f"SHOW SERIES ON {ident(self.client.database)}"
        if quantity:
            q += f" FROM {ident(quantity)}"
        found: set[SeriesKey] = set()
        for s in self.client.query(q + _where(conds))[0]:
            for (text,) in s["values"]:
                measurement, tags = parse_series_key(text)
                if measurement in QUANTITIES and all(tags.get(t) for t in _TAGS):
                    found.add(SeriesKey(tags["site"], tags["zone"], tags["device"], measurement))
        keys = sorted(found)
        clashes = [(k, other) for k in keys if (other := self._register(k)) is not None]
        if clashes:
            k, other = clashes[0]
            raise StoreError(f"series {k} and {other} have the same series id {series_id(k)}; "
                             "rename one (a device or zone name) to tell them apart")
        return keys

    def _keys_for(self, series_ids: Iterable[int]) -> dict[int, SeriesKey]:
        ids = [int(s) for s in series_ids]
        if any(s not in self._keys for s in ids):
            self._refresh_keys()
        return {s: self._keys[s] for s in ids if s in self._keys}

    # -- writes -------------------------------------------------------------------------------
    def write(self, batch: Batch) -> WriteResult:
        """Store the batch; rows InfluxDB cannot keep come back in `rejected` (store/influx_write.py)."""
        return self._writer.write(batch)

    def commit_ingest(self, commit: IngestCommit) -> WriteResult:
        raise not_supported(self.name, CAP_INGEST_COMMIT, "the node's ledger and dead letters live in DuckDB")

    # -- series -------------------------------------------------------------------------------
    def series(
        self,
        *,
        site: str | None = None,
        zone: str | None = None,
        quantity: str | None = None,
        device: str | None = None,
    ) -> list[SeriesInfo]:
        conds = [f"{ident(t)} = {literal(v)}" for t, v in (("site", site), ("zone", zone), ("device", device)) if v]
        if quantity and quantity not in QUANTITIES:
            return []
        keys = self._refresh_keys(conds, quantity)
        return self._infos(keys, conds)

    def series_by_id(self, series_id: int) -> SeriesInfo | None:
        key = self._keys_for([series_id]).get(int(series_id))
        if key is None:
            return None
        infos = self._infos([key], [_key_cond(key)])
        return infos[0] if infos else None

    def _infos(self, keys: list[SeriesKey], conds: list[str]) -> list[SeriesInfo]:
        if not keys:
            return []
        src = ",".join(ident(m) for m in sorted({k.quantity for k in keys}))
        where = _where(conds)
        counts, firsts, lasts = self.client.query(
            f"SELECT count(value) FROM {src}{where} {_GROUP_TAGS}; "
            f"SELECT first(value) FROM {src}{where} {_GROUP_TAGS}; "
            f"SELECT last(value) FROM {src}{where} {_GROUP_TAGS}"
        )
        n = {_key_of(s): int(s["values"][0][1]) for s in counts}
        first = {_key_of(s): int(s["values"][0][0]) for s in firsts}
        last = {_key_of(s): (int(s["values"][0][0]), float(s["values"][0][1])) for s in lasts}
        out = []
        for k in keys:
            lt = last.get(k)
            out.append(SeriesInfo(series_id(k), k, QUANTITIES[k.quantity].unit, n.get(k, 0), first.get(k),
                                  lt[0] if lt else None, lt[1] if lt else None))
        return out

    # -- reads --------------------------------------------------------------------------------
    def _by_measurement(self, keys: Iterable[SeriesKey]) -> dict[str, list[SeriesKey]]:
        out: dict[str, list[SeriesKey]] = {}
        for k in keys:
            out.setdefault(k.quantity, []).append(k)
        return out

    def _select(
        self, select: str, keys: Iterable[SeriesKey], start_ns: int | None, end_ns: int | None, group: str = "",
        *, whole_measurements: bool = False,
    ) -> list[dict[str, Any]]:
        """`SELECT <select>` per measurement for `keys` in [start, end); all result series.

        `whole_measurements`: every series of the keys' measurements (no tag filter; for "all
        series", so the query does not grow with the number of series), ours only in the result.
        """
        statements = []
        for m, ks in self._by_measurement(keys).items():
            tags = "" if whole_measurements else "(" + " OR ".join(map(_key_cond, ks)) + ")"
            statements.append(f"SELECT {select} FROM {ident(m)}{_where([tags, *_time_cond(start_ns, end_ns)])} "
                              f"{_GROUP_TAGS}{group}")
        if not statements:
            return []
        found = [s for result in self.client.query("; ".join(statements)) for s in result]
        return [s for s in found if all((s.get("tags") or {}).get(t) for t in _TAGS)]

    def _bounds(self, keys: list[SeriesKey], start_ns: int | None, end_ns: int | None) -> tuple[int, int] | None:
        """[start, end) with open ends closed at the data's extent (GROUP BY time needs both)."""
        if start_ns is not None and end_ns is not None:
            return int(start_ns), int(end_ns)
        found = self._select("first(value)", keys, start_ns, end_ns) + self._select("last(value)", keys, start_ns, end_ns)
        times = [int(s["values"][0][0]) for s in found if s["values"]]
        if not times:
            return None
        return (min(times) if start_ns is None else int(start_ns)), (max(times) + 1 if end_ns is None else int(end_ns))

    def query(
        self, series_id: int, start_ns: int | None, end_ns: int | None, every_ns: int | None = None
    ) -> pd.DataFrame:
        """Points of one series in [start, end); with `every`, mean/min/max/count per bucket."""
        key = self._keys_for([series_id]).get(int(series_id))
        if every_ns:
            cols: dict[str, Any] = {"ts": np.int64, "value": np.float64, "min": np.float64, "max": np.float64,
                                    "count": np.int64}
            bounds = self._bounds([key], start_ns, end_ns) if key else None
            if key is None or bounds is None:
                return pd.DataFrame({c: np.empty(0, t) for c, t in cols.items()})
            found = self._select("mean(value), min(value), max(value), count(value)", [key], *bounds,
                                 group=f", time({int(every_ns)}ns) fill(none)")
            rows = [r for s in found for r in s["values"]]
            frame = pd.DataFrame(rows, columns=["ts", "value", "min", "max", "count"])
            return frame.astype(cols).sort_values("ts", ignore_index=True)
        frame = self.query_many([series_id], start_ns, end_ns) if key else pd.DataFrame(
            {c: np.empty(0, t) for c, t in _EMPTY_RAW.items()})
        return frame[["ts", "value", "quality"]].reset_index(drop=True)

    def query_many(
        self,
        series_ids: Sequence[int],
        start_ns: int | None,
        end_ns: int | None,
        *,
        every_ns: int | None = None,
        agg: Aggregate = "mean",
    ) -> pd.DataFrame:
        keys = self._keys_for(series_ids)
        cols: dict[str, Any]
        if every_ns:
            fn = check_aggregate(agg)
            cols = {"series_id": np.int64, "ts": np.int64, "value": np.float64}
            bounds = self._bounds(list(keys.values()), start_ns, end_ns) if keys else None
            found = [] if bounds is None else self._select(
                f"{fn}(value)", keys.values(), *bounds, group=f", time({int(every_ns)}ns) fill(none)")
        else:
            cols = _EMPTY_RAW
            found = self._select("value, quality", keys.values(), start_ns, end_ns)
        parts = []
        for s in found:
            data = np.array([r for r in s["values"] if r[1] is not None], dtype=object).reshape(-1, len(s["columns"]))
            part = {"series_id": np.full(len(data), series_id(_key_of(s)), np.int64),
                    "ts": data[:, 0].astype(np.int64), "value": data[:, 1].astype(np.float64)}
            if not every_ns:  # rows written by another tool have no quality: take them as OK
                part["quality"] = np.array([0 if q is None else q for q in data[:, 2]], np.uint8)
            parts.append(pd.DataFrame(part))
        if not parts:
            return pd.DataFrame({c: np.empty(0, t) for c, t in cols.items()})
        frame = pd.concat(parts, ignore_index=True).astype(cols)
        return frame.sort_values(["series_id", "ts"], ignore_index=True)

    def notes(self, series_ids: Sequence[int], start_ns: int | None, end_ns: int | None) -> pd.DataFrame:
        raise not_supported(self.name, "notes", "InfluxDB keeps no missing rows and no reasons (only `quality`)")

    def latest(self, series_ids: Sequence[int] | None = None) -> pd.DataFrame:
        keys = list(self._keys_for(series_ids).values()) if series_ids is not None else self._refresh_keys()
        rows = [(series_id(_key_of(s)), int(s["values"][0][0]), float(s["values"][0][1]))
                for s in self._select("last(value)", keys, None, None, whole_measurements=series_ids is None)
                if s["values"]]
        frame = pd.DataFrame(rows, columns=["series_id", "ts", "value"]).astype(
            {"series_id": np.int64, "ts": np.int64, "value": np.float64})
        return frame.sort_values("series_id", ignore_index=True)

    def query_long(
        self, series_ids: list[int], start_ns: int, end_ns: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Long columns (series_id, ts, value) of OK points of many series, for forecasting."""
        frame = self.query_many(series_ids, start_ns, end_ns)
        frame = frame[frame["quality"] == 0]
        return (frame["series_id"].to_numpy(np.int64), frame["ts"].to_numpy(np.int64),
                frame["value"].to_numpy(np.float64))

    def count_points(self) -> int:
        keys = self._refresh_keys()
        found = self._select("count(value)", keys, None, None, whole_measurements=True)
        return sum(int(s["values"][0][1]) for s in found if s["values"])

    # -- deletes and retention -----------------------------------------------------------------
    def delete_range(
        self, start_ns: int | None, end_ns: int | None, *, series_ids: Sequence[int] | None = None
    ) -> int:
        """Delete points in [start, end) (InfluxDB deletes in every retention policy of the database)."""
        keys = list(self._keys_for(series_ids).values()) if series_ids is not None else self._refresh_keys()
        n = sum(int(s["values"][0][1]) for s in self._select("count(value)", keys, start_ns, end_ns) if s["values"])
        statements = [
            f"DELETE FROM {ident(m)}{_where(['(' + ' OR '.join(map(_key_cond, ks)) + ')', *_time_cond(start_ns, end_ns)])}"
            for m, ks in self._by_measurement(keys).items()
        ]
        if statements:
            self.client.query("; ".join(statements))
        return n

    def _policy(self) -> list[Any]:
        rows = [r for s in self.client.query(f"SHOW RETENTION POLICIES ON {ident(self.client.database)}")[0]
                for r in s["values"]]
        name = self.client.retention_policy
        found = [r for r in rows if (r[0] == name if name else r[4])]
        if not found:
            raise StoreError(f"influxdb database {self.client.database!r} has no retention policy "
                             f"{name or '(default)'!r}; policies: {[r[0] for r in rows]}")
        return list(found[0])

    def retention(self) -> int | None:
        return parse_go_duration(self._policy()[1]) or None

    def set_retention(self, keep_ns: int | None) -> None:
        """ALTER the retention policy's duration (InfluxDB's minimum is 1 h; None: forever).

        The shard group duration follows InfluxDB's own default for that duration (1 h under two
        days, 1 d up to six months, else 7 d), since it must not exceed the duration.
        """
        policy = self._policy()[0]
        hour, day = 3_600_000_000_000, 86_400_000_000_000
        if keep_ns is None:
            duration, shard = "INF", "7d"
        else:
            duration = f"{-(-int(keep_ns) // 1_000_000_000)}s"
            shard = "1h" if keep_ns < 2 * day else "1d" if keep_ns <= 182 * day else "7d"
            if keep_ns < hour:
                raise ValueError(f"InfluxDB keeps points for at least 1 h; got {keep_ns} ns")
        self.client.query(f"ALTER RETENTION POLICY {ident(policy)} ON {ident(self.client.database)} "
                          f"DURATION {duration} SHARD DURATION {shard}")

    # -- what only the node's own store has -------------------------------------------------------
    def deadletters(self, *, reason: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        raise not_supported(self.name, CAP_DEADLETTERS, "dead letters are kept by the node's DuckDB store")

    def deadletter_counts(self) -> dict[str, int]:
        raise not_supported(self.name, CAP_DEADLETTERS, "dead letters are kept by the node's DuckDB store")

    def outcome_counts(self) -> dict[str, int]:
        raise not_supported(self.name, CAP_INGEST_COMMIT, "the message ledger is kept by the node's DuckDB store")
