"""`greennanny models list|show|rollback|health|score|card|mlflow|audit|events|accept|calibrate|retrain`: the model registry (design 005), through the node.

Every command goes through the API (the running node's, or the same API served on the store
file when no node runs), so a rollback on a running node is taken by its forecasts at once.
"""

from __future__ import annotations

import getpass
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from greennanny.cli.backend import open_backend
from greennanny.cli.common import ConfigOpt, ViaOpt, console, friendly, print_json, relative_time, resolve_config
from greennanny.errors import ConfigError

app = typer.Typer(help="Model versions per series: production, lineage, history, rollback, live health, audit.",
                  no_args_is_help=True)
JsonOpt = typer.Option(False, "--json", help="Print JSON (the API's body).")


def _ask(config: Path, via: str, path: str, body: Any = None, *, as_json: bool = False, **params: Any) -> Any:
    """One call through the node (or the file): POST with a body, else GET; printed as JSON when
    asked (then None is returned and the command has nothing more to print)."""
    with open_backend(resolve_config(config), prefer=via) as b:
        res = b.post(path, body) if body is not None else b.get(path, **params)
    if as_json:
        print_json(res)
        return None
    return res


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


@app.command("list")
@friendly
def list_(series: list[int] = typer.Option(None, "--series", "-s", help="Only this series id (repeat for more)."),
          as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Each series' production model: version, model, backtest MASE, trained when, by whom and why."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body = b.get("/models", series=series or None)
    if as_json:
        print_json(body)
        return
    rows = body["models"]
    if not rows:
        console.print("no model is registered yet (a forecast run registers one per series)")
        return
    t = Table("series", "version", "model", "backtest MASE", "runner-up", "trained", "by", "artifact")
    for m in rows:
        t.add_row(str(m["series_id"]), f"v{m['version']}", m["model"], _num(m["backtest_mase"]),
                  m["runner_up"] or "-", m["created"], m["trained_by"], m["artifact"])
    console.print(t)


@app.command("show")
@friendly
def show(series_id: int = typer.Argument(..., help="Series id."), as_json: bool = JsonOpt, config: Path = ConfigOpt,
         via: str = ViaOpt) -> None:
    """One series: every version with its lineage, who moved `production` when and why, and the
    promotion gate's decisions with their numbers."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body = b.get(f"/models/{series_id}")
    if as_json:
        print_json(body)
        return
    prod = body["production"]
    cand = f", candidate v{body['candidate']}" if body.get("candidate") else ""
    console.print(f"series {series_id} {body['series']['key']}: production "
                  f"{'v' + str(prod['version']) + ' (' + prod['model'] + ')' if prod else 'none'}{cand}", highlight=False)
    t = Table("version", "model", "backtest MASE", "data window", "points", "data sha256", "trained", "by", "reason")
    for v in body["versions"]:
        t.add_row(f"v{v['version']}", v["model"], _num(v["backtest_mase"]), f"{v['data_start']} .. {v['data_end']}",
                  str(v["data_points"]), v["data_sha256"][:12], v["created"], v["trained_by"], v["reason"])
    console.print(t)
    h = Table("when", "alias", "version", "before", "actor", "reason", title="alias history")
    for e in body["history"]:
        before = "-" if e["previous_version"] is None else f"v{e['previous_version']}"
        h.add_row(e["at"], e["alias"], f"v{e['version']}", before, e["actor"], e["reason"])
    console.print(h)
    if body.get("gate"):
        g = Table("when", "candidate", "production", "candidate MASE", "production MASE", "80 % cov.", "promoted",
                  title="promotion gate (newest first)")
        for d in body["gate"]:
            g.add_row(d["at"], f"v{d['candidate_version']}", f"v{d['production_version']}", _num(d["candidate_mase"]),
                      _num(d["production_mase"]), _num(d["coverage80"]), "yes" if d["promoted"] else "no")
        console.print(g)


@app.command("rollback")
@friendly
def rollback(series: list[int] = typer.Argument(None, help="Series ids (or --all)."),
             all_: bool = typer.Option(False, "--all", help="Every series that has a production model."),
             to: str = typer.Option("previous", "--to", help="A version number, or 'previous'."),
             reason: str = typer.Option(..., "--reason", "-r", help="Why (kept in the history and the audit log)."),
             as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Put an earlier model version back into production, recorded with your name and reason."""
    if bool(series) == all_:
        raise ConfigError("give series ids or --all (one of them)")
    to_value: int | str = int(to) if to.isdigit() else to
    body = {"series": series or [], "all": all_, "to": to_value, "reason": reason, "actor": getpass.getuser()}
    with open_backend(resolve_config(config), prefer=via) as b:
        res = b.post("/models/rollback", body)
    if as_json:
        print_json(res)
        return
    moved = [m for m in res["moved"] if m["from"] != m["to"]]
    for m in moved[:20]:
        console.print(f"series {m['series_id']}: v{m['from']} -> v{m['to']}", highlight=False)
    if len(moved) > 20:
        console.print(f"... and {len(moved) - 20} more", highlight=False)
    tail = "; the running node took them" if res.get("node_reloaded") is not None else \
        "; a node takes them when it starts"
    console.print(f"rolled back {len(moved)} of {len(res['moved'])} series via {b.via}{tail}", highlight=False)


@app.command("audit")
@friendly
def audit(limit: int = typer.Option(50, help="Newest rows to show."),
          action: str = typer.Option(None, help="Only this action (register, rollback, fallback)."),
          as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """The audit log, oldest first: registrations, rollbacks, fallbacks, with actor and reason."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body = b.get("/audit", limit=limit, action=action)
    if as_json:
        print_json(body)
        return
    t = Table("#", "when", "actor", "action", "subject", "detail")
    for a in body["audit"]:
        d = a["detail"]
        if a["action"] == "config":  # every setting is in the row (--json); the table says what changed
            brief = ", ".join(f"{k}: {o!r} -> {n!r}" for k, (o, n) in d.get("changed", {}).items()) or \
                f"{len(d.get('values', {}))} settings recorded"
        else:
            brief = ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("first", "sha256", "models"))
        t.add_row(str(a["seq"]), a["at"], a["actor"], a["action"], a["subject"], brief)
    console.print(t)


@app.command("health")
@friendly
def health(days: int = typer.Option(7, min=1, max=366, help="Rolling window in UTC days (1-366), ending today."),
           series: list[int] = typer.Option(None, "--series", "-s", help="Only this series id (repeat for more)."),
           show_all: bool = typer.Option(False, "--all", help="List every series, not only the degraded ones."),
           as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Live accuracy of every model against the actuals: MASE, 80 % coverage, status and why."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body = b.get("/models/health", days=days, series=series or None)
    if as_json:
        print_json(body)
        return
    c = body["counts"]
    console.print(f"{days} days since {body['since']}: {c['ok']} ok, {c['degraded']} degraded, {c['no data']} "
                  "without enough scored forecasts", highlight=False)
    rows = [r for r in body["series"] if show_all or r["status"] == "degraded"]
    if not rows:
        return
    t = Table("series", "status", "model (production)", "live MASE", "backtest MASE", "80 % cov.", "steps", "why")
    for r in rows:
        model = f"{r['production_model']} v{r['production_version']}" if r["production_version"] else "-"
        cov = "-" if r["coverage80"] is None else f"{r['coverage80']:.2f}"
        t.add_row(str(r["series_id"]), r["status"], model, _num(r["mase"]), _num(r["backtest_mase"]), cov,
                  str(r["n"]), "; ".join(r["reasons"]))
    console.print(t)


@app.command("score")
@friendly
def score(as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Score the stored forecasts against the actuals that have arrived (a node does it after each run)."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body = b.post("/models/score")
    if as_json:
        print_json(body)
        return
    console.print(f"scored {body['forecast_steps']:,} forecast steps of {body['series']} series through "
                  f"{body['through']} ({body['without_actual']:,} steps had no reading yet)", highlight=False)


@app.command("card")
@friendly
def card(model: str = typer.Argument(None, help="A model family (default: every family in use)."),
         days: int = typer.Option(7, help="Window of the live figures, UTC days."),
         as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Model cards, generated from the registry: intended use, training data, metrics by site and
    quantity, known limits (Markdown)."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body = b.get("/models/cards", model=model, days=days)
    if as_json:
        print_json(body)
        return
    if not body["cards"]:
        console.print("no model family is in production yet", highlight=False)
    for c in body["cards"]:
        td = c["training_data"]
        lines = [f"# Model card: {c['model']}", "", "## Intended use", "", c["intended_use"], "",
                 "## Training data", ""]
        if td:
            lines += [f"- {c['production_series']} series in production, trained by {c['trained_by']}, last {c['last_trained']}",
                      (f"- data from {td['first']} to {td['last']}; median window {td['window_days_median']} days, "
                       f"median {td['points_median']} points")]
        else:
            lines += ["- in production on no series (used as a fallback)"]
        lines += [f"- series whose latest forecast is this model as a fallback: {c['series_on_a_fallback_now']}", "",
                  f"## Metrics (backtest at the refit; live over {c['live_days']} days)", "",
                  "| site | quantity | series | backtest MASE | live steps | live MASE | live 80 % coverage |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for m in c["metrics"]:
            cov = "-" if m["live_coverage80"] is None else f"{m['live_coverage80']:.2f}"
            lines.append(f"| {m['site']} | {m['quantity']} | {m['series']} | {_num(m['backtest_mase_mean'])} | "
                         f"{m['live_steps']} | {_num(m['live_mase'])} | {cov} |")
        lines += ["", "## Known limits", ""] + [f"- {x}" for x in c["known_limits"]] + [""]
        print("\n".join(lines))


@app.command("mlflow")
@friendly
def mlflow(series_id: int = typer.Argument(..., help="Series id."),
           tracking_uri: str = typer.Option(..., "--tracking-uri", help="MLflow tracking server, http(s)://host:port."),
           experiment: str = typer.Option("greennanny", help="MLflow experiment."),
           version: int = typer.Option(None, "--version", help="Version to export (default: production)."),
           as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Export a model version (lineage as tags, figures as metrics, its artifact) to MLflow's registry.
    Credentials as MLflow takes them: MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME/PASSWORD."""
    body = {"tracking_uri": tracking_uri, "experiment": experiment, "version": version, "actor": getpass.getuser()}
    res = _ask(config, via, f"/models/{series_id}/mlflow", body, as_json=as_json)
    if res is None:
        return
    console.print(f"series {series_id} v{res['version']} -> {res['registered_model']} version {res['mlflow_version']} "
                  f"(run {res['run_id']}) at {res['tracking_uri']}", highlight=False)


@app.command("events")
@friendly
def events(status: str = typer.Option(None, "--status", help="open, accepted, calibrated or closed."),
           series: int = typer.Option(None, "--series", "-s", help="Only this series id."),
           category: str = typer.Option(None, "--category", help="sensor_fault, drift, decay or site."),
           limit: int = typer.Option(50, "--limit", "-n", help="How many, newest first."),
           as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Health events: sensor faults (step, stuck, silent), drift, accuracy decay, with their evidence."""
    body = _ask(config, via, "/models/events", as_json=as_json, status=status, series=series, category=category,
                limit=limit)
    if body is None:
        return
    if not body["events"]:
        console.print("no event")
        return
    t = Table("event", "raised", "series", "category", "kind", "status", "evidence")
    for e in body["events"]:
        ev = e["evidence"]
        brief = ev.get("why") or "; ".join(str(x) for x in ev.get("reasons", [])) or ev.get("test", "")
        if "jump" in ev:
            brief = f"jump {ev['jump']:+g} at {ev.get('at', e['start'])}; " + brief
        t.add_row(str(e["event_id"]), e["at"], str(e["series_id"] or "-"), e["category"], e["kind"], e["status"],
                  brief)
    console.print(t)


@app.command("accept")
@friendly
def accept(event_id: int = typer.Argument(..., help="Event id (greennanny models events)."),
           reason: str = typer.Option(..., "--reason", "-r", help="Why the change is real."),
           as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Accept a sensor fault's change as real (a moved probe, a new setpoint): its readings count again."""
    res = _ask(config, via, f"/models/events/{event_id}/accept", {"reason": reason, "actor": getpass.getuser()},
               as_json=as_json)
    if res is None:
        return
    console.print(f"event {event_id} accepted: series {res['series_id']}'s readings count again", highlight=False)


@app.command("calibrate")
@friendly
def calibrate(event_id: int = typer.Argument(..., help="Event id (greennanny models events)."),
              offset: float = typer.Option(..., "--offset", help="Added to the readings from the fault's start on."),
              reason: str = typer.Option(..., "--reason", "-r", help="How the offset was found."),
              as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Set a calibration offset for a sensor fault: its readings count again, with the offset added."""
    res = _ask(config, via, f"/models/events/{event_id}/calibrate",
               {"offset": offset, "reason": reason, "actor": getpass.getuser()}, as_json=as_json)
    if res is None:
        return
    console.print(f"event {event_id} calibrated: series {res['series_id']} {offset:+g} from {res['start']}",
                  highlight=False)


@app.command("retrain")
@friendly
def retrain(series: list[int] = typer.Argument(None, help="Series ids."),
            site: str = typer.Option(None, "--site", help="Select the forecast series of this site ..."),
            zone: str = typer.Option(None, "--zone", help="... of this zone ..."),
            quantity: str = typer.Option(None, "--quantity", help="... of this quantity."),
            degraded: bool = typer.Option(False, "--degraded", help="Select the series whose health is degraded."),
            reason: str = typer.Option(..., "--reason", "-r", help="Why (kept with each new version)."),
            at: str = typer.Option(None, "--at", help="Train as of this time (ISO 8601, epoch, -2d, now): for "
                                                      "imported history."),
            as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Refit the selected series now (choice by backtest, then the promotion gate), within the budget."""
    body = {"series": series or [], "site": site, "zone": zone, "quantity": quantity, "degraded": degraded,
            "reason": reason, "actor": getpass.getuser(), "at": relative_time(at, "--at", time.time_ns())}
    res = _ask(config, via, "/models/retrain", body, as_json=as_json)
    if res is None:
        return
    console.print(f"{res['selected']} selected: {res['retrained']} retrained, {res['promoted']} promoted by the gate, "
                  f"{res['kept']} kept production, {res['retrain_waiting']} waiting for the next run", highlight=False)
