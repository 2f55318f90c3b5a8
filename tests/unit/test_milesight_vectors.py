"""Every Milesight vector in ../shared/vectors whose model we support, against `expected`.

The vectors are read in place (never copied into the repo); without the shared folder the
module is skipped, not failed.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pytest
from tests.shared_paths import SHARED_DIR

from greennanny.decoders.milesight import MODELS, MilesightDecoder

VECTORS_DIR = SHARED_DIR / "vectors"
if not (VECTORS_DIR / "milesight.json").is_file():
    pytest.skip(
        f"shared vectors not found at {VECTORS_DIR / 'milesight.json'}", allow_module_level=True
    )

ALL = json.loads((VECTORS_DIR / "milesight.json").read_text(encoding="utf-8"))["vectors"]
SUPPORTED = [v for v in ALL if v["device"] in MODELS]
REQUIRED = {"EM300-TH", "EM320-TH", "AM307", "AM308", "EM500-CO2"}



def assert_matches(expected: Any, actual: Any, tol: float, path: str = "$") -> None:
    """Subset comparison: every key in `expected` must be in `actual` with an equal value."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{path}: missing key {key!r} (have {sorted(actual)})"
            assert_matches(value, actual[key], tol, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{path}: {len(actual)} items, want {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_matches(e, a, tol, f"{path}[{i}]")
    elif isinstance(expected, (int, float)) and not isinstance(expected, bool):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), (
            f"{path}: expected a number {expected!r}, got {actual!r}"
        )
        assert math.isclose(actual, expected, rel_tol=0, abs_tol=tol), (
            f"{path}: {actual!r} != {expected!r} (tolerance {tol})"
        )
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def check_vector(vector: dict[str, Any]) -> None:
    payload = bytes.fromhex(vector["payload_hex"])
    tol = float(vector.get("tolerance") or 1e-6)
    decoder = MilesightDecoder()
    decoded = decoder.decode(payload, model=vector["device"])
    assert_matches(vector["expected"], decoded.object, tol)


@pytest.mark.parametrize("vector", SUPPORTED, ids=[f"{v['id']}-{v['device']}" for v in SUPPORTED])
def test_vector(vector: dict[str, Any]) -> None:
    check_vector(vector)


def test_required_models_supported_and_each_runs_a_vector() -> None:
    """Runs the required models' vectors itself, so it holds whatever order tests run in."""
    assert REQUIRED <= MODELS, f"missing: {sorted(REQUIRED - MODELS)}"
    ran: Counter[str] = Counter()
    for vector in SUPPORTED:
        if vector["device"] in REQUIRED:
            check_vector(vector)
            ran[vector["device"]] += 1
    assert all(ran[m] >= 1 for m in REQUIRED), f"vectors run per required model: {dict(ran)}"


# Models whose documented frames are field-fault cases (../shared/cases/field-faults.md), tested
# in tests/bugs rather than in the shared vectors.
FIELD_FAULT_MODELS = {"EM500-SWL"}  # BR-05


def test_models_are_spelled_as_in_the_vectors() -> None:
    """A model name that no vector (or field-fault case) uses is a typo waiting to reject a real device."""
    assert MODELS <= {v["device"] for v in ALL} | FIELD_FAULT_MODELS


def test_every_vector_model_is_supported() -> None:
    """No vector is skipped: every model the shared vectors name has a table."""
    assert {v["device"] for v in ALL} <= MODELS
