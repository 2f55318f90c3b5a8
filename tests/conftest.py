"""Fixtures shared by every test tier: a private broker and the shared data folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from greennanny.runtime.broker import Mosquitto, MosquittoConfig

# The folder `shared` beside the repository: test vectors, cases and data sets used by several
# repositories, so they are not copied into this one.
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh broker on a free loopback port with its state in this test's tmp_path.

    Function scope, so no test sees another's retained messages or persistent sessions.
    """
    broker = Mosquitto(MosquittoConfig(data_dir=tmp_path / "mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def shared_dir() -> Path:
    """The shared folder; skips the test where it is absent (e.g. a bare clone of this repo)."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared folder not found at {SHARED_DIR}")
    return SHARED_DIR
