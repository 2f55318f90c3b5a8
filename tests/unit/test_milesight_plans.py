"""A compiled frame plan decodes exactly as the general walk does, or steps aside.

The plan is a cache of the walk's own result shape (see `milesight._planned`), so the property
is strict equality of object, readings and unmapped keys on every frame, for every model.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.shared_paths import SHARED_DIR
from tests.unit.test_milesight_malformed import well_formed_frames

from greennanny.decoders import milesight
from greennanny.decoders.milesight import TABLES, MilesightDecoder
from greennanny.errors import DecodeError

DECODER = MilesightDecoder()
VECTORS = SHARED_DIR / "vectors" / "milesight.json"


def both_ways(payload: bytes, model: str) -> tuple[Any, Any]:
    """(planned result or None, general result), each a comparable tuple or the error text."""
    try:
        walked: Any = DECODER._walk_frame(milesight._table_of(model), payload, model)
        walked = (walked.object, walked.readings, walked.unmapped)
    except DecodeError as exc:
        walked = str(exc)
    planned = milesight._planned(milesight._BY_UPPER[model.upper()], milesight._table_of(model), payload)
    return (None if planned is None else (planned.object, planned.readings, planned.unmapped)), walked


def _same(planned: Any, walked: Any) -> None:
    if planned is None:
        return
    assert planned == walked, "a plan must give exactly what the general decoder gives"


@pytest.mark.parametrize("model", sorted(TABLES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_plan_equals_walk_on_well_formed_frames(model: str, data: Any) -> None:
    payload = data.draw(well_formed_frames(model))
    for _ in range(2):  # the first call compiles, the second reads through the cached plan
        _same(*both_ways(payload, model))


def test_plan_equals_walk_on_every_shared_vector() -> None:
    if not VECTORS.exists():
        pytest.skip(f"shared vectors not found at {VECTORS}")
    vectors = json.loads(VECTORS.read_text())
    cases = vectors["vectors"] if isinstance(vectors, dict) and "vectors" in vectors else vectors
    planned_count = 0
    for v in cases:
        model = v.get("device")
        hexdata = v.get("payload_hex") or v.get("hex") or v.get("payload")
        if not model or not isinstance(hexdata, str) or model.upper() not in milesight._BY_UPPER:
            continue
        try:
            payload = bytes.fromhex(hexdata)
        except ValueError:
            continue
        for _ in range(2):
            planned, walked = both_ways(payload, model)
            _same(planned, walked)
        planned_count += planned is not None
    assert planned_count >= 10, "the plain frames in the vectors should take the planned path"


def test_common_em300_frame_takes_one_cached_plan() -> None:
    milesight._PLANS.clear()  # other tests' frames must not count as this frame's shapes
    milesight._UNPLANNED.clear()
    ok = bytes.fromhex("0175640367090104686d")  # battery 100, 26.5 degC, 54.5 %RH
    assert both_ways(ok, "EM300-TH")[0] is not None
    decoded = DECODER.decode(ok, model="EM300-TH")
    assert [(r.quantity, r.value) for r in decoded.readings] == [
        ("battery", 100), ("air_temperature", 26.5), ("relative_humidity", 54.5)]
    shapes = milesight._PLANS[("EM300-TH", len(ok), 0x01, 0x75)]
    assert len(shapes) == 1


def test_a_probe_error_code_leaves_the_plan_for_the_general_decoder() -> None:
    """EM500-SMTC temperature 0xFFFF means "collection failed": the plan steps aside and the
    general decoder reports a missing reading with that reason, the same with a warm cache."""
    good = bytes.fromhex("0175640367090104686d")[:7]  # battery 100, 26.5 degC
    failed = bytes.fromhex("01756403" + "67ffff")
    DECODER.decode(good, model="EM500-SMTC")  # compiles the shape's plan
    assert both_ways(failed, "EM500-SMTC")[0] is None
    decoded = DECODER.decode(failed, model="EM500-SMTC")
    (temp,) = [r for r in decoded.readings if r.quantity == "soil_temperature" or r.quantity == "air_temperature"]
    assert temp.quality.name == "MISSING" and "collection failed" in (temp.reason or "")
