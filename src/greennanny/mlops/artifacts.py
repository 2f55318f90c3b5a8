"""Model artifacts: what a training run chose for each series, in one Parquet file per run.

Why Parquet and not pickle: loading a Parquet file runs no code, whoever wrote it, so a file that
was swapped on disk can at worst hold wrong numbers, and the sha256 recorded at save catches that
too. Why one file per run and not per series: a run of 10,000 series is one write and one fsync
instead of 10,000 (registering a run must take seconds, issue 6), and a run is what a refit
produces and what retention removes.

A file is written whole before the registry transaction that names it commits (temporary file,
fsync, rename, fsync of the directory): a crash leaves either no file and no rows, or a file no
row names yet, which the next save of that run id replaces.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from greennanny.errors import ArtifactRefused
from greennanny.forecast.refresh import Choice

SCHEMA = pa.schema([
    ("series_id", pa.int32()), ("version", pa.int32()), ("model", pa.string()), ("params", pa.string()),
    ("half80", pa.list_(pa.float64())), ("half95", pa.list_(pa.float64())),
    ("mae", pa.float64()), ("mase", pa.float64()), ("runner_up", pa.string()), ("runner_up_mase", pa.float64()),
])


@dataclass(frozen=True, slots=True)
class Saved:
    name: str  # file name under the artifact directory (what the registry records)
    sha256: str
    bytes: int


def artifact_name(run_id: int) -> str:
    return f"run-{run_id:08d}.parquet"


def encode(series_ids: Sequence[int], versions: Sequence[int], choices: Sequence[Choice]) -> bytes:
    """The Parquet bytes of one run's choices (row i: series_ids[i] at versions[i])."""
    table = pa.table({
        "series_id": pa.array(series_ids, pa.int32()), "version": pa.array(versions, pa.int32()),
        "model": [c.model for c in choices],
        "params": [None if c.params is None else json.dumps(c.params, sort_keys=True) for c in choices],
        "half80": [np.asarray(c.half80, np.float64).tolist() for c in choices],
        "half95": [np.asarray(c.half95, np.float64).tolist() for c in choices],
        "mae": [c.mae for c in choices], "mase": [c.mase for c in choices],
        "runner_up": [c.runner_up for c in choices], "runner_up_mase": [c.runner_up_mase for c in choices],
    }, schema=SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def save(directory: Path, run_id: int, data: bytes) -> Saved:
    """Write `data` as the run's artifact, durably, and return its name and sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    name = artifact_name(run_id)
    tmp = directory / f".{name}.tmp"
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / name)
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return Saved(name, hashlib.sha256(data).hexdigest(), len(data))


def load(directory: Path, name: str, sha256: str) -> dict[int, Choice]:
    """The choices in artifact `name`, by series id, if its bytes are the ones recorded.

    Raises `ArtifactRefused` naming the file and why (missing, unreadable, hash differs) and never
    parses a file whose hash differs."""
    path = directory / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactRefused(f"model artifact {path} is missing") from None
    except OSError as exc:
        raise ArtifactRefused(f"model artifact {path} cannot be read: {exc}") from exc
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise ArtifactRefused(f"model artifact {path} has sha256 {got[:12]}..., not the {sha256[:12]}... "
                              "recorded when it was saved (corrupted or replaced): not loaded")
    try:
        table = pq.read_table(pa.BufferReader(data))
        if not SCHEMA.equals(table.schema.remove_metadata()):
            raise ValueError(f"its columns are {table.schema.names}")
    except (pa.ArrowException, ValueError) as exc:
        raise ArtifactRefused(f"model artifact {path} is not a greennanny model artifact ({_what(data)}; {exc}): "
                              "not loaded") from None
    cols = table.to_pydict()
    out: dict[int, Choice] = {}
    for i, sid in enumerate(cols["series_id"]):
        params = cols["params"][i]
        out[int(sid)] = Choice(
            cols["model"][i], float(cols["mae"][i]), float(cols["mase"][i]), cols["runner_up"][i],
            float(cols["runner_up_mase"][i]), np.asarray(cols["half80"][i], np.float64),
            np.asarray(cols["half95"][i], np.float64), None if params is None else json.loads(params))
    return out


def _what(data: bytes) -> str:
    """What the bytes look like, for the refusal: a pickle names its protocol (BR-23)."""
    if data[:1] == b"\x80" and len(data) > 1:
        return f"a Python pickle, protocol {data[1]}, which greennanny never loads"
    if data[:4] == b"PAR1":
        return "a Parquet file of another layout"
    return f"{len(data)} bytes starting {data[:8]!r}"
