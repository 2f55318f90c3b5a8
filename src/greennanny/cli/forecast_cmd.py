"""`greennanny forecast run|show|backtest`: forecasting by hand, for data scientists and operators.

`run` and `backtest` work chunk by chunk of series (`[forecast] chunk_series`) and show a progress
bar when the CLI has the store file to itself; through a running node's API (the node owns the
store) the node does the work and the CLI waits with a spinner. Both print the same summary.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from greennanny.cli.backend import Backend, open_backend
from greennanny.cli.common import (
    ConfigOpt,
    ViaOpt,
    console,
    err,
    friendly,
    print_json,
    progress_bar,
    relative_time,
    resolve_config,
)
from greennanny.config import Config

app = typer.Typer(help="Run, show and backtest forecasts.", no_args_is_help=True)

SeriesOpt = typer.Option(None, "--series", "-s", help="Only this series id (repeat for more).")
AtOpt = typer.Option(None, "--at", help="As of this instant (ISO 8601, epoch, now, or before now: -2d; default now): for imported history.")


def _service(cfg: Config, b: Backend) -> Any:
    from greennanny.forecast.service import ForecastService
    from greennanny.runtime.clock import SystemClock

    return ForecastService(b.store, cfg.forecast, SystemClock())


def _at_ns(at: str | None) -> int | None:
    from greennanny.ingest.timeparse import any_to_ns

    return None if at is None else any_to_ns(at, field="--at")


def _with_progress(label: str, work: Any) -> Any:
    """`work(progress)` under a bar that the work moves (series done of series in the run)."""
    with progress_bar(after="series") as bar:
        task = bar.add_task(label, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return work(progress)


@app.command("run")
@friendly
def run(series: list[int] = SeriesOpt, at: str = AtOpt, as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Forecast every series of the configured quantities (or --series) now, and store the forecasts."""
    cfg = resolve_config(config)
    at_text = relative_time(at, "--at", time.time_ns())
    with open_backend(cfg, prefer=via) as b:
        if b.via == "file":
            svc = _service(cfg, b)
            body = _with_progress("forecasting", lambda p: svc.run_once(_at_ns(at_text), series_ids=series or None,
                                                                         progress=p, trained_by="manual (cli)")).as_dict()
        else:
            with console.status("the node is forecasting"):
                body = b.client.post("/forecasts/run", params=_params(series=series, at=at_text), timeout=3600)
                body = b.json_of(body)
    if as_json:
        print_json(body)
        return
    if not body["series_considered"]:
        err.print(f"no series of {', '.join(cfg.forecast.quantities)} has a reading in the "
                      f"{cfg.forecast.history_days} days before {'now' if at is None else at}"
                      "; for imported history give --at (a time near its end)")
        return
    models = ", ".join(f"{m} {n}" for m, n in sorted(body["models"].items()))
    how = "models chosen by backtest" if body.get("refit", True) else \
        f"a refresh: {body['refreshed']} series with the model of the last refit"
    console.print(f"run {body['run_id']}: {body['forecasts']} of {body['series_considered']} series forecast "
                  f"in {body['seconds']} s ({how}); models: {models}; fallbacks: {body['fallbacks']}")
    q = {k: v for k, v in body.get("quality", {}).items() if v}
    if q:
        console.print("data quality: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in q.items()))
    for why, n in body.get("skipped", {}).items():
        console.print(f"skipped {n}: {why}")


@app.command("show")
@friendly
def show(series_id: int, as_json: bool = typer.Option(False, "--json", help="Print JSON (the API's body)."),
         config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """The latest forecast of one series: which model made it, its backtest error, and the values."""
    cfg = resolve_config(config)
    with open_backend(cfg, prefer=via) as b:
        body = b.get(f"/series/{series_id}/forecast")
    if as_json:
        print_json(body)
        return
    s = body["series"]
    console.print(f"series {series_id} {s['quantity']} ({s['unit']}) {s['zone']}/{s['device']}: model "
                  f"[bold]{body['model']}[/bold], backtest MASE {_f(body['backtest_mase'])} "
                  f"(runner-up {body['runner_up'] or '-'} {_f(body['runner_up_mase'])}), as of {body['made_at']}")
    if body["fallback_reason"]:
        console.print(f"[yellow]fallback:[/yellow] {body['fallback_reason']}")
    elif _kept_by_margin(body, cfg.forecast.models[0]):
        err.print(f"note: {body['model']} stays the choice unless another model's backtest MASE is "
                      f"{cfg.forecast.prefer_margin:.0%} lower ([forecast] prefer_margin)", highlight=False, markup=False)
    t = Table("time (UTC)", "mean", "80 %", "95 %")
    for ts, m, lo, hi, lo95, hi95 in zip(body["ts"], body["mean"], body["lo80"], body["hi80"], body["lo95"],
                                         body["hi95"]):
        t.add_row(ts, _f(m), f"{_f(lo)} .. {_f(hi)}", f"{_f(lo95)} .. {_f(hi95)}")
    console.print(t)


def _kept_by_margin(body: dict[str, Any], preferred: str) -> bool:
    """The preferred model chosen although the runner-up's backtest error is lower (by less than the margin)."""
    mine, other = body.get("backtest_mase"), body.get("runner_up_mase")
    return body.get("model") == preferred and mine is not None and other is not None and other < mine


@app.command("backtest")
@friendly
def backtest(series: list[int] = SeriesOpt, at: str = AtOpt,
             models: str = typer.Option(None, help="Comma-separated models (default: the automatic choice's candidates)."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON (the API's body)."),
             config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Each model's rolling-origin backtest error (MASE) per series, the choice and the runner-up."""
    cfg = resolve_config(config)
    at_text = relative_time(at, "--at", time.time_ns())
    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    with open_backend(cfg, prefer=via) as b:
        if b.via == "file":
            svc = _service(cfg, b)
            rows = _with_progress("backtesting", lambda p: svc.backtest(_at_ns(at_text), series_ids=series or None,
                                                                         models=names, progress=p))
            body = {"origins": cfg.forecast.backtest_origins, "horizon_h": cfg.forecast.horizon_h,
                    "step_min": cfg.forecast.step_min, "series": rows}
        else:
            with console.status("the node is backtesting"):
                body = b.json_of(b.client.get("/forecasts/backtest", timeout=3600,
                                                  params=_params(series=series, at=at_text, models=models)))
    if as_json:
        print_json(body)
        return
    rows = body["series"]
    if not rows:
        err.print("no series to backtest in the history window; for imported history give --at")
        return
    used = names or sorted({k[:-5] for r in rows for k in r if k.endswith("_mase")})
    t = Table("series", "quantity", "zone", *(f"{m} MASE" for m in used), "choice", "runner-up", "note")
    for r in rows:
        t.add_row(str(r["series_id"]), r["quantity"], r["zone"], *(_f(r.get(f"{m}_mase")) for m in used),
                  r["choice"] or "-", r["runner_up"] or "-", r.get("reason") or "")
    console.print(t)
    wins = Counter(r["choice"] for r in rows if r["choice"])
    means = []
    for m in used:
        xs = [r[f"{m}_mase"] for r in rows if r.get(f"{m}_mase") is not None]
        means.append(f"{m} {sum(xs) / len(xs):.3f} over {len(xs)}" if xs else f"{m} -")
    console.print(f"{body['origins']} origins x {body['horizon_h']} h at {body['step_min']} min; mean MASE: "
                  + "; ".join(means) + "; chosen: " + ", ".join(f"{m} {n}" for m, n in wins.most_common()))


def _params(**given: Any) -> dict[str, Any]:
    """Query parameters without the options not given (httpx would send `at=`)."""
    return {k: v for k, v in given.items() if v not in (None, [], "")}


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


