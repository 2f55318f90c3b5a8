"""Issue 4: a disk that fills up. Writes stop with a clear error, resume when space returns, and
nothing already committed is damaged: the DuckDB store, its compaction and the node's ingest.

Each test mounts a small tmpfs (root may; elsewhere the test skips and says why), puts the store
and its `.cold/` directory there and fills the rest with a ballast file, so the disk is full in
milliseconds instead of after gigabytes of points.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from greennanny.api.app import create_app
from greennanny.config import config_from_dict
from greennanny.errors import DiskFull
from greennanny.ingest.replay import Message, publish
from greennanny.model import Batch, SeriesKey
from greennanny.runtime.node import Node
from greennanny.store.cold import DAY_NS
from greennanny.store.duckdb import DuckDBStore, Retention
from tests.integration.nodeproc import wait

pytestmark = pytest.mark.integration

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00Z
MIN = 60 * 10**9
KEYS = [SeriesKey("gh", f"house-{i % 4}", f"probe-{i}", q) for i in range(10) for q in ("air_temperature", "co2")]


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs, unmounted afterwards."""
    where = tmp_path / "small-disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)], check=False,
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def fill(where: Path, leave: int = 0, name: str = "ballast") -> Path:
    """A ballast file that takes all free space on `where` but about `leave` bytes."""
    ballast = where / name
    with ballast.open("wb") as fh:
        for size in (1 << 20, 1 << 12):  # big blocks first, then pages, until the filesystem refuses
            block = b"\0" * size
            while True:
                free = free_bytes(where)
                if free - size < leave:
                    break
                try:
                    fh.write(block)
                    fh.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    assert free_bytes(where) <= leave + (1 << 12), free_bytes(where)
    return ballast


def free_bytes(where: Path) -> int:
    import os

    st = os.statvfs(where)
    return st.f_bavail * st.f_frsize


def batch(i: int, n: int = 4000, keys: list[SeriesKey] = KEYS, step: int = MIN) -> Batch:
    """`n` points over `keys`, batch `i` following batch `i - 1` in time."""
    k = np.arange(n) % len(keys)
    ts = T0 + (i * n + np.arange(n, dtype=np.int64)) // len(keys) * step
    v = np.round(20 + 5 * np.sin((i * n + np.arange(n)) / 97.0), 2) * np.where(k % 2, 30, 1)
    return Batch.from_columns(keys, k.astype(np.int32), ts, v)


def fingerprint(store: DuckDBStore, before_ns: int | None = None) -> tuple[int, str]:
    """Rows and a checksum of (series key, ts, value, quality) over every stored row (hot and cold)."""
    rows = store.rows()
    if before_ns is not None:
        rows = rows[rows["ts"] < before_ns]
    names = {s.id: str(s.key) for s in store.series()}
    h = hashlib.sha256()
    for sid, ts, v, q in zip(rows["series_id"], rows["ts"], rows["value"], rows["quality"], strict=True):
        h.update(f"{names[int(sid)]}|{int(ts)}|{float(v)!r}|{int(q)}\n".encode())
    return len(rows), h.hexdigest()


def test_a_write_on_a_full_disk_raises_disk_full_and_every_committed_point_survives(small_fs: Path) -> None:
    store = DuckDBStore(small_fs / "greennanny.duckdb")
    for i in range(4):
        store.write(batch(i))
    store.checkpoint()
    committed = fingerprint(store)
    ballast = fill(small_fs, leave=256 * 1024)  # some room left: writes fill the rest themselves
    written, err = 0, None
    for i in range(4, 400):
        try:
            store.write(batch(i))
            written += 1
        except DiskFull as exc:
            err = exc
            break
    assert err is not None, "the disk never filled"
    assert written >= 1  # the store itself used up the last free bytes
    msg = str(err)
    assert str(store.path) in msg and "no space left on device" in msg
    assert re.search(r"\(\d[\d,]* bytes free on ", msg), msg
    assert err.free_bytes is not None and err.free_bytes < 64 * 1024 and err.path == str(store.path)
    rest = fill(small_fs, name="ballast-2")  # the bytes a smaller write could still use
    # a checkpoint (maintenance runs one) fails the same way; DuckDB invalidates its connection
    # then, and the store opens the file again at once: reads go on while the disk is full
    with pytest.raises(DiskFull, match="no space left on device while checkpointing"):
        store.checkpoint()
    # the new series of a batch that failed must not be remembered as if it existed
    newcomer = [SeriesKey("gh", "house-9", "probe-new", "air_temperature")]
    with pytest.raises(DiskFull):
        store.write(batch(500, n=4000, keys=newcomer))
    before_fill = fingerprint(store, before_ns=int(batch(4).ts_ns.min()))
    assert before_fill == committed
    ballast.unlink()
    rest.unlink()
    store.write(batch(500, n=4000, keys=newcomer))  # space is back: writes resume
    assert [s.points for s in store.series() if s.key == newcomer[0]] == [4000]
    store.close()
    reopened = DuckDBStore(small_fs / "greennanny.duckdb")
    try:
        assert fingerprint(reopened, before_ns=int(batch(4).ts_ns.min())) == committed
        assert reopened.count_points() == committed[0] + written * 4000 + 4000
    finally:
        reopened.close()


