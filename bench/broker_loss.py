"""How much a broker SIGKILL loses: the loss window of Mosquitto's persistence, measured.

Scenario (the worst case for an edge node): the node is away, so the broker holds QoS 1
messages for its persistent session; a publisher streams at a steady rate and every message is
acknowledged by the broker (PUBACK); the broker is killed with SIGKILL (power loss), restarted
on the same data directory, and the node drains what survived. Messages acknowledged by the
broker after its last autosave are lost: the loss window is (published - stored) / rate.

    .venv/bin/python bench/broker_loss.py [--rate 200] [--seconds 20] [--autosave 5] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path

from greennanny.config import config_from_dict
from greennanny.ingest.replay import Message, publish
from greennanny.runtime.broker import Mosquitto, MosquittoConfig
from greennanny.runtime.node import Node


def one_run(rate: int, seconds: float, autosave: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        mq = Mosquitto(MosquittoConfig(data_dir=d / "mq", autosave_interval_s=autosave))
        mq.start()
        cfg = config_from_dict({"node": {"data_dir": str(d / "node")}, "mqtt": {"url": mq.url},
                                "pipeline": {"mode": "backfill"}, "forecast": {"enabled": False}}, base_dir=d)
        node = Node(cfg)
        node.start(forecasts=False)
        node.mqtt.wait_connected(10)
        node.stop()  # the session exists; the node is away
        n = int(rate * seconds)
        t0 = 1_750_000_000 * 10**9
        msgs = [Message("greennanny/gh/h1/p", f'{{"co2": {400 + i % 500}, "ts": {t0 + i * 10**9}}}'.encode(),
                        t0 + i * 10**9 // rate) for i in range(n)]
        acked = publish(mq.url, msgs, speed=1.0)
        assert mq.pid is not None
        import os

        os.kill(mq.pid, signal.SIGKILL)
        time.sleep(0.5)
        mq.stop(graceful=False)
        mq.start()
        node = Node(cfg)
        node.start(forecasts=False)
        node.mqtt.wait_connected(10)
        last, stable = -1, 0
        while stable < 6:  # drained when nothing new arrives for 3 s
            time.sleep(0.5)
            stable = stable + 1 if node.stats.messages == last else 0
            last = node.stats.messages
        stored = node.store.count_points()
        node.stop()
        mq.stop()
        lost = acked - stored
        return {"published_acked": acked, "stored": stored, "lost": lost, "loss_window_s": lost / rate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=200, help="messages per second")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--autosave", type=int, default=5, help="Mosquitto autosave_interval in seconds")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    runs = [one_run(a.rate, a.seconds, a.autosave) for _ in range(a.repeat)]
    for i, r in enumerate(runs, 1):
        print(f"run {i}: acked {r['published_acked']}, stored {r['stored']}, lost {r['lost']} "
              f"= {r['loss_window_s']:.2f} s of traffic")
    med = statistics.median(r["loss_window_s"] for r in runs)
    print(f"median loss window after SIGKILL: {med:.2f} s (autosave_interval {a.autosave} s, {a.rate} msg/s)")
    if a.json:
        print(json.dumps({"rate": a.rate, "autosave_s": a.autosave, "runs": runs, "median_loss_window_s": med}))


if __name__ == "__main__":
    main()
