"""Rewriting the store's DuckDB file without its free blocks (part of `DuckDBStore`).

Why: DuckDB reuses free blocks but truncates only those at the file's end, so the file stays at
its high-water mark (the open month's 1-min rollups leave their table when the month closes into
its Parquet file). The maintenance job rewrites the file compactly when much of it is free: a
fresh copy beside it (`COPY FROM DATABASE`), checked, fsynced and renamed over the file with the
connection closed, then reopened. A crash at any step leaves the old file or the new one in
place, never a half-written one; a leftover copy is removed at the next open
(tests/unit/test_store_rewrite.py, docs/operations.md).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from greennanny.errors import StoreError, StoreUnavailable
from greennanny.store.cold import fsync_dir
from greennanny.store.duckdb_sql import first_line, scalar

log = logging.getLogger("greennanny.store")

# The maintenance job rewrites the file when at least this share of it, and this many bytes, are free
# blocks (docs/operations.md); `rewrite()` does it unconditionally.
REWRITE_FREE_SHARE = 0.25
REWRITE_FREE_BYTES = 1 << 20
REWRITE_CLOSE_WAIT_S = 5.0  # how long the rewrite waits for reads in flight to end before it gives up
REWRITE_SUFFIX = ".rewrite"  # the copy being written: `<file>.rewrite` (and its `.wal`); removed at open


class FileRewrite:
    """The file rewrite of `DuckDBStore` (a mixin: it uses the store's connection and lock)."""

    path: Path
    _con: duckdb.DuckDBPyConnection
    _lock: threading.RLock
    _local: threading.local
    _invalid: bool

    if TYPE_CHECKING:
        def _open(self) -> None: ...
        def _ensure_open(self) -> None: ...
        def _reopen_quietly(self) -> None: ...
        def _checkpoint(self) -> None: ...
        def free_bytes(self) -> int: ...  # type: ignore[empty-body]
        def _failure(self, exc: BaseException, doing: str) -> StoreUnavailable | None: ...

    def _rewrite_if_sparse(self) -> int:
        """The maintenance step: rewrite the file when at least REWRITE_FREE_SHARE of it and
        REWRITE_FREE_BYTES are free blocks and the disk has room for the copy. A rewrite that
        fails (a full disk) is logged and leaves the file as it was: retention has committed."""
        size, free = self.file_space()
        if free < REWRITE_FREE_BYTES or free < REWRITE_FREE_SHARE * size:
            return 0
        need = size - free + REWRITE_FREE_BYTES  # the copy holds the used blocks
        if (room := self.free_bytes()) < need:
            log.warning("store %s: %s of its %s bytes are free blocks, but the disk has %s bytes free, less than "
                        "the %s a compact copy needs; not rewriting it", self.path, f"{free:,}", f"{size:,}",
                        f"{room:,}", f"{need:,}")
            return 0
        try:
            return self._rewrite()
        except StoreUnavailable as exc:
            log.warning("store %s: rewriting the file without its free blocks failed; it is left as it was: %s",
                        self.path, exc)
            return 0

    # -- rewriting the file compactly ---------------------------------------------------------
    def file_space(self, con: duckdb.DuckDBPyConnection | None = None) -> tuple[int, int]:
        """(bytes of the file's blocks, bytes of them free) as DuckDB counts them (after a checkpoint)."""
        rows = (con or self._con).execute(
            "SELECT block_size, total_blocks, free_blocks FROM pragma_database_size() "
            "WHERE database_name = current_database()").fetchall()
        block, total, free = (int(x) for x in rows[0])
        return block * total, block * free

    def _rewrite_path(self) -> Path:
        return self.path.with_name(self.path.name + REWRITE_SUFFIX)

    def _remove_rewrite_leftovers(self) -> None:
        """A copy left by a rewrite that did not finish (a crash before its rename): the file in
        place is whole (the old one, or the new one once renamed), so the copy only holds space."""
        tmp = self._rewrite_path()
        gone = False
        for f in (tmp, tmp.with_name(tmp.name + ".wal")):
            if f.exists():
                f.unlink()
                gone = True
        if gone:
            fsync_dir(self.path.parent)
            log.warning("store %s: removed %s left by a file rewrite that did not finish", self.path, tmp.name)

    def _rewrite_step(self, step: str) -> None:
        """Called before each step of `rewrite` (tests raise or exit here to simulate a crash)."""

    def rewrite(self) -> int:
        """Rewrite the DuckDB file without its free blocks; returns the bytes it shrank by."""
        with self._lock:
            self._ensure_open()
            self._checkpoint()
            return self._rewrite()

    def _rewrite(self) -> int:
        """Under the lock, after a checkpoint: copy every table (schema version, tier state, rows in
        their order) into `<file>.rewrite`, check the counts, checkpoint and fsync it, close the
        connection, rename the copy over the file, fsync the directory, open it again.

        A crash before the rename leaves the old file whole and the copy, which the next open
        removes; after it, the new file is whole. A failure before the rename removes the copy and
        goes on with the old file; the store is open again either way."""
        started = time.perf_counter()
        tmp = self._rewrite_path()
        self._remove_rewrite_leftovers()
        before = self.path.stat().st_size
        wal = self.path.with_name(self.path.name + ".wal")
        db = str(scalar(self._con, "SELECT current_database()"))
        tables = [str(t) for (t,) in self._con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY 1").fetchall()]
        counts = {t: int(scalar(self._con, f'SELECT count(*) FROM "{t}"')) for t in tables}
        try:
            self._rewrite_step("copy")
            self._con.execute("ATTACH '" + str(tmp).replace("'", "''") + "' AS _rewrite")
            try:
                self._con.execute(f'COPY FROM DATABASE "{db}" TO _rewrite')
                self._rewrite_copy_check(counts)
                self._rewrite_step("checkpoint_copy")
                self._con.execute("CHECKPOINT _rewrite")
                new_blocks = self.file_space_of("_rewrite")
            finally:
                self._con.execute("DETACH DATABASE IF EXISTS _rewrite")
            self._rewrite_step("fsync_copy")
            if tmp.with_name(tmp.name + ".wal").exists():
                raise StoreError(f"store {self.path}: the rewritten copy kept a write-ahead log")
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        except BaseException as exc:
            self._remove_rewrite_leftovers()
            err = self._failure(exc, "rewriting the file") if isinstance(exc, (duckdb.Error, OSError)) else None
            if self._invalid:
                self._reopen_quietly()
            if err is None:
                raise
            raise err from exc
        try:
            self._rewrite_step("close")
            self._close_for_rewrite()
            if wal.exists():
                raise StoreError(f"store {self.path}: a write-ahead log remained after closing; not replacing the file")
            self._rewrite_step("rename")
            os.replace(tmp, self.path)
            self._rewrite_step("fsync_dir")
            fsync_dir(self.path.parent)
            self._rewrite_step("reopen")
        except BaseException:
            try:
                self._con.close()
            except duckdb.Error:
                pass
            self._remove_rewrite_leftovers()  # still there only if the rename did not happen
            self._open_after_rewrite()
            raise
        self._open_after_rewrite()
        if self.file_space()[0] != new_blocks:  # a DuckDB instance still open on the old file would be
            raise StoreError(f"store {self.path}: opened again after the rewrite, but not on the new file")
        after = self.path.stat().st_size
        log.info("store %s rewritten without its free blocks in %.2f s: %s -> %s bytes (%s freed)",
                 self.path, time.perf_counter() - started, f"{before:,}", f"{after:,}", f"{before - after:,}")
        return before - after

    def _close_for_rewrite(self) -> None:
        """Close the connection and wait until DuckDB has closed the database itself.

        Closing the connection closes every reader's cursor, but a cursor busy with a query in
        another thread refuses (ResourceInUseException) and keeps the database open; a connect
        to the path then hands back that instance, on the old file once the copy is renamed over
        it, and writes would go to an unlinked file. So an in-memory database is attached as a
        mark (attached databases belong to the instance) and a probe connection checks that it
        is gone before the rename; readers get no new cursor meanwhile (`_invalid`: they wait for
        the lock). A reader that keeps the file busy past REWRITE_CLOSE_WAIT_S fails the rewrite."""
        self._con.execute("ATTACH ':memory:' AS _rewrite_alive")
        self._invalid = True  # readers take the lock and open again (`_cur`) instead of a cursor now closed
        try:
            self._con.close()
        except duckdb.Error as exc:  # a reader's query in flight: closed, but the database stays open until it ends
            log.info("store %s: waiting for a read in flight before the file rewrite (%s)", self.path, first_line(exc))
        self._local = threading.local()  # drop the readers' cursors: the busy one goes when its read ends
        deadline = time.monotonic() + REWRITE_CLOSE_WAIT_S
        while True:
            probe = duckdb.connect(str(self.path))
            try:
                alive = probe.execute(
                    "SELECT count(*) FROM duckdb_databases() WHERE database_name = '_rewrite_alive'").fetchall()[0][0]
            finally:
                probe.close()
            if not alive:
                return
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"store {self.path}: a read kept the file open for {REWRITE_CLOSE_WAIT_S} s; "
                                       "not rewriting it this time")
            time.sleep(0.01)

    def _open_after_rewrite(self) -> None:
        try:
            self._open()
        except BaseException:
            self._invalid = True  # the next call opens it again (`_ensure_open`)
            raise

    def _rewrite_copy_check(self, counts: dict[str, int]) -> None:
        """The copy holds as many rows in each table as the file (and no other table)."""
        tables = [str(t) for (t,) in self._con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = '_rewrite'").fetchall()]
        got = {t: int(scalar(self._con, f'SELECT count(*) FROM _rewrite."{t}"')) for t in tables}
        if got != counts:
            raise StoreError(f"store {self.path}: the rewritten copy holds {got} rows, the file {counts}; "
                             "the file is left as it was")

    def file_space_of(self, database: str) -> int:
        rows = self._con.execute("SELECT block_size * total_blocks FROM pragma_database_size() WHERE database_name = ?",
                                 [database]).fetchall()
        return int(rows[0][0])

