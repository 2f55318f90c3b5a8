"""A read through a thread's cursor must not leave its transaction open.

Found by the two-year store run (tests/integration/test_store_two_years.py): `next_run_id` (the
forecast service calls it before every run), `stats`, `count_points`, `forecast_count` and
`device` read their one row with `fetchone()`, which leaves DuckDB's result, and so the cursor's
auto-commit transaction, open until that cursor runs its next statement. Once another commit
updated a row meanwhile (a device re-registered, the ledger row of a replayed dead letter, the
compaction watermark), `maintain`'s CHECKPOINT failed with "Cannot CHECKPOINT: there are other
write transactions active" on every run until that thread read again (DuckDB 2.0.1).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greennanny.model import Batch, SeriesKey
from greennanny.store.base import DeviceRecord
from greennanny.store.cold import DAY_NS
from greennanny.store.duckdb import DuckDBStore, Retention

DAY0 = 1_735_689_600 * 10**9  # 2025-01-01T00:00Z
KEY = SeriesKey("gh", "house-1", "probe-1", "air_temperature")


def forecast_run(store: DuckDBStore, made: int) -> None:
    run_id = store.next_run_id()
    runs = pd.DataFrame({"run_id": [run_id], "series_id": np.array([1], np.int32), "made_ns": [made],
                         "start_ns": [made], "step_ns": [3600 * 10**9], "horizon": np.array([1], np.int32),
                         "model": ["seasonal_naive"], "backtest_mae": [0.1], "backtest_mase": [0.9],
                         "runner_up": ["ets"], "runner_up_mase": [1.0], "fallback_reason": [None]})
    points = pd.DataFrame({"run_id": [run_id], "series_id": np.array([1], np.int32), "ts": [made], "mean": [20.0],
                           "lo80": [19.0], "hi80": [21.0], "lo95": [18.0], "hi95": [22.0]})
    store.write_forecasts(runs, points)


READS: dict[str, Callable[[DuckDBStore, int], object]] = {
    "next_run_id": forecast_run,
    "stats": lambda store, _: store.stats(),
    "forecast_count": lambda store, _: store.forecast_count(),
    "count_points": lambda store, _: store.count_points(),
    "device": lambda store, _: store.device("24e124ffff000001"),
}


@pytest.mark.parametrize("read", sorted(READS))
def test_maintain_checkpoints_after_a_read_through_a_cursor_left_its_transaction_open(
        tmp_path: Path, read: str) -> None:
    store = DuckDBStore(tmp_path / "s.duckdb", retention=Retention())
    for day in range(4):
        ts = DAY0 + day * DAY_NS + np.arange(24, dtype=np.int64) * 3600 * 10**9
        store.write(Batch.from_columns([KEY], np.zeros(24, np.int32), ts, np.full(24, 21.5)))
        READS[read](store, int(ts[-1]))
        # a committed update while that reader is open (here a device's interval, re-registered)
        store.upsert_device(DeviceRecord("24e124ffff000001", "milesight", "EM500-CO2", "", "gh", "house-1",
                                         "probe-1", "config", 600 + day))
        store.maintain(DAY0 + (day + 1) * DAY_NS)  # raised TransactionException from day 1 on
    assert store.stats()["cold_days"] == 2
    store.close()
