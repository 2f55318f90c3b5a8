"""Compaction's Parquet files, encoded on a thread while compaction goes on (design 003).

Why: encoding is most of what compaction does once its rollups come out of numpy
(store/rollup_build.py): for a day of 1,000 series at 5 min, ~30 ms for the 1-min day file and
~14 ms for the raw day file, against ~45 ms of DuckDB and numpy work on the compacting thread
(reading the days, the rollups, the 1-h rows, the deletes). pyarrow releases the GIL while it
encodes and writes, so on two cores the files cost little beyond that work.

The discipline of the files is unchanged: each is written whole (temporary file, fsync, rename)
before the transaction that depends on it commits, because the caller `settle`s every write
before it returns into the commit. What a file's readers see (the store's lists of day and
month files) changes only on the compacting thread, in `settle`, once the file is in place.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_WRITER = ThreadPoolExecutor(1, thread_name_prefix="store-file-write")
_IN_FLIGHT = 2  # files queued at most (each holds a day's table in memory)


class WritesBehind:
    """File writes queued on the writer thread, each with what to do on the compacting thread
    once it is written (`then`)."""

    def __init__(self) -> None:
        self._pending: list[tuple[Future[Any], Callable[[], None] | None]] = []

    def submit(self, write: Callable[..., Any], *args: Any, then: Callable[[], None] | None = None) -> None:
        while len(self._pending) >= _IN_FLIGHT:
            self._finish(self._pending.pop(0))
        self._pending.append((_WRITER.submit(write, *args), then))

    def settle(self) -> None:
        """Wait for every queued write and run its `then`, in order; the first failure is
        raised once all have ended (none is left writing into a rolled-back compaction)."""
        pending, self._pending = self._pending, []
        failed: BaseException | None = None
        for item in pending:
            try:
                if failed is None:
                    self._finish(item)
                else:
                    item[0].exception()  # wait for it all the same
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the rest
                failed = exc
        if failed is not None:
            raise failed

    @staticmethod
    def _finish(item: tuple[Future[Any], Callable[[], None] | None]) -> None:
        fut, then = item
        fut.result()
        if then is not None:
            then()
