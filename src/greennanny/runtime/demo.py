"""`greennanny demo`: the whole job on real data, in one command.

A private Mosquitto (or `--broker`), a node with its API and dashboard, then: the AGC 2018
climate export imported through the store owner, the ChirpStack event archive replayed over
MQTT at QoS 1, forecasts fitted, and a summary that accounts for every message. Without the
shared data folder, the built-in simulator publishes Milesight payloads in ChirpStack envelopes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from greennanny.cli.common import console as results
from greennanny.cli.common import err as console  # the demo's notes and status: stderr; its summary: stdout
from greennanny.config import Config, config_from_dict
from greennanny.errors import BrokerError, ConfigError
from greennanny.ingest import replay
from greennanny.ingest.field_maps import PROFILE_FIELD_MAPS
from greennanny.runtime.broker import Mosquitto, MosquittoConfig, free_port
from greennanny.runtime.node import Node
from greennanny.runtime.server import ApiThread, tune_gc

AGC_FILE = "agc2018_cucumber_greenhouse_climate.csv.gz"
DEMO_RETENTION = ("raw_days", "rollup_1m_days", "rollup_1h_days", "forecasts_days", "ledger_days", "deadletters_days",
                  "forecasts_thin_after_h", "events_days")
ARCHIVE_FILE = "ssi2026_chirpstack_lorawan_events.csv.gz"
MARKER = ".greennanny-demo"


def find_shared(explicit: Path | None) -> Path | None:
    candidates = [explicit] if explicit else []
    if os.environ.get("GREENNANNY_SHARED"):
        candidates.append(Path(os.environ["GREENNANNY_SHARED"]))
    candidates += [Path.cwd().parent / "shared", Path(__file__).resolve().parents[4] / "shared"]
    for c in candidates:
        if c and (c / "data").is_dir():
            return c
    if explicit:
        raise ConfigError(f"--shared {explicit}: no data/ folder there")
    return None


def archive_devices(path: Path) -> dict[str, dict[str, str]]:
    """Onboard the archive's devices: devEUI -> field map by device profile, zone by application."""
    cols = ["deviceInfo.devEui", "deviceInfo.deviceProfileName", "deviceInfo.applicationName",
            "deviceInfo.deviceName"]
    df = pd.read_csv(path, usecols=cols)[cols]  # usecols keeps file order; select to fix it
    out = {}
    for eui, prof, app, name in df.drop_duplicates("deviceInfo.devEui").itertuples(index=False):
        fmap = PROFILE_FIELD_MAPS.get(prof)
        if fmap:
            zone = str(app).strip().lower().replace(" ", "-")
            out[eui] = {"field_map": fmap, "site": "ssi", "zone": zone, "name": str(name)}
    return out


def fresh_dir(d: Path) -> None:
    if d.exists():
        if any(d.iterdir()) and not (d / MARKER).exists():
            raise ConfigError(f"--data-dir {d} exists and is not a demo directory; choose another")
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / MARKER).write_text("created by greennanny demo; removed on the next demo run\n")


