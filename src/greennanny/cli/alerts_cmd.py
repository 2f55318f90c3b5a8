"""`greennanny alerts list|show|ack|silence|rules|add-rule|delete-rule|deliveries`: alerts for operators.

Through the API (the running node's, or the same API served on the store file when no node
runs), so an acknowledgement on a running node reaches its notifiers at once.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from greennanny.cli.backend import open_backend
from greennanny.cli.common import ConfigOpt, ViaOpt, console, friendly, print_json, resolve_config

app = typer.Typer(help="Alerts on actual and forecast values: list, acknowledge, silence, rules, deliveries.",
                  no_args_is_help=True)
JsonOpt = typer.Option(False, "--json", help="Print JSON (the API's body).")
ActorOpt = typer.Option(None, "--actor", help="Who acts (default: your login name); kept in the audit log.")


def _actor(actor: str | None) -> str:
    return actor or getpass.getuser()


def _v(x: Any) -> str:
    return "-" if x is None else f"{x:.4g}" if isinstance(x, float) else str(x)


def _series(a: dict[str, Any]) -> str:
    return f"{a.get('site')}/{a.get('zone')}/{a.get('device')}/{a.get('quantity')}"


def _levels(a: dict[str, Any]) -> str:
    """value (peak) / threshold in the series' unit; a forecast alert's value is a probability, so
    it shows the forecast's extreme against the level instead."""
    unit = a.get("unit") or ""
    if a.get("kind") == "forecast":
        d = a.get("detail") or {}
        return f"forecast {_v(d.get('forecast_extreme'))} / {_v(a['threshold'])} {unit}"
    if a.get("kind") == "stale":
        return f"silent {_v(a['value'])} s"
    per_h = "/h" if a.get("kind") == "rate" else ""
    return f"{_v(a['value'])} ({_v(a['peak'])}) / {_v(a['threshold'])} {unit}{per_h}"


def _when(a: dict[str, Any]) -> str:
    d = a.get("detail") or {}
    if a.get("kind") == "forecast" and d.get("expected"):
        return f"p={d.get('probability')}, expected {d['expected']}"
    if a.get("kind") == "forecast":
        return f"p={d.get('probability')} within {d.get('horizon_h')} h"
    return ""


