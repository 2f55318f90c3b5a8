"""Forecast accuracy on real greenhouse data: greennanny's engine beside statsforecast, same windows.

Protocol (issue 5, "Done when" 1), applied to every series of every data set alike:

- Series: each value column of each compartment/zone, read from ../shared/data (never copied
  into the repository). The files hold local wall-clock times; they are localised in the data
  set's time zone (a wall-clock time seen twice in one series, the fall-back night, is summer
  time the first time and winter time the second; a time that does not exist is dropped and
  counted) and binned in UTC.
- Hourly means (`--resample`) of the finite readings in each bin, so every model can use a daily
  season of 24 steps.
- Origins: the last 14 local midnights of each series whose following 24 h end by the series'
  last reading (14 daily origins over its last 14 days). A midnight is where a calendar day
  starts in the time zone, so across a clock change two origins are 23 or 25 h apart.
- Training window: the 28 days before each origin; where fewer precede it (counted from the
  series' first reading), what there is if it is at least 14 days, else the origin is skipped.
  The shortest window used is printed.
- Gaps: one shared preparation step (`prepare_window`) turns each training window into a
  complete series before any model sees it: gaps up to 4 h are interpolated linearly
  (the data-quality module's `interpolate_gaps`), longer ones take the value one day earlier
  (else one day later), because the peers need a complete series; the node itself masks long
  gaps instead. Actual values are never filled: errors and coverage count observed hours.
- Horizon 24 h. MASE per window: the MAE over the observed hours of the horizon divided by the
  in-sample MAE of the one-day seasonal naive on the prepared training window; averaged over a
  series' windows, then over series. Coverage: share of observed hours inside the 80% interval,
  per series, then over series. Seconds: fit + predict of all windows of the data set.
- Models: greennanny's automatic choice (`forecast_panel` with the node's `[forecast]` defaults:
  candidates blend, lagreg, profile and ets chosen per series by a 3-origin backtest, conformal
  intervals), each greennanny model on its own through the same runner (a table of its own), and statsforecast's AutoETS, AutoTheta, MSTL (season 24) and
  SeasonalNaive (season 24) with `n_jobs=--jobs` (1 by default, like greennanny's single
  process), each timed after one untimed warm-up window.

Run:
    PYTHONPATH=src .venv/bin/python bench/forecast_accuracy.py [--json]
    ... --data FILE --time-col time --series-cols "T,RH" [--group-col zone] --tz Europe/Berlin
        [--resample 1h]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greennanny.config import ForecastConfig
from greennanny.forecast.panel import Exog, Panel
from greennanny.forecast.quality import QualityRules, interpolate_gaps, prepare_panel
from greennanny.forecast.runner import forecast_panel

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DAY_NS = 86_400 * 10**9
GAP_INTERPOLATE_NS = 4 * 3600 * 10**9
AUTO_ROW = "greennanny (auto)"
AUTO_MODELS = tuple(ForecastConfig().models)  # the node's defaults ([forecast] models, prefer_margin), frozen
AUTO_MARGIN = ForecastConfig().prefer_margin
GREENNANNY_MODELS = ("seasonal_naive", "ets", "profile", "lagreg", "combo", "blend", "last_value")
STATSFORECAST_MODELS = ("AutoETS", "AutoTheta", "MSTL", "SeasonalNaive")


@dataclass(frozen=True)
class DataSpec:
    """Where a data set's series are: one series per (group, value column)."""

    name: str
    path: Path
    time_col: str
    series_cols: tuple[str, ...]
    tz: str
    group_col: str | None = None
    weather: Path | None = None  # outside weather on the same wall clock, for the rows with inputs
    weather_cols: tuple[str, ...] = ()


DATASETS = (
    DataSpec(
        "AGC 2018",
        SHARED / "agc2018_cucumber_greenhouse_climate.csv.gz",
        "time_iso",
        ("Tair", "RHair", "CO2air"),
        "Europe/Amsterdam",
        "compartment",
        SHARED / "agc2018_cucumber_meteo.csv.gz",
        ("Tout", "Iglob"),
    ),
    DataSpec(
        "OSU 2024",
        SHARED / "osu2024_tomato_greenhouse_environment.csv.gz",
        "time_iso",
        ("T Air", "RH", "CO2"),
        "America/New_York",
        "zone",
    ),
    DataSpec(
        "AGC 2022 lettuce exp 1",
        SHARED / "agc2022_lettuce_exp1_greenhouse_climate.csv.gz",
        "time_iso",
        ("Tair", "Rhair", "CO2air"),
        "Europe/Amsterdam",
        "compartment",
        SHARED / "agc2022_lettuce_exp1_weather.csv.gz",
        ("Tout", "Iglob"),
    ),
)
WEATHER_ROLES = {"lagged": "weather observed up to the origin", "oracle": "observed weather of the forecast day (oracle)"}


