"""What the DuckDB store does when the disk fills up or DuckDB gives up its connection (part of
`DuckDBStore`; the behaviour is described in `store.duckdb` and docs/operations.md).
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from greennanny.errors import DiskFull, StoreError, StoreUnavailable
from greennanny.store.duckdb_sql import first_line

log = logging.getLogger("greennanny.store")


class Failures:
    """Full disk and invalidated connection handling (a mixin of `DuckDBStore`)."""

    _con: duckdb.DuckDBPyConnection
    _invalid: bool
    path: Path

    if TYPE_CHECKING:
        def _open(self) -> None: ...  # DuckDBStore's

    def free_bytes(self) -> int:
        """Bytes free (to this user) on the filesystem that holds the store file."""
        st = os.statvfs(self.path.parent)
        return int(st.f_bavail * st.f_frsize)

    def _failure(self, exc: BaseException, doing: str) -> StoreUnavailable | None:
        """Our error for a DuckDB or file error met while `doing`, or None when it is neither a
        full disk nor an I/O failure (a bug: the caller re-raises it as it is).

        DuckDB words ENOSPC as 'Could not write file ...: No space left on device', sometimes only
        in the context of a later error ('Current transaction is aborted'), so the whole chain is read.
        """
        chain: list[BaseException] = []
        e: BaseException | None = exc
        while e is not None and e not in chain:
            chain.append(e)
            e = e.__cause__ or e.__context__
        text = " | ".join(str(c) for c in chain).lower()
        if any(isinstance(c, duckdb.FatalException) for c in chain) or "has been invalidated" in text:
            self._invalid = True
        if "no space left on device" in text or any(getattr(c, "errno", None) == errno.ENOSPC for c in chain):
            free = self.free_bytes()
            detail = next((first_line(c) for c in chain if "no space left" in str(c).lower()), first_line(exc))
            return DiskFull(f"store {self.path}: no space left on device while {doing} ({free:,} bytes free "
                            f"on {self.path.parent}); the change was rolled back, nothing committed is damaged, "
                            f"and writes resume once space is freed ({detail})", path=str(self.path), free_bytes=free)
        if self._invalid or any(isinstance(c, (duckdb.IOException, OSError)) for c in chain):
            return StoreUnavailable(f"store {self.path}: {doing} failed: {first_line(exc)}")
        return None

    def _ensure_open(self) -> None:
        """Open the file again if DuckDB invalidated the connection (a CHECKPOINT that failed, on
        a full disk for one): every committed transaction is in the file or its WAL and comes back."""
        if not self._invalid:
            return
        try:
            self._con.close()
        except duckdb.Error:
            pass  # an invalidated connection may refuse even this
        self._open()
        log.warning("store %s opened again after DuckDB invalidated its connection", self.path)

    def _reopen_quietly(self) -> None:
        try:
            self._ensure_open()
        except StoreError as exc:  # still impossible (the disk may still be full); the next call tries again
            log.warning("store %s could not be opened again yet: %s", self.path, exc)

    def _checkpoint(self) -> None:
        try:
            self._con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            err = self._failure(exc, "checkpointing")
            self._reopen_quietly()
            if err is None:
                raise
            raise err from exc