@app.command("list")
@friendly
def list_(state: str = typer.Option("open", "--state", help="open | unacked | firing | resolved | all."),
          rule: str = typer.Option(None, "--rule", help="Only this rule."),
          limit: int = typer.Option(200, "--limit", help="At most this many, newest first."),
          as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Alerts newest first (open ones by default), the conditions pending their for_s, and silences."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body = b.get("/alerts", state=None if state == "all" else state, rule=rule, limit=limit)
    if as_json:
        print_json(body)
        return
    rows = body["alerts"]
    if not rows:
        console.print(f"no {'' if state == 'all' else state + ' '}alerts")
    else:
        t = Table("id", "state", "rule", "series", "value (peak) / threshold", "fired", "acked by", "forecast")
        for a in rows:
            state = a["state"] + (f" -> {a['resolved']}" if a["resolved"] else "")
            t.add_row(str(a["alert_id"]), state, f"{a['rule']} ({a['severity']})", _series(a), _levels(a), a["fired"],
                      a["acked_by"] or "-", _when(a))
        console.print(t)
    if body["pending"]:
        console.print(f"{len(body['pending'])} condition(s) pending their minimum duration: "
                      + ", ".join(f"{p['rule']} on {_series(p)} since {p['since']}" for p in body["pending"][:10]),
                      highlight=False)
    for s in body["silences"]:
        console.print(f"silence {s['silence_id']}: rule {s['rule']} series {s['series_id'] or 'all'} until "
                      f"{s['until']} by {s['actor']}: {s['reason']}", highlight=False)


@app.command("show")
@friendly
def show(alert_id: int = typer.Argument(..., help="Alert id."), config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """One alert as JSON, with its detail (forecast probability, expected crossing time)."""
    with open_backend(resolve_config(config), prefer=via) as b:
        print_json(b.get(f"/alerts/{alert_id}"))


@app.command("ack")
@friendly
def ack(alert_id: int = typer.Argument(..., help="Alert id."),
        note: str = typer.Option("", "--note", "-m", help="What is being done about it."),
        actor: str = ActorOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Acknowledge a firing alert: it stays acknowledged (restarts too) until it resolves."""
    with open_backend(resolve_config(config), prefer=via) as b:
        a = b.post(f"/alerts/{alert_id}/ack", {"actor": _actor(actor), "note": note})
    console.print(f"alert {a['alert_id']} ({a['rule']}) acknowledged by {a['acked_by']} at {a['acked']}", highlight=False)


@app.command("silence")
@friendly
def silence(rule: str = typer.Argument(..., help="Rule name, or '*' for every rule."),
            minutes: float = typer.Option(..., "--minutes", help="How long notifications are held."),
            reason: str = typer.Option(..., "--reason", help="Why (audited)."),
            series: int = typer.Option(None, "--series", help="Only this series id."),
            actor: str = ActorOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Hold a rule's notifications for a while (alerts still fire and are listed)."""
    with open_backend(resolve_config(config), prefer=via) as b:
        s = b.post("/alerts/silence", {"rule": rule, "series_id": series, "minutes": minutes, "actor": _actor(actor),
                                       "reason": reason})
    console.print(f"silence {s['silence_id']}: rule {s['rule']} until {s['until']}", highlight=False)


@app.command("rules")
@friendly
def rules(as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Every rule (config file, crop profiles, API) with the series it watches now."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body = b.get("/alerts/rules")
    if as_json:
        print_json(body)
        return
    t = Table("rule", "kind", "quantity", "where", "condition", "for", "series", "severity", "source")
    for r in body["rules"]:
        where = "/".join(x or "*" for x in (r["site"], r["zone"], r["device"]))
        if r["kind"] == "stale":
            c = f"silent > {r['stale_after_s']} s" if r["stale_after_s"] else f"silent > {r['stale_factor']}x interval"
        elif r["kind"] == "forecast":
            c = f"P({r['op']} {r['value']:g} within {r['horizon_h']:g} h) >= {r['probability']:g}"
        else:
            unit = "/h" if r["kind"] == "rate" else ""
            clear = r["clear"] if r["clear"] is not None else r["value"]
            c = f"{r['op']} {r['value']:g}{unit} (clear {clear:g})"
        t.add_row(r["name"], r["kind"], r["quantity"], where, c, f"{r['for_s']} s", str(r["series"]), r["severity"],
                  r["source"])
    console.print(t)


@app.command("add-rule")
@friendly
def add_rule(rule: str = typer.Argument(..., help='The rule as JSON, e.g. \'{"name":"heat","quantity":"air_temperature","value":32,"clear":30}\''),
             actor: str = ActorOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Add a rule through the API (kept in the store; names are unique across config and API)."""
    try:
        body = json.loads(rule)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}") from None
    with open_backend(resolve_config(config), prefer=via) as b:
        r = b.post("/alerts/rules", body, actor=_actor(actor))
    console.print(f"rule {r['rule']['name']} added", highlight=False)


@app.command("delete-rule")
@friendly
def delete_rule(name: str = typer.Argument(..., help="Rule name (rules added through the API only)."),
                actor: str = ActorOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Delete a rule added through the API."""
    with open_backend(resolve_config(config), prefer=via) as b:
        b.delete(f"/alerts/rules/{name}", actor=_actor(actor))
    console.print(f"rule {name} deleted", highlight=False)


@app.command("deliveries")
@friendly
def deliveries(status: str = typer.Option(None, "--status", help="pending | delivered | silenced | failed."),
               as_json: bool = JsonOpt, config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Notifications per event and notifier: status, attempts, last error."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body = b.get("/alerts/deliveries", status=status)
    if as_json:
        print_json(body)
        return
    t = Table("alert", "event", "notifier", "status", "attempts", "at", "delivered", "last error")
    for d in body["deliveries"]:
        t.add_row(str(d["alert_id"]), d["kind"], d["notifier"], d["status"], str(d["attempts"]), d["at"],
                  d["delivered"] or "-", (d["last_error"] or "")[:60])
    console.print(t)