# ---------------------------------------------------------------- protocol pieces (unit-tested)


def localize_wall_clock(wall: pd.Series, tz: str, series: pd.Series) -> np.ndarray:
    """UTC epoch ns (int64, NaT as int64 min) of local wall-clock times of the given series.

    An ambiguous time (the repeated hour when clocks go back) is summer time at its first
    occurrence within a series and winter time at its second; a nonexistent time becomes NaT.
    """
    wall = pd.to_datetime(wall)
    occurrence = pd.DataFrame({"s": series.to_numpy(), "t": wall.to_numpy()}).groupby(["s", "t"]).cumcount()
    first = occurrence.to_numpy() == 0
    local = pd.DatetimeIndex(wall).tz_localize(tz, ambiguous=first, nonexistent="NaT")
    return local.tz_convert("UTC").as_unit("ns").asi8


def local_midnights(first_ns: int, last_ns: int, tz: str) -> np.ndarray:
    """UTC epoch ns of every local midnight in [first_ns, last_ns] (start of each calendar day)."""
    lo = pd.Timestamp(first_ns, tz="UTC").tz_convert(tz).normalize().tz_localize(None)
    hi = pd.Timestamp(last_ns, tz="UTC").tz_convert(tz).tz_localize(None)
    days = pd.date_range(lo, hi, freq="D")
    local = days.tz_localize(tz, ambiguous=True, nonexistent="shift_forward")
    ns = local.tz_convert("UTC").as_unit("ns").asi8
    return ns[(ns >= first_ns) & (ns <= last_ns)]


def daily_origins(first_ns: int, end_ns: int, tz: str, count: int, horizon_ns: int) -> np.ndarray:
    """The last `count` local midnights m with m + horizon_ns <= end_ns (exclusive series end)."""
    mids = local_midnights(first_ns, end_ns - horizon_ns, tz)
    return mids[-count:]


def prepare_window(train: np.ndarray, season: int, max_gap_steps: int) -> np.ndarray:
    """The shared gap step: a complete copy of one training window, the same for every model.

    Gaps up to `max_gap_steps` are interpolated linearly (quality.interpolate_gaps); a longer gap
    takes the value one season earlier, else one season later; what is still missing (a window
    shorter than a season) is interpolated, the ends held flat. The season fill is the bench's
    own: the peers need a complete series, where the node masks a long gap.
    """
    x = np.array(train, dtype=np.float64)[None, :]
    interpolate_gaps(x, max_gap_steps)
    x = x[0]
    for t in np.flatnonzero(np.isnan(x)):  # ascending, so a day-long gap carries day by day
        if t >= season:
            x[t] = x[t - season]
    for t in np.flatnonzero(np.isnan(x))[::-1]:
        if t + season < x.size:
            x[t] = x[t + season]
    hole = np.isnan(x)
    if hole.any() and (~hole).any():
        x[hole] = np.interp(np.flatnonzero(hole), np.flatnonzero(~hole), x[~hole])
    return x


def naive_scale(train: np.ndarray, season: int) -> float:
    """In-sample MAE of the one-season naive: mean |y[t] - y[t - season]| over finite pairs."""
    d = np.abs(train[season:] - train[:-season])
    d = d[np.isfinite(d)]
    return float(d.mean()) if d.size else float("nan")


def window_mase(forecast: np.ndarray, actual: np.ndarray, scale: float) -> float:
    """MAE over the observed steps of the horizon / scale; NaN if nothing observed or scale 0."""
    seen = np.isfinite(actual)
    if not seen.any() or not scale > 0:
        return float("nan")
    return float(np.mean(np.abs(forecast[seen] - actual[seen])) / scale)


def coverage_counts(lo: np.ndarray, hi: np.ndarray, actual: np.ndarray) -> tuple[int, int]:
    """(observed steps inside [lo, hi], observed steps); bounds count as inside."""
    seen = np.isfinite(actual)
    inside = seen & (actual >= lo) & (actual <= hi)
    return int(inside.sum()), int(seen.sum())


