"""Forecast speed for thousands of series: greennanny's automatic choice beside statsforecast.

Issue 5 point 3. Data: the AGC 2018 climate series (Tair, RHair, CO2air x six compartments, from
../shared/data) made complete once (gaps up to 4 h interpolated, longer ones from the day
before), then repeated across `--series` series by shifting whole days, with small noise (0.5 %
of each base series' standard deviation), so every series is realistic and none is a copy.
Two shapes: 28 days hourly (season 24), and 7 days at 5 minutes (season 288 for greennanny;
statsforecast with season 1 at 5 minutes, as the issue states: a 288-step season is what its
MSTL and AutoETS cannot fit in reasonable time). Each series has one more day held out, so the
run also scores MASE (scaled by the in-sample one-day seasonal naive) against the seasonal naive.

greennanny runs exactly the node's forecasting configuration (`[forecast]` defaults: candidate
models, the selection backtest, the margin, chunks of `chunk_series`), the configuration of the
accuracy table (bench/forecast_accuracy.py). statsforecast runs with `--jobs` (2) on a random
sample of `--sample` series (at least 500) and is scaled to the full count, said so in the output.
Every engine runs in a child process of its own, so peak memory (max RSS) is each one's.

Run: .venv/bin/python bench/forecast_speed.py [--series 10000] [--sample 500] [--jobs 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
AGC = "agc2018_cucumber_greenhouse_climate.csv.gz"
COLUMNS = ["Tair", "RHair", "CO2air"]
SHAPES = {"hourly": (3600, 28, 24), "5min": (300, 7, 1)}  # step s, training days, statsforecast season


def base_series(step_s: int) -> list[np.ndarray]:
    """Complete AGC 2018 series at `step_s` (means per bin), gaps filled the bench's one way."""
    df = pd.read_csv(SHARED / AGC, usecols=["compartment", "time_iso", *COLUMNS])
    df["t"] = pd.to_datetime(df["time_iso"])
    out = []
    for _, g in df.groupby("compartment", sort=True):
        g = g.set_index("t").sort_index()
        for c in COLUMNS:
            s = pd.to_numeric(g[c], errors="coerce").resample(f"{step_s}s").mean()
            s = s.loc[s.first_valid_index():s.last_valid_index()]
            v = s.interpolate(limit=max(1, 4 * 3600 // step_s), limit_area="inside").to_numpy()
            day = 86_400 // step_s
            for t in np.flatnonzero(np.isnan(v)):
                if t >= day:
                    v[t] = v[t - day]
            v = pd.Series(v).bfill().ffill().to_numpy()
            out.append(v)
    return out


def make_set(shape: str, n: int, seed: int = 1) -> tuple[np.ndarray, int, int]:
    """(n, train + season) values, the season and the horizon in steps."""
    step_s, days, _ = SHAPES[shape]
    season = 86_400 // step_s
    length = (days + 1) * season
    bases = [b for b in base_series(step_s) if b.size >= length + season]
    rng = np.random.default_rng(seed)
    rows = np.empty((n, length))
    for i in range(n):
        b = bases[i % len(bases)]
        shift = (i // len(bases)) * season % (b.size - length)
        rows[i] = b[shift:shift + length] + rng.normal(0, 0.005 * np.std(b), length)
    return rows, season, season


def mase(fc: np.ndarray, actual: np.ndarray, train: np.ndarray, season: int) -> float:
    scale = np.mean(np.abs(train[:, season:] - train[:, :-season]), axis=1)
    per = np.mean(np.abs(fc - actual), axis=1) / scale
    return float(np.mean(per[np.isfinite(per)]))


def child(engine: str, shape: str, n: int, sample: int, jobs: int) -> dict[str, Any]:
    """One engine on one shape, in this (child) process: seconds, MASE, peak RSS."""
    values, season, h = make_set(shape, n)
    train, actual = values[:, :-h], values[:, -h:]
    out: dict[str, Any] = {"engine": engine, "shape": shape, "series": n}
    if engine == "greennanny":
        from greennanny.config import ForecastConfig
        from greennanny.forecast.panel import Panel
        from greennanny.forecast.runner import forecast_panel

        cfg = ForecastConfig()
        step_ns = SHAPES[shape][0] * 10**9
        fc = np.empty_like(actual)
        chosen: dict[str, int] = {}
        t0 = time.perf_counter()
        for k in range(0, n, cfg.chunk_series):  # as the node's ForecastService does
            part = Panel(np.arange(k, min(n, k + cfg.chunk_series)), 0, step_ns, train[k:k + cfg.chunk_series])
            res = forecast_panel(part, horizon=h, season=season, models=cfg.models,
                                 backtest_origins=cfg.backtest_origins, now_ns=0, prefer_margin=cfg.prefer_margin)
            fc[k:k + cfg.chunk_series] = res.mean
            for m in res.model:
                chosen[m] = chosen.get(m, 0) + 1
        out.update(seconds=time.perf_counter() - t0, timed_series=n, mase=mase(fc, actual, train, season),
                   chosen=chosen, config={"models": cfg.models, "prefer_margin": cfg.prefer_margin,
                                          "backtest_origins": cfg.backtest_origins, "chunk_series": cfg.chunk_series})
    elif engine == "greennanny_refresh":
        # What the node does between refits (forecast/refresh.py): each series' remembered model
        # fitted on the window, the refit's widths kept. The refit itself is not timed here.
        from greennanny.config import ForecastConfig
        from greennanny.forecast.panel import Panel
        from greennanny.forecast.refresh import merge, refresh, refreshable, remember
        from greennanny.forecast.runner import forecast_panel

        cfg = ForecastConfig()
        step_ns = SHAPES[shape][0] * 10**9
        panels = [Panel(np.arange(k, min(n, k + cfg.chunk_series)), 0, step_ns, train[k:k + cfg.chunk_series])
                  for k in range(0, n, cfg.chunk_series)]
        choices = {}
        for part in panels:
            choices.update(remember(forecast_panel(part, horizon=h, season=season, models=cfg.models,
                                                   backtest_origins=cfg.backtest_origins, now_ns=0,
                                                   prefer_margin=cfg.prefer_margin)))
        fc = np.empty_like(actual)
        refreshed = 0
        t0 = time.perf_counter()
        for k, part in zip(range(0, n, cfg.chunk_series), panels):
            rows = refreshable(part, choices, h, 2 * season)
            rest = np.setdiff1d(np.arange(part.n_series), rows)
            got = [refresh(part.take(rows), choices, horizon=h, season=season, now_ns=0)] if rows.size else []
            if rest.size:
                got.append(forecast_panel(part.take(rest), horizon=h, season=season, models=cfg.models,
                                          backtest_origins=cfg.backtest_origins, now_ns=0,
                                          prefer_margin=cfg.prefer_margin))
            res = merge(got)
            fc[res.series_ids] = res.mean
            refreshed += int(rows.size)
        out.update(seconds=time.perf_counter() - t0, timed_series=n, mase=mase(fc, actual, train, season),
                   refreshed=refreshed)
    elif engine == "seasonal_naive":
        t0 = time.perf_counter()
        fc = train[:, -season:][:, np.arange(h) % season]
        out.update(seconds=time.perf_counter() - t0, timed_series=n, mase=mase(fc, actual, train, season))
    else:
        from statsforecast import StatsForecast
        from statsforecast.models import MSTL, AutoETS

        sf_season = SHAPES[shape][2]
        idx = np.sort(np.random.default_rng(7).choice(n, size=min(sample, n), replace=False))
        freq = "h" if shape == "hourly" else "5min"
        ts = pd.date_range("2026-01-01", periods=train.shape[1], freq=freq)
        df = pd.DataFrame({"unique_id": np.repeat(idx, train.shape[1]), "ds": np.tile(ts, idx.size),
                           "y": train[idx].ravel()})
        model = MSTL(season_length=sf_season) if engine == "MSTL" else AutoETS(season_length=sf_season)
        sf = StatsForecast(models=[model], freq=freq, n_jobs=jobs)
        t0 = time.perf_counter()
        got = sf.forecast(df=df, h=h)
        secs = time.perf_counter() - t0
        col = next(c for c in got.columns if c not in ("unique_id", "ds"))
        fc = got.sort_values(["unique_id", "ds"])[col].to_numpy().reshape(idx.size, h)
        out.update(seconds=secs * n / idx.size, timed_series=int(idx.size), measured_seconds=secs,
                   mase=mase(fc, actual[idx], train[idx], season), sf_season=sf_season)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def run_child(engine: str, shape: str, args: argparse.Namespace) -> dict[str, Any] | None:
    cmd = [sys.executable, __file__, "--child", engine, "--shape", shape, "--series", str(args.series),
           "--sample", str(args.sample), "--jobs", str(args.jobs)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        print(f"  {engine} {shape}: failed: {p.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    return dict(json.loads(p.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--sample", type=int, default=500, help="series statsforecast is timed on (scaled)")
    ap.add_argument("--jobs", type=int, default=2, help="statsforecast n_jobs")
    ap.add_argument("--shapes", default="hourly,5min")
    ap.add_argument("--engines", default="greennanny,greennanny_refresh,seasonal_naive,MSTL,AutoETS")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.shape, args.series, args.sample, args.jobs)))
        return
    if args.sample < 500:
        raise SystemExit("--sample must be at least 500 (issue 5 point 3)")
    t_all = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for shape in args.shapes.split(","):
        engines = ("greennanny", "greennanny_refresh", "seasonal_naive", "MSTL", "AutoETS")
        rows = [r for e in engines if e in args.engines.split(",") and (r := run_child(e, shape, args))]
        results[shape] = {r["engine"]: r for r in rows}
        step_s, days, sfs = SHAPES[shape]
        print(f"\n{shape}: {args.series:,} series, {days} days at {step_s // 60} min, 24 h ahead "
              f"(statsforecast season {sfs}, {args.jobs} jobs, timed on {args.sample} series and scaled)")
        print(f"{'engine':20s} {'seconds':>10s} {'x faster':>9s} {'MASE':>7s} {'peak MB':>8s}")
        gn = results[shape].get("greennanny")
        for r in rows:
            ratio = r["seconds"] / gn["seconds"] if gn and not r["engine"].startswith("greennanny") else None
            shown = "-" if ratio is None else f"{ratio:.1f}"
            print(f"{r['engine']:20s} {r['seconds']:10.1f} {shown:>9s} "
                  f"{r['mase']:7.3f} {r['peak_rss_mb']:8.0f}")
        if gn:
            print(f"greennanny chose: {gn['chosen']}")
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version(), "load_avg_1m": round(os.getloadavg()[0], 2)}
    print(f"\nwall time {time.perf_counter() - t_all:.0f} s; machine {machine}")
    if args.json:
        print(json.dumps({"results": results, "machine": machine}))


if __name__ == "__main__":
    main()
