"""Ingest throughput: MQTT messages to committed points, beside mosquitto_sub on the same broker.

Why a side-by-side baseline: msgs/s alone mostly measures the machine (two shared, noisy cores
here). The C client `mosquitto_sub` draining the same queue from the same broker in the same run
is what a subscriber can get out of the broker, so greennanny / mosquitto_sub is comparable
across machines. Queued variant (the headline), per measurement: a fresh private Mosquitto; the
subscriber's persistent QoS 1 session is made (mosquitto_sub -E with its client id and filters:
all the broker keeps of a session) and left; N ChirpStack v4 `up` events with Milesight payloads
are published at QoS 1 and queue; the subscriber starts and the clock runs until the N-th message
is committed (`greennanny run` as its own process, as deployed; and a Node in this process) or
received (mosquitto_sub -C N exits). `msgs/s` counts from the subscriber's start, so the
node's figure includes its start-up (interpreter, imports, opening the store: a one-off latency
after each restart); `steady` counts from its first committed message, the rate a running node
sustains, and is the headline, with the start-up printed beside it in seconds. A bare
paho-mqtt subscriber that only acks (through paho's own packet handling, which the node
bypasses for PUBLISH runs) is a reference. `--live`: node process and mosquitto_sub connected
while C publishers publish as fast as they can.

Run: .venv/bin/python bench/ingest.py [--messages 50000] [--repeat 3] [--live] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt

from greennanny.config import config_from_dict
from greennanny.ingest import replay
from greennanny.ingest.replay import Message
from greennanny.runtime.broker import Mosquitto, MosquittoConfig, free_port
from greennanny.runtime.node import Node
from greennanny.sim.greenhouse import DEVICES, simulate

MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"
NODE_ID = "greennanny-bench"
NODE_TOPICS = [s.topic for s in config_from_dict({}).mqtt.subscriptions]  # the node subscribes to these
START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00Z: fixed, so every run publishes the same bytes
TIMEOUT_S = 900


@dataclass
class Timing:
    seconds: float  # from the subscriber's start to its N-th message
    steady_msgs_per_s: float
    start_s: float = 0.0  # from the subscriber's start to its first message (its start-up)


def timing(seconds: float, n: int) -> Timing:
    return Timing(seconds, n / seconds)


def build_messages(n: int) -> list[Message]:
    """The first `n` messages of enough simulated days (4 devices x 144 a day + 2 faults a day)."""
    msgs = simulate(START_NS, days=math.ceil(n / (len(DEVICES) * 144)) + 1, step_s=600)
    if len(msgs) < n:
        raise SystemExit(f"simulator gave {len(msgs)} messages, fewer than {n}")
    return msgs[:n]


def node_config(url: str, data_dir: Path, api_port: int) -> dict[str, Any]:
    """What the demo configures (backfill, simulator devices), without forecasts, which would compete."""
    return {
        "node": {"data_dir": str(data_dir)},
        "api": {"port": api_port, "token_file": ""},
        "mqtt": {"url": url, "client_id": NODE_ID},
        "pipeline": {"mode": "backfill"},
        "forecast": {"enabled": False},
        "devices": {d.dev_eui: {"codec": "milesight", "model": d.model, "zone": d.zone} for d in DEVICES},
    }


def to_toml(cfg: dict[str, Any]) -> str:
    """Just enough TOML for node_config: tables of strings, ints and bools, one level of subtables."""
    lines: list[str] = []
    for name, table in cfg.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items() if not isinstance(v, dict)]
        for key, sub in ((k, v) for k, v in table.items() if isinstance(v, dict)):
            lines.append(f'[{name}."{key}"]')
            lines += [f"{k} = {json.dumps(v)}" for k, v in sub.items()]
    return "\n".join(lines) + "\n"


def sub_cmd(broker: Mosquitto, *args: str) -> list[str]:
    return [MOSQUITTO_SUB, "-h", broker.host, "-p", str(broker.port), "-q", "1", *args]


def queued_broker(root: Path, client_id: str, topics: list[str], msgs: list[Message]) -> Mosquitto:
    """A fresh broker holding `msgs` in the offline persistent session of `client_id` (if any)."""
    broker = Mosquitto(MosquittoConfig(root / "mosquitto", max_queued_messages=max(200_000, len(msgs) + 1000)))
    broker.start()
    if not client_id:
        return broker
    subprocess.run(sub_cmd(broker, "-c", "-i", client_id, "-E", *(a for t in topics for a in ("-t", t))),
                   check=True, timeout=30)
    if replay.publish(broker.url, msgs) != len(msgs):
        raise SystemExit("the broker did not acknowledge every published message")
    return broker


def node_timing(stats: dict[str, int], n: int, t0_ns: int) -> Timing:
    """A node's timing from its own commit clock (GET /health `ingest`, or NodeStats): start-up
    to its first commit, and the steady rate over every batch after the first."""
    first, last, first_batch = stats["first_commit_ns"], stats["last_commit_ns"], stats["first_batch_messages"]
    return Timing((last - t0_ns) / 1e9, (n - first_batch) / max((last - first) / 1e9, 1e-9), (first - t0_ns) / 1e9)


def wait_count(count: Callable[[], int], n: int, t0: float, poll_s: float) -> Timing:
    """Poll `count` until it reaches n; the first non-zero reading marks the end of the start."""
    first: tuple[float, int] | None = None
    while True:
        m, now = count(), time.perf_counter()
        if m and first is None:
            first = (now, m)
        if m >= n:
            break
        if now - t0 > TIMEOUT_S:
            raise SystemExit(f"only {m} of {n} messages committed after {TIMEOUT_S} s")
        time.sleep(poll_s)
    f_t, f_m = first or (t0, 0)
    return Timing(now - t0, (n - f_m) / max(now - f_t, 1e-9), f_t - t0)


@contextmanager
def node_process(root: Path, broker: Mosquitto) -> Iterator[tuple[Callable[[], int], Callable[[], bool],
                                                                  Callable[[], dict[str, int]]]]:
    """`greennanny run` as deployed; yields (committed messages, connected, its commit clock) from GET /health."""
    port = free_port()
    conf = root / "greennanny.toml"
    conf.write_text(to_toml(node_config(broker.url, root / "node", port)))
    with (root / "node.log").open("wb") as log, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=1) as http:
        proc = subprocess.Popen([sys.executable, "-m", "greennanny.cli.main", "run", "-c", str(conf)],
                                stdout=log, stderr=subprocess.STDOUT)

        def health() -> dict[str, Any]:
            try:
                return dict(http.get("/health").json())
            except httpx.HTTPError:
                if proc.poll() is not None:
                    raise SystemExit(f"node exited: {(root / 'node.log').read_text()[-2000:]}") from None
                return {}

        try:
            yield (lambda: int(health().get("messages", 0))), (lambda: bool(health().get("mqtt_connected"))), \
                (lambda: dict(health()["ingest"]))
        finally:
            proc.send_signal(2)  # SIGINT: the node stops cleanly
            proc.wait(timeout=30)


def run_node_process(root: Path, msgs: list[Message]) -> Timing:
    broker = queued_broker(root, NODE_ID, NODE_TOPICS, msgs)
    try:
        t0, t0_ns = time.perf_counter(), time.time_ns()
        with node_process(root, broker) as (count, _, ingest):
            wait_count(count, len(msgs), t0, 0.25)  # polls seldom: each poll is a request the node serves
            return node_timing(ingest(), len(msgs), t0_ns)
    finally:
        broker.stop()


def run_node_inprocess(root: Path, msgs: list[Message]) -> Timing:
    """The same node as a Node object here (imports already paid), read through its counters."""
    broker = queued_broker(root, NODE_ID, NODE_TOPICS, msgs)
    cfg = config_from_dict(node_config(broker.url, root / "node", free_port()), source="bench")
    t0, t0_ns = time.perf_counter(), time.time_ns()
    node = Node(cfg)
    try:
        node.start(forecasts=False)
        wait_count(lambda: node.stats.messages, len(msgs), t0, 0.05)
        st = node.stats
        return node_timing({"first_commit_ns": st.first_commit_ns, "last_commit_ns": st.last_commit_ns,
                            "first_batch_messages": st.first_batch}, len(msgs), t0_ns)
    finally:
        node.stop()
        broker.stop()


def run_mosquitto_sub(root: Path, msgs: list[Message]) -> Timing:
    """The C client drains the queue; -C N makes it exit after the N-th message.

    Its start-up (spawn, connect) is measured the same way as the node's is left out of `steady`:
    a first run takes one message (`-C 1`: nearly all start-up), the second the rest of the same
    session; steady = (N - 1) / (second - first)."""
    broker = queued_broker(root, "benchsub", ["application/#"], msgs)

    def drain(k: int) -> float:
        t = time.perf_counter()
        subprocess.run(sub_cmd(broker, "-c", "-i", "benchsub", "-t", "application/#", "-C", str(k)),
                       stdout=subprocess.DEVNULL, check=True, timeout=TIMEOUT_S)
        return time.perf_counter() - t

    try:
        t1 = drain(1)
        t_rest = drain(len(msgs) - 1)
        return Timing(t1 + t_rest, (len(msgs) - 1) / max(t_rest - t1, 1e-9), t1)
    finally:
        broker.stop()


def run_paho(root: Path, msgs: list[Message]) -> Timing:
    """paho-mqtt as the node uses it (persistent session, manual ack) with nothing behind it."""
    broker = queued_broker(root, "benchpaho", NODE_TOPICS, msgs)
    got, done = [0], threading.Event()

    def on_message(c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        c.ack(m.mid, m.qos)
        got[0] += 1
        if got[0] >= len(msgs):
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="benchpaho", clean_session=False, manual_ack=True)
    c.on_message = on_message
    try:
        t0 = time.perf_counter()
        c.connect(broker.host, broker.port)
        c.loop_start()
        if not done.wait(TIMEOUT_S):
            raise SystemExit(f"paho received {got[0]} of {len(msgs)}")
        return timing(time.perf_counter() - t0, len(msgs))
    finally:
        c.loop_stop()
        broker.stop()


def c_publishers(broker: Mosquitto, root: Path, msgs: list[Message]) -> list[subprocess.Popen[bytes]]:
    """One `mosquitto_pub -l -q 1` (the C client) per topic, each fed its messages as lines.

    A C publisher per device keeps the publishing side far faster than either subscriber, so
    the run measures the subscribers, not the publisher. ChirpStack JSON is one line per event.
    """
    by_topic: dict[str, list[bytes]] = {}
    for m in msgs:
        if b"\n" in m.payload:
            raise SystemExit("a payload holds a newline; mosquitto_pub -l sends one message per line")
        by_topic.setdefault(m.topic, []).append(m.payload)
    procs = []
    for i, (topic, payloads) in enumerate(by_topic.items()):
        path = root / f"pub-{i}.lines"
        path.write_bytes(b"\n".join(payloads) + b"\n")
        with path.open("rb") as stdin:
            procs.append(subprocess.Popen([MOSQUITTO_PUB, "-h", broker.host, "-p", str(broker.port), "-q", "1",
                                           "-l", "-t", topic], stdin=stdin))
    return procs


def run_live(root: Path, msgs: list[Message]) -> tuple[Timing, Timing]:
    """The headline: node process and mosquitto_sub subscribed to the same broker while C
    publishers send the same messages at full speed; each is timed to its N-th message."""
    n = len(msgs)
    broker = queued_broker(root, "", [], msgs)
    try:
        with node_process(root, broker) as (count, connected, _):
            wait_count(lambda: int(connected()), 1, time.perf_counter(), 0.1)
            sub = subprocess.Popen(sub_cmd(broker, "-t", "application/#", "-C", str(n)), stdout=subprocess.DEVNULL)
            time.sleep(1)  # both subscriptions in place
            t0 = time.perf_counter()
            pubs = c_publishers(broker, root, msgs)
            sub.wait(timeout=TIMEOUT_S)
            t_sub = time.perf_counter() - t0
            t_node = wait_count(count, n, t0, 0.02).seconds
            for p in pubs:
                if p.wait(timeout=60) != 0:
                    raise SystemExit(f"mosquitto_pub exited with {p.returncode}")
        return timing(t_node, n), timing(t_sub, n)
    finally:
        broker.stop()


def machine() -> dict[str, str]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    out = subprocess.run([MOSQUITTO_SUB, "--help"], check=False, capture_output=True, text=True).stdout
    mosq = next((ln.rstrip(".") for ln in out.splitlines() if " version " in ln), "mosquitto_sub, version unknown")
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(), "mosquitto": mosq}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--messages", type=int, default=50_000, help="messages per measurement")
    ap.add_argument("--repeat", type=int, default=3, help="measurements of each; medians are shown")
    ap.add_argument("--live", action="store_true", help="also run the live-streaming variant")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ap.add_argument("--only", action="store_true", help="run only the node process and mosquitto_sub (for quick iteration)")
    args = ap.parse_args()
    n = len(msgs := build_messages(args.messages))
    runs: dict[str, Callable[[Path, list[Message]], Timing]] = {
        "mosquitto_sub": run_mosquitto_sub, "greennanny (process)": run_node_process,
        "greennanny (in-process)": run_node_inprocess, "paho alone (reference)": run_paho}
    if args.only:
        runs = {k: v for k, v in runs.items() if k in ("mosquitto_sub", "greennanny (process)")}
    got: dict[str, list[Timing]] = {k: [] for k in [*runs, *(["live greennanny", "live mosquitto_sub"] * args.live)]}
    for rep in range(args.repeat):  # interleaved, so drift in the machine's load hits all alike
        for name, fn in runs.items():
            with tempfile.TemporaryDirectory(prefix="gn-bench-") as tmp:
                got[name].append(fn(Path(tmp), msgs))
            print(f"  rep {rep + 1}: {name:<24} {n / got[name][-1].seconds:9,.0f} msgs/s", file=sys.stderr)
        if args.live:
            with tempfile.TemporaryDirectory(prefix="gn-bench-") as tmp:
                for name, t in zip(("live greennanny", "live mosquitto_sub"), run_live(Path(tmp), msgs)):
                    got[name].append(t)
    med = {k: statistics.median(n / t.seconds for t in v) for k, v in got.items()}
    steady = {k: statistics.median(t.steady_msgs_per_s for t in v) for k, v in got.items()}
    start = {k: statistics.median(t.start_s for t in v) for k, v in got.items()}
    info = machine()
    print(f"\ningest: {n:,} ChirpStack v4 up events (Milesight EM300-TH, EM500-CO2) at QoS 1, median of {args.repeat}")
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['mosquitto']}")
    print(f"{'subscriber':<26} {'msgs/s':>9} {'ratio':>6} {'steady':>9} {'ratio':>6} {'start s':>8}")
    for k, rate in med.items():
        base = "live mosquitto_sub" if k.startswith("live") else "mosquitto_sub"
        print(f"{k:<26} {rate:9,.0f} {rate / med[base]:6.2f} {steady[k]:9,.0f} {steady[k] / steady[base]:6.2f}"
              f" {start[k]:8.2f}")
    print("msgs/s: subscriber start (queued) or first publish (live) to the N-th message committed or received;"
          " steady: from the first message committed (received) to the N-th, so without the start-up;"
          " start s: subscriber start to its first message; ratio: to mosquitto_sub of the same variant")
    # The headline is the rate a running node commits at (a throughput); the start-up, a one-off
    # latency after each restart, is its own figure beside it.
    ratio = steady["greennanny (process)"] / steady["mosquitto_sub"]
    print(f"headline (queued, node as its own process, steady): greennanny/mosquitto_sub = {ratio:.2f};"
          f" node start-up {start['greennanny (process)']:.2f} s; including it"
          f" {med['greennanny (process)'] / med['mosquitto_sub']:.2f}")
    if args.json:
        print(json.dumps({
            "messages": n, "greennanny_msgs_per_s": round(steady["greennanny (process)"]),
            "mosquitto_sub_msgs_per_s": round(steady["mosquitto_sub"]), "ratio": round(ratio, 3),
            "ratio_including_start": round(med["greennanny (process)"] / med["mosquitto_sub"], 3),
            "node_start_s": round(start["greennanny (process)"], 2),
            "repeats": args.repeat, "variant": "queued, node as separate process, steady",
            "msgs_per_s": {k: round(v) for k, v in med.items()},
            "steady_msgs_per_s": {k: round(v) for k, v in steady.items()}, "machine": info}))


if __name__ == "__main__":
    main()
