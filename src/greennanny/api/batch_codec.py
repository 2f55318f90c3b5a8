"""Batch <-> Arrow table: how columnar batches cross a process boundary (CLI -> node API)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from greennanny.errors import InputError
from greennanny.model import QUANTITIES, Batch, SeriesKey

COLUMNS = ("site", "zone", "device", "quantity", "ts_ns", "value", "quality")


def batch_to_arrow(batch: Batch) -> pa.Table:
    keys = batch.keys
    idx = pa.array(batch.key_index, pa.int32())
    cols = {}
    for i, name in enumerate(("site", "zone", "device", "quantity")):
        dictionary = pa.array([getattr(k, name) for k in keys], pa.string())
        cols[name] = pa.DictionaryArray.from_arrays(idx, dictionary)
    cols["ts_ns"] = pa.array(batch.ts_ns, pa.int64())
    cols["value"] = pa.array(batch.value, pa.float64())
    cols["quality"] = pa.array(batch.quality, pa.uint8())
    return pa.table(cols)


def batch_to_ipc(batch: Batch) -> bytes:
    table = batch_to_arrow(batch)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def batch_from_arrow(table: pa.Table) -> Batch:
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(f"batch lacks columns {missing}", reason="invalid_batch")
    parts = [table.column(n).combine_chunks() for n in ("site", "zone", "device", "quantity")]
    as_str = [p.cast(pa.string()) if pa.types.is_dictionary(p.type) else p for p in parts]
    combined = [np.asarray(a.to_pylist(), dtype=object) for a in as_str]
    tuples = list(zip(*combined))
    keys: dict[tuple, int] = {}
    idx = np.fromiter((keys.setdefault(t, len(keys)) for t in tuples), np.int32, len(tuples))
    key_list = []
    for t in keys:
        if t[3] not in QUANTITIES:
            raise InputError(f"quantity={t[3]!r} is not a canonical quantity", reason="invalid_batch")
        key_list.append(SeriesKey(*t))
    return Batch.from_columns(key_list, idx, table.column("ts_ns").to_numpy(), table.column("value").to_numpy(),
                              table.column("quality").to_numpy())