def per_series_mean(values: np.ndarray, series: np.ndarray) -> float:
    """Mean over series of each series' mean over its windows (NaN windows left out)."""
    means = [np.nanmean(values[series == s]) for s in np.unique(series) if np.isfinite(values[series == s]).any()]
    return float(np.mean(means)) if means else float("nan")


def per_series_coverage(inside: np.ndarray, seen: np.ndarray, series: np.ndarray) -> float:
    """Mean over series of (steps inside / observed steps) pooled over each series' windows."""
    shares = [
        inside[series == s].sum() / seen[series == s].sum() for s in np.unique(series) if seen[series == s].sum() > 0
    ]
    return float(np.mean(shares)) if shares else float("nan")


# ---------------------------------------------------------------- data and windows


@dataclass
class Windows:
    """All (series, origin) evaluation windows of a data set; training rows right-aligned."""

    names: list[str]  # series names
    series: np.ndarray  # (W,) index into names
    origin_ns: np.ndarray  # (W,)
    train: np.ndarray  # (W, L) prepared, NaN-padded on the left where shorter than L
    train_len: np.ndarray  # (W,) steps
    actual: np.ndarray  # (W, h) observed means, NaN where the hour had no reading
    scale: np.ndarray  # (W,)
    step_ns: int
    season: int
    horizon: int
    skipped: list[str]
    filled_steps: int  # training cells the gap step filled, over all windows


def load_series(spec: DataSpec) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(names, series index, UTC ns, value) of every finite reading, long form."""
    cols = [spec.time_col, *spec.series_cols] + ([spec.group_col] if spec.group_col else [])
    df = pd.read_csv(spec.path, usecols=cols)
    group = df[spec.group_col].astype(str) if spec.group_col else pd.Series("", index=df.index)
    names: list[str] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for col in spec.series_cols:
        value = pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64)
        label = group + ("/" if spec.group_col else "") + col
        ts = localize_wall_clock(df[spec.time_col], spec.tz, label)
        keep = np.isfinite(value) & (ts != np.iinfo(np.int64).min)
        codes, uniques = pd.factorize(label[keep], sort=True)
        parts.append((codes + len(names), ts[keep], value[keep]))
        names += list(uniques)
    sid, ts, val = (np.concatenate(p) for p in zip(*parts))
    return names, sid, ts, val


def build_windows(
    spec: DataSpec, step_ns: int, *, n_origins: int, train_days: int, min_train_days: int, horizon_ns: int
) -> Windows:
    names, sid, ts, val = load_series(spec)
    anchor = int(local_midnights(int(ts.min()) - DAY_NS, int(ts.min()), spec.tz)[-1])
    length = -(-(int(ts.max()) + 1 - anchor) // step_ns)
    grid = prepare_panel(  # resampling only: gaps are the bench's shared step below, for every model alike
        sid,
        ts,
        val,
        step_ns=step_ns,
        end_ns=anchor + length * step_ns,
        length=length,
        rules=QualityRules(max_gap_steps=0, stuck_factor=1e9),
        series_ids=np.arange(len(names)),
    ).panel
    season, h = DAY_NS // step_ns, horizon_ns // step_ns
    if DAY_NS % step_ns or horizon_ns % step_ns:
        raise SystemExit(f"--resample must divide a day and the horizon, got {step_ns / 1e9:g} s")
    need, full = min_train_days * season, train_days * season
    rows: list[tuple[int, int, np.ndarray, np.ndarray]] = []
    skipped: list[str] = []
    for s, name in enumerate(names):
        seen = np.flatnonzero(np.isfinite(grid.values[s]))
        if seen.size == 0:
            skipped.append(f"{name}: no readings")
            continue
        first_ns = grid.start_ns + int(seen[0]) * step_ns
        end_ns = grid.start_ns + (int(seen[-1]) + 1) * step_ns
        for o in daily_origins(first_ns, end_ns, spec.tz, n_origins, horizon_ns):
            col, rem = divmod(int(o) - grid.start_ns, step_ns)
            if rem:
                raise SystemExit(f"{spec.tz} midnight {pd.Timestamp(o, tz='UTC')} is not on the {step_ns} ns grid")
            avail = col - int(seen[0])
            if avail < need:
                skipped.append(
                    f"{name} @ {pd.Timestamp(o, tz='UTC').tz_convert(spec.tz):%Y-%m-%d}: "
                    f"{avail / season:.1f} days of history < {min_train_days}"
                )
                continue
            start = col - min(full, avail)
            rows.append((s, int(o), grid.values[s, start:col], grid.values[s, col : col + h]))
    if not rows:
        raise SystemExit(f"{spec.name}: no origin has {min_train_days} days of history")
    width = max(r[2].size for r in rows)
    train = np.full((len(rows), width), np.nan)
    filled = 0
    max_gap = max(1, GAP_INTERPOLATE_NS // step_ns)
    for i, (_, _, raw, _) in enumerate(rows):
        train[i, width - raw.size :] = prepare_window(raw, season, max_gap)
        filled += int(np.isnan(raw).sum())
    lens = np.array([r[2].size for r in rows])
    scale = np.array([naive_scale(train[i, width - lens[i] :], season) for i in range(len(rows))])
    return Windows(
        names,
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        train,
        lens,
        np.stack([r[3] for r in rows]),
        scale,
        step_ns,
        season,
        h,
        skipped,
        filled,
    )


# ---------------------------------------------------------------- models


@dataclass
class Row:
    """One model's forecasts of every window, and what it cost."""

    model: str
    mean: np.ndarray  # (W, h)
    lo80: np.ndarray
    hi80: np.ndarray
    seconds: float
    chosen: dict[str, int] | None = None


