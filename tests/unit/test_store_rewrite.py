"""Rewriting the DuckDB file without its free blocks (`DuckDBStore.rewrite`, run by `maintain`).

DuckDB reuses free blocks but truncates only those at the file's end, so a file keeps its
high-water mark (tests/integration/test_store_two_years.py). The rewrite copies every table into
`<file>.rewrite`, fsyncs it and renames it over the file with the connection closed. Checked
here: every table's rows (in their order), the schema version and tier state are kept, reads are
equal, the free bytes go; a failure or a hard crash at each step leaves a store that opens with
everything, and a leftover copy is removed at open.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from greennanny.errors import StoreError
from greennanny.model import Batch, Quality, SeriesKey
from greennanny.store.base import DeadLetter, DeviceRecord, IngestCommit, LedgerEntry
from greennanny.store.cold import DAY_NS
from greennanny.store.duckdb import DuckDBStore, Retention
from greennanny.store.duckdb_rewrite import REWRITE_SUFFIX

DAY0 = 1_735_689_600 * 10**9  # 2025-01-01T00:00Z
S = 10**9
KEYS = [SeriesKey("gh", "house-1", f"probe-{d}", q) for d in range(3) for q in ("air_temperature", "co2")]
STEPS = ("copy", "checkpoint_copy", "fsync_copy", "close", "rename", "fsync_dir", "reopen")
POLICY = Retention(raw_days=20, rollup_1m_days=30, rollup_1h_days=0, forecasts_days=5, ledger_days=5,
                   deadletters_days=5, compact_after_h=48)


def build(path: Path) -> DuckDBStore:
    """A store with every table in use (cold days, rollups and month files, notes, ledger, dead
    letters, devices, forecasts) and a few MB of free blocks left by retention and deletes."""
    store = DuckDBStore(path, retention=POLICY)
    rng = np.random.default_rng(7)
    for day in range(45):
        ts = DAY0 + day * DAY_NS + np.arange(0, DAY_NS, 60 * S, dtype=np.int64)
        ki = np.tile(np.arange(len(KEYS), dtype=np.int32), ts.size)
        tt = np.repeat(ts, len(KEYS))
        value = np.round(rng.normal(20, 3, tt.size), 1)
        quality = np.where(rng.random(tt.size) < 1e-3, int(Quality.MISSING), int(Quality.OK)).astype(np.uint8)
        value[quality == Quality.MISSING] = np.nan
        reasons = {int(r): f"missing {day}" for r in np.flatnonzero(quality == Quality.MISSING)}
        ledger = [LedgerEntry(int(t) + S, f"t/{k}", "stored", "uplink", f"k{day}:{t}", 1)
                  for t, k in zip(tt[::50].tolist(), ki[::50].tolist(), strict=True)]
        commit = IngestCommit(Batch.from_columns(KEYS, ki, tt, value, quality, reasons), ledger=ledger,
                              deadletters=[DeadLetter(int(ts[0]), "t/x", b"\x01\x02", "unknown_device", "no such", "mqtt",
                                                      "dev-x")],
                              device_events=[(int(ts[0]), "dev-x", "seen", f"day {day}")])
        store.commit_ingest(commit)
        if day % 7 == 6:
            store.maintain(DAY0 + (day + 1) * DAY_NS)
    # two notes for one instant: the later one is the reason read back (point_notes' row order matters)
    t = DAY0 + 44 * DAY_NS + 3600 * S
    for why in ("first reason", "second reason"):
        store.write(Batch.from_columns(KEYS[:1], np.zeros(1, np.int32), np.array([t]), np.array([np.nan]),
                                       np.array([int(Quality.MISSING)], np.uint8), {0: why}))
    store.upsert_device(DeviceRecord("24e124ffff000001", "milesight", "EM500-CO2", "", "gh", "house-1", "p", "config", 600))
    runs = pd.DataFrame({"run_id": [1], "series_id": np.array([1], np.int32), "made_ns": [t], "start_ns": [t],
                         "step_ns": [3600 * S], "horizon": np.array([1], np.int32), "model": ["seasonal_naive"],
                         "backtest_mae": [0.1], "backtest_mase": [0.9], "runner_up": ["ets"], "runner_up_mase": [1.0],
                         "fallback_reason": [None]})
    pts = pd.DataFrame({"run_id": [1], "series_id": np.array([1], np.int32), "ts": [t], "mean": [20.0],
                        "lo80": [19.0], "hi80": [21.0], "lo95": [18.0], "hi95": [22.0]})
    store.write_forecasts(runs, pts)
    store.delete_range(DAY0 + 43 * DAY_NS, DAY0 + 44 * DAY_NS)  # hot rows: free blocks after the checkpoint
    store.maintain(DAY0 + 45 * DAY_NS)  # may rewrite already; the tests then rewrite again
    # a late point behind the rollup watermark: a 1-min table row (that table holds only such
    # overrides, merged into the day files when their month closes)
    store.write(Batch.from_columns(KEYS[:1], np.zeros(1, np.int32), np.array([DAY0 + 44 * DAY_NS + 30 * S]),
                                   np.array([21.5]), np.zeros(1, np.uint8), {}))
    store.checkpoint()
    return store


def plain(df: pd.DataFrame) -> dict[str, list[Any]]:
    """Columns as lists, NaN as None (NaN != NaN would make equal frames differ)."""
    return df.astype(object).where(df.notna(), None).to_dict("list")


def snapshot(store: DuckDBStore) -> dict[str, Any]:
    """Every table's rows in their stored order, and what the reads return."""
    con = store._con
    out: dict[str, Any] = {}
    for (table,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                                "ORDER BY 1").fetchall():
        out[table] = con.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()
    ids = [s.id for s in store.series()]
    out["series()"] = store.series()
    out["rows()"] = plain(store.rows())
    out["hourly"] = plain(store.query_many(ids, None, None, every_ns=3600 * S, agg="mean"))
    out["minutes"] = plain(store.query(ids[0], DAY0 + 40 * DAY_NS, DAY0 + 45 * DAY_NS, 60 * S))
    out["notes"] = plain(store.notes(ids, None, None))
    out["latest"] = plain(store.latest())
    out["until"] = store.tiers.until
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One built store, closed; each test copies it (building takes a few seconds)."""
    path = tmp_path_factory.mktemp("built") / "s.duckdb"
    build(path).close()
    return path


def copy_of(built: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copy(built, tmp_path / built.name)
    shutil.copytree(built.with_name(built.name + ".cold"), tmp_path / (built.name + ".cold"))
    return tmp_path / built.name


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if REWRITE_SUFFIX in p.name or p.name.endswith(".wal"))


def spoil(store: DuckDBStore) -> None:
    """Free blocks the rewrite can reclaim: a big table written and dropped once another one lies
    after it in the file (free blocks at the end are truncated by a checkpoint anyway)."""
    store._con.execute("CREATE TABLE junk AS SELECT random() AS r FROM range(600000)")
    store.checkpoint()
    store._con.execute("CREATE TABLE keep_me AS SELECT random() AS r FROM range(20000)")
    store.checkpoint()
    store._con.execute("DROP TABLE junk")
    store.checkpoint()


def test_rewrite_keeps_every_row_and_read_and_frees_the_blocks(built: Path, tmp_path: Path) -> None:
    store = DuckDBStore(copy_of(built, tmp_path), retention=POLICY)
    spoil(store)
    before = snapshot(store)
    free = store.file_space()[1]
    assert free >= 3 * 2**20 and store.stats()["file_free_bytes"] == free
    assert before["point_notes"] and before["rollup_1m"] and before["tier_state"] and before["ledger"]
    assert before["notes"]["reason"][before["notes"]["ts"].index(DAY0 + 44 * DAY_NS + 3600 * S)] == "second reason"
    file_before = store.path.stat().st_size
    freed = store.rewrite()
    assert freed == file_before - store.path.stat().st_size >= free - 2**18
    assert store.file_space()[1] == 0 and store.stats()["file_free_bytes"] == 0
    assert snapshot(store) == before
    assert store._con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [("2",)]
    assert leftovers(store.path) == []
    # the store goes on: a write, a maintenance run, a fresh open
    store.write(Batch.from_columns(KEYS[:1], np.zeros(1, np.int32), np.array([DAY0 + 45 * DAY_NS]), np.array([1.5])))
    store.maintain(DAY0 + 46 * DAY_NS)
    after = snapshot(store)
    store.close()
    again = DuckDBStore(store.path, retention=POLICY)
    assert snapshot(again) == after
    again.close()


def test_maintain_rewrites_a_file_mostly_free_and_reports_it(built: Path, tmp_path: Path) -> None:
    store = DuckDBStore(copy_of(built, tmp_path), retention=POLICY)
    spoil(store)
    before = snapshot(store)
    done = store.maintain(DAY0 + 45 * DAY_NS)
    assert done["file_rewritten_bytes_freed"] >= 3 * 2**20
    assert store.file_space()[1] == 0 and snapshot(store) == before
    assert store.maintain(DAY0 + 45 * DAY_NS)["file_rewritten_bytes_freed"] == 0  # nothing free: no rewrite
    store.close()


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", STEPS)
def test_a_failure_at_any_step_leaves_the_store_whole_and_open(built: Path, tmp_path: Path, step: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = DuckDBStore(copy_of(built, tmp_path), retention=POLICY)
    spoil(store)
    before = snapshot(store)

    def fail(at: str) -> None:
        if at == step:
            raise Crash(at)

    monkeypatch.setattr(store, "_rewrite_step", fail)
    with pytest.raises(Crash):
        store.rewrite()
    assert leftovers(store.path) == []
    assert snapshot(store) == before  # open again, on the old file or the new one
    renamed = STEPS.index(step) > STEPS.index("rename")
    assert (store.file_space()[1] == 0) == renamed
    store.write(Batch.from_columns(KEYS[:1], np.zeros(1, np.int32), np.array([DAY0 + 45 * DAY_NS]), np.array([1.5])))
    after = snapshot(store)
    store.close()
    again = DuckDBStore(store.path, retention=POLICY)
    assert snapshot(again) == after
    again.close()


CHILD = """
import os, sys
from greennanny.store.duckdb import DuckDBStore, Retention
store = DuckDBStore(sys.argv[1], retention=Retention(raw_days=20, rollup_1m_days=30, rollup_1h_days=0,
                    forecasts_days=5, ledger_days=5, deadletters_days=5, compact_after_h=48))