def run_demo(*, once: bool, broker: str | None, data_dir: Path, port: int, simulator: bool,
             shared: Path | None, as_json: bool) -> dict[str, Any]:
    t_start = time.monotonic()
    data_dir = data_dir.resolve()
    fresh_dir(data_dir)
    shared_dir = None if simulator else find_shared(shared)
    if shared_dir is None:
        why = "--simulator given" if simulator else "no shared/data folder beside the checkout (use --shared DIR)"
        console.print(f"running the built-in greenhouse simulator: {why}")
    mosq = None
    if broker is None:
        mosq = Mosquitto(MosquittoConfig(data_dir=data_dir / "mosquitto"))
        mosq.start()
        broker = mosq.url
    devices: dict[str, dict[str, str]] = {}
    if shared_dir:
        devices = archive_devices(shared_dir / "data" / ARCHIVE_FILE)
    else:
        from greennanny.sim.greenhouse import DEVICES

        devices = {d.dev_eui: {"codec": "milesight", "model": d.model, "site": "simulated", "zone": d.zone}
                   for d in DEVICES}
    cfg: Config = config_from_dict({
        "node": {"data_dir": str(data_dir / "node")},
        "api": {"port": port or free_port(), "token_file": ""},
        "mqtt": {"url": broker, "client_id": f"greennanny-demo-{os.getpid()}"},
        "pipeline": {"mode": "backfill"},
        # The demo replays history (2018, early 2026): retention counts from today, so it would
        # remove all of it at the first maintenance run, and the forecasts made as of the data's
        # end with it. Keep every tier and table forever here.
        "store": {"retention": dict.fromkeys(DEMO_RETENTION, 0)},
        "alerts": DEMO_ALERTS,
        "devices": devices,
    }, source="demo config", base_dir=data_dir)
    (data_dir / "greennanny.toml").write_text(_toml(cfg))
    node = Node(cfg)
    tune_gc()
    api = None
    summary: dict[str, Any] = {}
    try:
        node.start(forecasts=False, alerts=False)  # the alert rounds run over the history below
        node.mqtt.wait_connected(15)
        api = ApiThread(cfg, node)
        api.start()
        sources: dict[str, int] = {}
        published = 0
        if shared_dir:
            sources["import:" + AGC_FILE] = _import_agc(node, shared_dir / "data" / AGC_FILE)
            msgs = replay.chirpstack_archive_messages(shared_dir / "data" / ARCHIVE_FILE)
            label = ARCHIVE_FILE
        else:
            from greennanny.sim.greenhouse import simulate

            now = time.time_ns()
            msgs = simulate(now - 14 * 86_400 * 10**9 - now % (600 * 10**9), days=14)
            label = "simulator"
        published = _publish(broker, msgs, label)
        if not _wait_for(node, published, timeout=600):
            raise BrokerError(f"the node processed {node.stats.messages} of {published} messages in 10 min")
        sources["mqtt:" + label] = node.stats.points
        from greennanny.forecast.service import ForecastService

        with console.status("fitting forecasts"):
            runs = ForecastService(node.store, cfg.forecast, node.clock).run_per_epoch()
            fc = _merge_runs(runs)
        with console.status("deriving VPD, dew point, DLI ... and evaluating the alert rules over the history"):
            alerts = alerts_over_history(node, cfg)
        summary = _summary(node, cfg, broker, published, sources, fc, time.monotonic() - t_start, shared_dir)
        summary["derived_and_alerts"] = alerts
        _print_summary(summary, as_json)
        if not as_json:
            console.print(f"explore the demo's store with its config, e.g. [bold]{_cli_name()} series list -c "
                          f"{data_dir / 'greennanny.toml'}[/]", highlight=False, soft_wrap=True)
        if not once:
            console.print(f"\n[bold green]dashboard:[/] {cfg.api_url}/   (API docs: {cfg.api_url}/docs)  "
                          f"Ctrl-C to stop", highlight=False)
            node.start(mqtt=False, forecasts=True, alerts=True)
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                console.print("stopping")
    finally:
        if api:
            api.stop()
        node.stop()
        if mosq:
            mosq.stop()
    return summary


# Rules that show what the node does on the demo's data: heat on the actuals, the same level
# ahead on the forecasts, and the cucumber profile's bands on the AGC 2018 cucumber houses.
DEMO_ALERTS: dict[str, Any] = {
    "rules": [
        {"name": "heat", "quantity": "air_temperature", "value": 30.0, "clear": 28.0, "for_s": 600,
         "severity": "critical"},
        {"name": "heat-ahead", "kind": "forecast", "quantity": "air_temperature", "value": 30.0, "horizon_h": 6,
         "probability": 0.5},
    ],
    "profiles": [{"name": "cucumber", "preset": "cucumber-generative", "site": "bleiswijk"}],
}


def alerts_over_history(node: Node, cfg: Config) -> dict[str, Any]:
    """Derive every zone's crop-climate series over the whole history in one round, then evaluate
    the rules at each data source's end (where its forecasts were made), looking back 30 days.
    A live node does the same every interval on the last minutes."""
    from greennanny.alerts.engine import AlertEngine
    from greennanny.processors.derived import Deriver

    st = node.store
    ends = sorted({int(s.last_ns) for s in st.series() if s.last_ns})
    last_by_source: list[int] = []
    for e in ends:  # a source's series end within a day of each other; sources are months apart
        if not last_by_source or e - last_by_source[-1] > 86_400 * 10**9:
            last_by_source.append(e)
        else:
            last_by_source[-1] = e
    derived = Deriver(st, cfg.derived, cfg.forecast.tz, catch_up_s=400 * 86_400).run(ends[-1] + 3600 * 10**9) if ends else {}
    engine = AlertEngine(st, cfg.alerts, first_lookback_ns=30 * 86_400 * 10**9)
    for end in last_by_source:
        engine.run(end + 10**9)
    from greennanny.alerts.tables import list_alerts

    fired = list_alerts(st, limit=100_000)
    by_rule: dict[str, int] = {}
    for a in fired:
        by_rule[a["rule"]] = by_rule.get(a["rule"], 0) + 1
    return {"derived_points": {k: v for k, v in derived.items() if k not in ("zones", "errors", "flagged")},
            "alerts_fired": len(fired), "open": sum(a["state"] == "firing" for a in fired),
            "by_rule": dict(sorted(by_rule.items(), key=lambda kv: -kv[1])[:8])}


