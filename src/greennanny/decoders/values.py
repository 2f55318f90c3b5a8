"""Turning a value as sent into a float with a quality and a reason.

Devices send numbers as JSON numbers, as strings ("21.5"), as words (`nan`, `unavailable`) and
as vendor sentinels (327.67 = 0x7FFF/100 from a probe that is not connected). A value that cannot
be a number is never silently dropped: it becomes a missing value whose reason names the key and
the value sent.
"""

from __future__ import annotations

import math
from typing import Any

from greennanny.model import QUANTITIES, Quality, check_physical_range

MISSING_WORDS = frozenset(
    {"nan", "null", "none", "unknown", "unavailable", "n/a", "na", "-", "", "inf", "-inf"}
)

# Values that devices send to mean "no reading". Matched exactly (after scaling to the unit).
SENTINELS: dict[str, tuple[float, ...]] = {
    "air_temperature": (327.67, -327.68, 3276.7, -3276.8),
    "soil_temperature": (327.67, -327.68, 3276.7, -3276.8),
    "leaf_temperature": (327.67, -327.68),
    "*": (-214748000.0, -2147483648.0, 2147483647.0, 65535.0 * 1000),
}
_SENTINEL_FLOOR = min(abs(s) for group in SENTINELS.values() for s in group) - 1e-6


def coerce_value(key: str, raw: Any, quantity: str, scale: float = 1.0) -> tuple[float, Quality, str | None]:
    """(value, quality, reason) for `raw` sent under `key`, mapped to `quantity` times `scale`."""
    if isinstance(raw, bool):
        value = 1.0 if raw else 0.0
    elif isinstance(raw, (int, float)):
        value = float(raw)
    elif isinstance(raw, str):
        text = raw.strip()
        if text.lower() in MISSING_WORDS:
            return math.nan, Quality.MISSING, f"{key}={raw!r} means no value"
        try:
            value = float(text)
        except ValueError:
            return math.nan, Quality.MISSING, f"{key}={raw!r} is not a number"
    elif raw is None:
        return math.nan, Quality.MISSING, f"{key}=null means no value"
    else:
        return math.nan, Quality.MISSING, f"{key}={raw!r} is not a number ({type(raw).__name__})"
    if not math.isfinite(value):
        return math.nan, Quality.MISSING, f"{key}={raw!r} is not a finite number"
    value *= scale
    if abs(value) >= _SENTINEL_FLOOR:  # every sentinel is large: most readings skip the loop
        for s in SENTINELS.get(quantity, ()) + SENTINELS["*"]:
            if abs(value - s) <= 1e-9:
                return math.nan, Quality.MISSING, f"{key}={raw!r} is the sentinel for no reading"
    quality, reason = check_physical_range(QUANTITIES[quantity], value)
    if reason:
        reason = f"{key}: {reason}"
    return value, quality, reason