# Where the space runs out decides which step fails: a minute a point makes rollups big enough
# that DuckDB writes them to its file inside the transaction; ten minutes a point keeps them in
# memory, so the day file's Parquet write fails (or, with a little room, a later file or the commit).
@pytest.mark.parametrize(("step_min", "leave"), [(1, 0), (10, 0), (10, 24 * 1024)],
                         ids=["rollups-fail", "day-file-fails", "later-step-fails"])
def test_compaction_on_a_full_disk_leaves_the_store_readable_and_the_next_run_compacts(
        small_fs: Path, step_min: int, leave: int) -> None:
    path = small_fs / "greennanny.duckdb"
    store = DuckDBStore(path, retention=Retention(raw_days=0, rollup_1m_days=0, compact_after_h=48))
    days = 4
    per_day = 1440 // step_min * len(KEYS)
    for d in range(days):
        store.write(batch(d, n=per_day, step=step_min * MIN))
    store.checkpoint()
    now = T0 + (days + 3) * DAY_NS
    committed = fingerprint(store)
    ids = [s.id for s in store.series()]
    hourly = store.query_many(ids, T0, T0 + days * DAY_NS, every_ns=60 * MIN, agg="mean")
    ballast = fill(small_fs, leave=leave)
    with pytest.raises(DiskFull, match="no space left on device while compacting"):
        store.maintain(now)
    assert not list((small_fs / "greennanny.duckdb.cold").glob("*.tmp"))  # no half file holds the space
    assert fingerprint(store) == committed
    assert store.query_many(ids, T0, T0 + days * DAY_NS, every_ns=60 * MIN, agg="mean").equals(hourly)
    assert store.stats()["raw_points"] == committed[0]
    ballast.unlink()
    done = store.maintain(now)
    assert done["days_compacted"] == days
    stats = store.stats()
    assert stats["cold_days"] == days and stats["hot_points"] == 0 and stats["cold_points"] == committed[0]
    assert fingerprint(store) == committed
    assert store.query_many(ids, T0, T0 + days * DAY_NS, every_ns=60 * MIN, agg="mean").equals(hourly)
    store.close()
    reopened = DuckDBStore(path)
    try:
        assert fingerprint(reopened) == committed
    finally:
        reopened.close()


def message(i: int) -> Message:
    ts = T0 + i * MIN
    return Message(f"greennanny/gh/house-{i % 3}/probe-{i % 5}",
                   f'{{"air_temperature": {18 + (i % 70) / 10:.1f}, "co2": {400 + i % 300}, "ts": {ts}}}'.encode(), ts)


def test_node_stops_acking_on_a_full_disk_logs_it_once_and_stores_every_message_once_when_space_returns(
        mosquitto, small_fs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config_from_dict({"node": {"data_dir": str(small_fs / "data")}, "mqtt": {"url": mosquitto.url},
                            "pipeline": {"mode": "backfill", "batch_max_wait_ms": 50}, "forecast": {"enabled": False},
                            "api": {"token_file": ""}}, base_dir=tmp_path)
    node = Node(cfg)
    acked: list[int] = []
    real_ack = node.mqtt.ack_batch

    def counting_ack(ups: list) -> None:  # the real ack, counted
        acked.extend(u.mid for u in ups)
        real_ack(ups)

    node.mqtt.ack_batch = counting_ack  # type: ignore[method-assign]
    node.start(forecasts=False)
    api = TestClient(create_app(cfg, node.store, node))
    try:
        node.mqtt.wait_connected(10)
        first, during = 200, 300
        publish(mosquitto.url, [message(i) for i in range(first)])
        assert wait(lambda: node.stats.messages == first)
        node.store.checkpoint()
        committed = fingerprint(node.store)
        ballast = fill(small_fs)
        with caplog.at_level(logging.WARNING, logger="greennanny.node"):
            publish(mosquitto.url, [message(i) for i in range(first, first + during)])
            assert wait(lambda: node.stats.store_error is not None)
            time.sleep(7)  # three more retries at 2 s
            assert len(acked) == first and node.stats.messages == first  # nothing of the episode acked
            health = api.get("/health").json()
            assert health["status"] == "ok" and "no space left on device" in health["store_error"]
            assert health["points_stored"] == committed[0]  # still readable
            failures = [r for r in caplog.records if "store commit failed" in r.getMessage()]
            assert len(failures) == 1 and "no space left on device" in failures[0].getMessage()
            assert str(node.store.path) in failures[0].getMessage()
            ballast.unlink()
            assert wait(lambda: node.stats.messages == first + during, timeout=30)
        assert [r for r in caplog.records if "commits succeed again" in r.getMessage()]
        assert node.stats.store_error is None and api.get("/health").json()["store_error"] is None
        assert len(acked) == first + during
        assert node.store.outcome_counts() == {"stored": first + during}
        assert fingerprint(node.store, before_ns=T0 + first * MIN) == committed
    finally:
        node.stop()
    reopened = DuckDBStore(small_fs / "data" / "greennanny.duckdb")
    try:
        rows = reopened.rows()
        assert len(rows) == len(rows.drop_duplicates(["series_id", "ts"])) == 2 * (first + during)
        assert fingerprint(reopened, before_ns=T0 + first * MIN) == committed
    finally:
        reopened.close()


