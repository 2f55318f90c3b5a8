"""Field faults of ../shared/cases/field-faults.md about crop-climate formulas (BR-27)."""

from __future__ import annotations

import numpy as np
import pytest

from greennanny.processors.climate import dew_point


def test_BR_27_dew_point_takes_rh_as_a_fraction_is_never_above_t_and_equals_t_at_100_percent() -> None:
    t = np.array([85.41, 25.0, 17.9])
    rh = np.array([9.86, 60.0, 100.0])
    got = dew_point(t, rh)
    assert got == pytest.approx([35.85, 16.69, 17.90], abs=0.05)
    assert (got <= t).all() and abs(got[0] - 155.34) > 100  # the percent-in-ln() value of the report