def weather_inputs(spec: DataSpec, w: Windows, role: str) -> dict[str, Exog]:
    """The data set's outside weather as inputs of the windows' panel (hourly means on each
    window's own columns). `lagged`: the training columns only, so each origin sees the weather
    up to itself; `oracle`: also the observed weather of the forecast day, standing in for a
    perfect weather forecast (labelled, never the automatic choice)."""
    assert spec.weather is not None
    df = pd.read_csv(spec.weather)
    df.columns = [c.strip() for c in df.columns]
    ts = localize_wall_clock(df[spec.time_col], spec.tz, pd.Series("weather", index=df.index))
    keep = ts != np.iinfo(np.int64).min
    bins = ts[keep] // w.step_ns
    width = w.train.shape[1]
    extra = w.horizon if role == "oracle" else 0
    cols = (w.origin_ns // w.step_ns)[:, None] + np.arange(-width, extra)[None, :]  # (W, width + extra) bins
    out = {}
    for c in spec.weather_cols:
        v = pd.to_numeric(df.loc[keep, c], errors="coerce")
        hourly = pd.Series(v.to_numpy(), index=bins).groupby(level=0).mean()
        out[f"{c} (outside)"] = Exog(hourly.reindex(cols.ravel()).to_numpy().reshape(cols.shape), role)
    return out


def run_greennanny(w: Windows, models: Sequence[str], label: str, prefer_margin: float = 0.0,
                   exog: dict[str, Exog] | None = None) -> Row:
    """forecast_panel over every window at once (one panel, rows right-aligned at their origins)."""
    panel = Panel(np.arange(len(w.series)), 0, w.step_ns, w.train, exog)
    oracle = bool(panel.oracle_inputs)
    t0 = time.perf_counter()
    res = forecast_panel(panel, horizon=w.horizon, season=w.season, models=tuple(models), now_ns=0,
                         prefer_margin=prefer_margin, oracle=oracle)
    secs = time.perf_counter() - t0
    if res.series_ids.size != len(w.series):
        raise RuntimeError(f"{label}: {len(res.skipped)} windows skipped: {res.skipped}")
    return Row(label, res.mean, res.lo80, res.hi80, secs, dict(Counter(res.model)))


def statsforecast_models(season: int) -> dict[str, Callable[[], Any]] | None:
    try:
        from statsforecast.models import MSTL, AutoETS, AutoTheta, SeasonalNaive
    except ImportError:
        return None
    return {
        "AutoETS": lambda: AutoETS(season_length=season),
        "AutoTheta": lambda: AutoTheta(season_length=season),
        "MSTL": lambda: MSTL(season_length=season),
        "SeasonalNaive": lambda: SeasonalNaive(season_length=season),
    }


def long_frame(w: Windows, rows: np.ndarray | None = None) -> pd.DataFrame:
    """statsforecast's input: one unique_id per window, integer ds 0..len-1 (a regular grid)."""
    idx = np.arange(len(w.series)) if rows is None else rows
    width = w.train.shape[1]
    parts = [
        pd.DataFrame({"unique_id": i, "ds": np.arange(w.train_len[i]), "y": w.train[i, width - w.train_len[i] :]})
        for i in idx
    ]
    return pd.concat(parts, ignore_index=True)


def run_statsforecast(w: Windows, name: str, make: Callable[[], Any], jobs: int) -> Row:
    from statsforecast import StatsForecast

    df = long_frame(w)
    warm = df[df["unique_id"] == 0]
    StatsForecast(models=[make()], freq=1, n_jobs=1).forecast(df=warm, h=w.horizon, level=[80])
    t0 = time.perf_counter()
    fc = StatsForecast(models=[make()], freq=1, n_jobs=jobs).forecast(df=df, h=w.horizon, level=[80])
    secs = time.perf_counter() - t0
    fc = fc.sort_values(["unique_id", "ds"])
    col = fc.columns[2]  # the model's alias
    shape = (len(w.series), w.horizon)
    grab = [fc[c].to_numpy(np.float64).reshape(shape) for c in (col, f"{col}-lo-80", f"{col}-hi-80")]
    return Row(f"statsforecast {name}", *grab, seconds=secs)


def score(w: Windows, row: Row) -> dict[str, Any]:
    mase = np.array([window_mase(row.mean[i], w.actual[i], w.scale[i]) for i in range(len(w.series))])
    counts = np.array([coverage_counts(row.lo80[i], row.hi80[i], w.actual[i]) for i in range(len(w.series))])
    out = {
        "mase": per_series_mean(mase, w.series),
        "coverage80": per_series_coverage(counts[:, 0], counts[:, 1], w.series),
        "seconds": row.seconds,
    }
    if row.chosen is not None:
        out["chosen"] = row.chosen
    return out


# ---------------------------------------------------------------- report


def evaluate(spec: DataSpec, args: argparse.Namespace) -> dict[str, Any]:
    step_ns = int(pd.Timedelta(args.resample).value)
    w = build_windows(
        spec,
        step_ns,
        n_origins=args.origins,
        train_days=args.train_days,
        min_train_days=args.min_train_days,
        horizon_ns=args.horizon_h * 3600 * 10**9,
    )
    rows = [run_greennanny(w, AUTO_MODELS, AUTO_ROW, AUTO_MARGIN)]
    sf = statsforecast_models(w.season)
    if sf is None:
        print("statsforecast is not installed (pip install -e '.[bench]'): its rows are left out", file=sys.stderr)
    else:
        rows += [run_statsforecast(w, name, sf[name], args.jobs) for name in STATSFORECAST_MODELS]
    results = {r.model: score(w, r) for r in rows}
    alone = {r.model: score(w, r) for r in (run_greennanny(w, (m,), f"greennanny {m}") for m in GREENNANNY_MODELS)}
    inputs: dict[str, dict[str, Any]] = {}
    if spec.weather is not None and spec.weather.exists():
        for role, what in WEATHER_ROLES.items():
            ex = weather_inputs(spec, w, role)
            names = ", ".join(ex)
            tag = "oracle" if role == "oracle" else "inputs"
            for label, models, margin in ((f"greennanny (auto) + {names}, {what}", AUTO_MODELS, AUTO_MARGIN),
                                          (f"greennanny lagreg + {names}, {what}", ("lagreg",), 0.0)):
                inputs[label] = score(w, run_greennanny(w, models, label, margin, ex)) | {"kind": tag}
    days = w.train_len / w.season
    origins = pd.to_datetime(w.origin_ns, utc=True).tz_convert(spec.tz)
    dead = int(np.sum(~(w.scale > 0)))
    info = {
        "series": len(w.names),
        "windows": len(w.series),
        "season": int(w.season),
        "horizon": int(w.horizon),
        "train_days_min": float(days.min()),
        "train_days_max": float(days.max()),
        "windows_short": int(np.sum(days < args.train_days)),
        "origins_first": f"{origins.min():%Y-%m-%d %H:%M %Z}",
        "origins_last": f"{origins.max():%Y-%m-%d %H:%M %Z}",
        "gap_cells_filled": w.filled_steps,
        "windows_zero_scale": dead,
        "skipped": w.skipped,
    }
    print_table(spec, info, results, alone, inputs)
    return {"info": info, "models": results, "greennanny_models_alone": alone, "with_inputs": inputs,
            "auto_choice": results[AUTO_ROW]["chosen"]}


def print_table(spec: DataSpec, info: dict[str, Any], results: dict[str, dict[str, Any]],
                alone: dict[str, dict[str, Any]], inputs: dict[str, dict[str, Any]]) -> None:
    print(f"\n### {spec.name}: {spec.path.name} ({', '.join(spec.series_cols)}; {spec.tz})")
    print(
        f"{info['series']} series, {info['windows']} windows; origins {info['origins_first']} .. "
        f"{info['origins_last']} (local midnights); training {info['train_days_min']:g}-{info['train_days_max']:g} "
        f"days ({info['windows_short']} windows shorter than 28); season {info['season']}, horizon {info['horizon']}"
    )
    print(
        f"gap step (bench prepare_window, shared by every model): {info['gap_cells_filled']} training "
        f"cells filled; {info['windows_zero_scale']} windows with zero MASE scale left out"
    )
    for s in info["skipped"]:
        print(f"  skipped: {s}")
    chosen = results[AUTO_ROW]["chosen"]
    print(f"greennanny's automatic choice per window: {', '.join(f'{k} {v}' for k, v in sorted(chosen.items()))}\n")
    def table(rows: dict[str, dict[str, Any]]) -> None:
        print("| model | mean MASE | 80% coverage | fit+predict s |")
        print("| --- | --- | --- | --- |")
        for name, r in rows.items():
            print(f"| {name} | {r['mase']:.3f} | {r['coverage80']:.3f} | {r['seconds']:.2f} |")

    table(results)
    print("\nEach of greennanny's models alone, through the same runner (the candidates the automatic choice"
          " picks from, and their members):\n")
    table(alone)
    if inputs:
        print("\nWith the outside weather as an input (the automatic rows above use none; an oracle row saw the"
              " observed weather of the day it forecasts and can never be a node's choice):\n")
        table(inputs)


def machine() -> dict[str, str]:
    cpu = platform.processor()
    try:
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    try:
        import statsforecast

        sf = statsforecast.__version__
    except ImportError:
        sf = "not installed"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "statsforecast": sf,
        "load_avg_1m": f"{os.getloadavg()[0]:.2f}",
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--data", type=Path, help="any other CSV export instead of the three shared data sets")
    ap.add_argument("--time-col", default="time_iso", help="local wall-clock time column of --data")
    ap.add_argument("--series-cols", default="", help="comma-separated value columns of --data")
    ap.add_argument("--group-col", default=None, help="column naming the unit (zone, compartment) of each row")
    ap.add_argument("--tz", default="UTC", help="IANA time zone of --data's wall clock")
    ap.add_argument("--resample", default="1h", help="bin width of the means (1h: season 24)")
    ap.add_argument("--origins", type=int, default=14, help="daily origins per series")
    ap.add_argument("--train-days", type=int, default=28, help="training window before each origin")
    ap.add_argument("--min-train-days", type=int, default=14, help="shortest training window allowed")
    ap.add_argument("--horizon-h", type=int, default=24, help="forecast horizon in hours")
    ap.add_argument("--jobs", type=int, default=1, help="statsforecast n_jobs (1 or 2 on this machine)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    if args.data:
        cols = tuple(c for c in args.series_cols.split(",") if c)
        if not cols:
            ap.error("--data needs --series-cols")
        specs: Sequence[DataSpec] = [DataSpec(args.data.name, args.data, args.time_col, cols, args.tz, args.group_col)]
    else:
        specs = DATASETS
    t0 = time.perf_counter()
    env = machine()
    print(
        f"forecast accuracy, {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC; "
        + ", ".join(f"{k} {v}" for k, v in env.items())
    )
    out = {spec.name: evaluate(spec, args) for spec in specs}
    wall = time.perf_counter() - t0
    print(f"\nwall time {wall:.1f} s")
    if args.json:
        print(
            json.dumps(
                {
                    "machine": env,
                    "protocol": {
                        k: getattr(args, k)
                        for k in ("resample", "origins", "train_days", "min_train_days", "horizon_h", "jobs")
                    },
                    "datasets": out,
                    "wall_s": round(wall, 1),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