def crash(at):
    if at == sys.argv[2]:
        os._exit(3)  # a hard crash: no cleanup, no close
store._rewrite_step = crash
store.rewrite()
os._exit(0)
"""


@pytest.mark.parametrize("step", STEPS)
def test_a_hard_crash_at_any_step_leaves_a_store_that_opens_with_everything(built: Path, tmp_path: Path,
                                                                          step: str) -> None:
    path = copy_of(built, tmp_path)
    store = DuckDBStore(path, retention=POLICY)
    spoil(store)
    before = snapshot(store)
    store.close()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), step], env=os.environ.copy(), timeout=120,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 3, proc.stderr
    left = leftovers(path)
    if STEPS.index(step) in (1, 2, 3, 4):  # the copy is on disk, not yet renamed
        assert path.name + REWRITE_SUFFIX in left
    again = DuckDBStore(path, retention=POLICY)
    assert leftovers(path) == []
    assert snapshot(again) == before
    again.write(Batch.from_columns(KEYS[:1], np.zeros(1, np.int32), np.array([DAY0 + 45 * DAY_NS]), np.array([1.5])))
    again.close()


def test_a_half_written_copy_left_behind_is_removed_at_open(built: Path, tmp_path: Path) -> None:
    path = copy_of(built, tmp_path)
    tmp = path.with_name(path.name + REWRITE_SUFFIX)
    tmp.write_bytes(b"\0" * 300_000)  # what a crash in the middle of the copy leaves
    tmp.with_name(tmp.name + ".wal").write_bytes(b"x" * 1000)
    store = DuckDBStore(path, retention=POLICY)
    assert leftovers(path) == []
    assert store.count_points() > 0
    store.close()
    tmp.write_bytes(b"\0" * 1000)
    DuckDBStore(path, read_only=True).close()  # a read-only open leaves files alone
    assert tmp.exists()


def test_a_copy_that_lost_rows_is_refused(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = DuckDBStore(copy_of(built, tmp_path), retention=POLICY)
    spoil(store)
    before = snapshot(store)

    def lose_rows_then_check(counts: dict[str, int]) -> None:  # a copy that came out short
        store._con.execute("DELETE FROM _rewrite.ledger WHERE rowid % 2 = 0")
        real(counts)

    real = store._rewrite_copy_check
    monkeypatch.setattr(store, "_rewrite_copy_check", lose_rows_then_check)
    with pytest.raises(StoreError, match="rewritten copy"):
        store.rewrite()
    assert leftovers(store.path) == [] and snapshot(store) == before
    store.close()


def test_maintain_skips_the_rewrite_without_room_for_the_copy_and_survives_a_full_disk(
        built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    store = DuckDBStore(copy_of(built, tmp_path), retention=POLICY)
    spoil(store)
    before = snapshot(store)
    size, free = store.file_space()
    monkeypatch.setattr(store, "free_bytes", lambda: size - free)  # less than the copy needs
    assert store.maintain(DAY0 + 45 * DAY_NS)["file_rewritten_bytes_freed"] == 0
    assert "not rewriting it" in caplog.text and store.file_space()[1] == free
    monkeypatch.undo()

    def full(at: str) -> None:  # ENOSPC while DuckDB writes the copy
        if at == "checkpoint_copy":
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_rewrite_step", full)
    assert store.maintain(DAY0 + 45 * DAY_NS)["file_rewritten_bytes_freed"] == 0  # retention ran; logged
    assert "left as it was" in caplog.text and "no space left" in caplog.text.lower()
    assert leftovers(store.path) == [] and snapshot(store) == before
    store.close()


SLOW_READ = "SELECT count(DISTINCT (a.range * 7919) % 100000007) FROM range(?) a"


@pytest.mark.parametrize("wait_s", [5.0, 0.05])
def test_a_read_in_flight_is_waited_for_or_the_rewrite_gives_up(built: Path, tmp_path: Path, wait_s: float,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A cursor busy in another thread keeps DuckDB's database open after the connection closes;
    renaming the copy then would leave the store writing to the old, unlinked file."""
    import threading

    from greennanny.errors import StoreUnavailable
    from greennanny.store import duckdb_rewrite as store_mod

    monkeypatch.setattr(store_mod, "REWRITE_CLOSE_WAIT_S", wait_s)
    store = DuckDBStore(copy_of(built, tmp_path), retention=POLICY)
    spoil(store)
    before = snapshot(store)
    got: dict[str, Any] = {}
    started = threading.Event()

    def reader() -> None:
        cur = store._cur()
        started.set()
        got["read"] = cur.execute(SLOW_READ, [4_000_000]).fetchall()

    th = threading.Thread(target=reader)
    th.start()
    started.wait()
    time.sleep(0.1)
    caplog.set_level("INFO", "greennanny.store")
    if wait_s > 1:
        assert store.rewrite() > 0 and store.file_space()[1] == 0
        assert "waiting for a read in flight" in caplog.text
    else:
        with pytest.raises(StoreUnavailable, match="kept the file open"):
            store.rewrite()
    th.join()
    assert got["read"] == [(4_000_000,)]
    assert leftovers(store.path) == [] and snapshot(store) == before
    store.write(Batch.from_columns(KEYS[:1], np.zeros(1, np.int32), np.array([DAY0 + 45 * DAY_NS]), np.array([1.5])))
    after = snapshot(store)
    store.close()
    again = DuckDBStore(store.path, retention=POLICY)
    assert snapshot(again) == after  # the write went to the file in place, not to an unlinked one
    again.close()