def _import_agc(node: Node, path: Path) -> int:
    from greennanny.ingest.csv_import import PRESETS, read_climate_csv

    with console.status(f"importing {path.name}"):
        batch, _stats = read_climate_csv(path, PRESETS["agc2018"])
        res = node.store.write(batch)
    return res.written


def _publish(url: str, msgs: list[replay.Message], label: str) -> int:
    from greennanny.cli.data_cmds import progress_bar

    with progress_bar() as bar:
        task = bar.add_task(f"replaying {label} over MQTT (QoS 1)", total=len(msgs))
        return replay.publish(url, msgs, progress=lambda n: bar.advance(task, n))


def _wait_for(node: Node, n: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if node.stats.messages >= n:
            return True
        time.sleep(0.2)
    return False


def _merge_runs(runs: list[Any]) -> dict[str, Any]:
    """One summary of the per-epoch forecast runs (one per data source's end)."""
    out: dict[str, Any] = {"runs": len(runs), "series_forecast": 0, "models": {}, "fallbacks": 0, "seconds": 0.0}
    for r in runs:
        out["series_forecast"] += r.forecasts
        out["fallbacks"] += r.fallbacks
        out["seconds"] = round(out["seconds"] + r.seconds, 2)
        for m, n in r.models.items():
            out["models"][m] = out["models"].get(m, 0) + n
    return out


def _summary(node: Node, cfg: Config, broker: str, published: int, sources: dict[str, int], fc: Any,
             seconds: float, shared_dir: Path | None) -> dict[str, Any]:
    st = node.store
    return {
        "data": str(shared_dir / "data") if shared_dir else "built-in simulator",
        "broker": broker,
        "dashboard": cfg.api_url + "/",
        "messages_published": published,
        "messages_in": node.stats.messages,
        "outcomes": st.outcome_counts(),
        "outcome_detail": st.outcome_detail(),
        "points_stored": sources,
        "points_total": st.count_points(),
        "series": len(st.series()),
        "forecasts": fc.as_dict() if hasattr(fc, "as_dict") else fc,
        "deadletters": st.deadletter_counts(),
        "seconds": round(seconds, 1),
    }


def _cli_name() -> str:
    """`greennanny` when it is on PATH, else the venv's own script (a new user has not activated it)."""
    import sys

    if shutil.which("greennanny"):
        return "greennanny"
    here = Path(sys.executable).parent / "greennanny"
    try:
        return str(here.relative_to(Path.cwd())) if here.exists() else "greennanny"
    except ValueError:
        return str(here)


def _print_summary(s: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(s, indent=2, default=str))
        return
    from rich.table import Table

    t = Table(title="greennanny demo summary", show_header=False)
    for k, v in s.items():
        t.add_row(k, json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v))
    results.print(t)


def _toml(cfg: Config) -> str:
    lines = [f'[node]\ndata_dir = "{cfg.node.data_dir}"', f"[api]\nport = {cfg.api.port}\ntoken_file = \"\"",
             f'[mqtt]\nurl = "{cfg.mqtt.url}"\nclient_id = "{cfg.mqtt.client_id}"',
             '[pipeline]\nmode = "backfill"',
             # The same retention the demo node runs with: history from 2018 is older than any
             # default tier, so `db maintain` or `run` with this file would otherwise delete it.
             "[store.retention]\n" + "\n".join(f"{k} = {getattr(cfg.store.retention, k)}"
                                                for k in DEMO_RETENTION)]
    for table in ("rules", "profiles"):  # the demo's alert rules, so `alerts rules -c` shows them
        for item in DEMO_ALERTS[table]:
            lines.append(f"[[alerts.{table}]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in item.items()]
    for eui, d in cfg.devices.items():
        lines.append(f'[devices."{eui}"]')
        for k in ("codec", "model", "field_map", "site", "zone", "name"):
            v = getattr(d, k)
            if v:
                lines.append(f'{k} = {json.dumps(v)}')
    return "\n".join(lines) + "\n"
