"""The node's exogenous inputs: for each forecast series, the stored series that provides each
configured `[[forecast.inputs]]`, laid onto the forecast panel's grid.

Why per series: one weather station serves every zone of its site (`zone = "outside"`), while a
lighting plan or a zone's own vent position serves only that zone (`zone = ""`, the series' own).
A series whose site has no provider gets a missing input (NaN row), which the lagreg model reads
as "no departure": its forecast is what it would be without the input, never made from another
site's weather.

What each role may see (forecast/panel.py `Exog`): a `lagged` input is read up to the panel's
end only, so nothing after the forecast origin reaches a model; a `known` input (a plan or a
weather forecast stored with future timestamps) is read for the horizon too. There is no oracle
role here: future observations are for benchmarks only (config refuses the role).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from greennanny.config import ForecastInputConfig
from greennanny.forecast.panel import Exog
from greennanny.forecast.quality import QualityRules, prepare_panel
from greennanny.store.base import SeriesInfo
from greennanny.store.duckdb import DuckDBStore


def providers(store: DuckDBStore, spec: ForecastInputConfig, series: Sequence[SeriesInfo | None]) -> list[int | None]:
    """Per forecast series: the id of the series that provides `spec` (the lowest id of the
    quantity in the same site and the input's zone, or the series' own zone), or None."""
    by_place: dict[tuple[str, str], int] = {}
    for info in store.series(quantity=spec.quantity):
        place = (info.key.site, info.key.zone)
        by_place[place] = min(by_place.get(place, info.id), info.id)
    out: list[int | None] = []
    for s in series:
        if s is None:  # gone from the store since the run began
            out.append(None)
            continue
        wanted = not spec.for_quantities or s.key.quantity in spec.for_quantities
        pid = by_place.get((s.key.site, spec.zone or s.key.zone)) if wanted else None
        out.append(pid if pid != s.id else None)  # a series is never its own input
    return out


def input_arrays(
    store: DuckDBStore,
    specs: Sequence[ForecastInputConfig],
    series: Sequence[SeriesInfo | None],
    *,
    step_ns: int,
    end_ns: int,
    length: int,
    horizon: int,
    rules: QualityRules,
    now_ns: int,
) -> dict[str, Exog] | None:
    """`Exog` inputs for a panel of `series` ending at `end_ns` (None when none is configured).

    A lagged input is read up to `now_ns` (inclusive) even where the panel's last bin runs on to
    `end_ns`: a run as of an earlier time must not see the readings after it."""
    if not specs:
        return None
    out: dict[str, Exog] = {}
    for spec in specs:
        rows = providers(store, spec, series)
        ahead = horizon if spec.role == "known" else 0
        values = np.full((len(series), length + ahead), np.nan)
        ids = sorted({p for p in rows if p is not None})
        if ids:
            stop = end_ns + ahead * step_ns
            read_to = stop if spec.role == "known" else min(stop, now_ns + 1)
            sid, ts, val = store.query_long(ids, end_ns - length * step_ns, read_to)
            grid = prepare_panel(sid, ts, val, step_ns=step_ns, end_ns=stop, length=length + ahead, rules=rules,
                                 series_ids=np.asarray(ids, dtype=np.int64)).panel
            pos = {int(i): k for k, i in enumerate(grid.series_ids.tolist())}
            for r, p in enumerate(rows):
                if p is not None:
                    values[r] = grid.values[pos[p]]
        out[spec.name] = Exog(values, spec.role)
    return out
