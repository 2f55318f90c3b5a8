"""Small DuckDB helpers shared by the store's modules."""

from __future__ import annotations

from typing import Any

import duckdb


def scalar(con: duckdb.DuckDBPyConnection, sql: str, args: list[Any] | None = None) -> Any:
    """The single value of an aggregate query (which always returns one row).

    `fetchall`, not `fetchone`: a result read only in part keeps its cursor's transaction open,
    and an open reader makes `maintain`'s CHECKPOINT fail (tests/unit/test_store_reader_cursors.py).
    """
    rows = con.execute(sql, args or []).fetchall()
    assert len(rows) == 1, sql
    return rows[0][0]


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
