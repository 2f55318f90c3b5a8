"""Replaying recorded traffic onto MQTT at QoS 1, at a chosen speed-up.

Two sources: the ChirpStack event archive (one complete event JSON per row, column `event_json`,
published to `application/<applicationId>/device/<devEui>/event/<kind>`), and a climate CSV
export, published as plain JSON messages on `greennanny/<site>/<zone>/<device>`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import paho.mqtt.client as mqtt
import pandas as pd

from greennanny.errors import BrokerError, ConfigError
from greennanny.model import Batch


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    t_ns: int  # when it happened, for pacing


def is_chirpstack_archive(path: Path) -> bool:
    head = pd.read_csv(path, nrows=0)
    return "event_json" in head.columns


def chirpstack_archive_messages(path: Path) -> list[Message]:
    df = pd.read_csv(path, usecols=["time", "event_kind", "deviceInfo.devEui", "event_json"])
    # as_unit("ns") first: pandas 3 may infer ms/us resolution, and int64 is then not nanoseconds.
    times = pd.to_datetime(df["time"], utc=True, format="ISO8601").dt.as_unit("ns").astype("int64").to_numpy()
    out = []
    for t, kind, eui, ev in zip(times, df["event_kind"], df["deviceInfo.devEui"], df["event_json"]):
        app = json.loads(ev)["deviceInfo"]["applicationId"]
        out.append(Message(f"application/{app}/device/{eui}/event/{kind}", ev.encode(), int(t)))
    return out


def batch_messages(batch: Batch, prefix: str = "greennanny") -> list[Message]:
    """One JSON message per (site, zone, device, instant) holding all its quantities."""
    if not len(batch):
        return []
    dev_of = [(k.site, k.zone, k.device) for k in batch.keys]
    dev_ids = {d: i for i, d in enumerate(dict.fromkeys(dev_of))}
    key_dev = np.array([dev_ids[d] for d in dev_of])[batch.key_index]
    order = np.lexsort((key_dev, batch.ts_ns))
    devs = list(dev_ids)
    out: list[Message] = []
    cur: tuple[int, int] | None = None
    body: dict[str, object] = {}
    for i in order:
        ident = (int(batch.ts_ns[i]), int(key_dev[i]))
        if ident != cur:
            if cur is not None:
                out.append(_json_message(prefix, devs[cur[1]], cur[0], body))
            cur, body = ident, {}
        body[batch.keys[int(batch.key_index[i])].quantity] = float(batch.value[i])
    if cur is not None:
        out.append(_json_message(prefix, devs[cur[1]], cur[0], body))
    return out


def _json_message(prefix: str, dev: tuple[str, str, str], ts_ns: int, body: dict[str, object]) -> Message:
    body = dict(body, ts=ts_ns)
    return Message(f"{prefix}/{dev[0]}/{dev[1]}/{dev[2]}", json.dumps(body, separators=(",", ":")).encode(), ts_ns)


def publisher(url: str, client_id: str = "greennanny-replay", username: str = "", password: str | None = None) -> mqtt.Client:
    u = urlparse(url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    if username:
        c.username_pw_set(username, password)
    if u.scheme == "mqtts":
        c.tls_set()
    c.max_inflight_messages_set(500)
    try:
        c.connect(u.hostname or "127.0.0.1", u.port or 1883, keepalive=30)
    except OSError as exc:
        raise BrokerError(f"cannot connect to {url}: {exc}") from exc
    c.loop_start()
    return c


def publish(url: str, messages: list[Message], *, speed: float | None = None, qos: int = 1,
            progress: Callable[[int], None] | None = None, timeout: float = 600) -> int:
    """Publish in order; `speed` None = as fast as possible, else the recorded pace divided by it.

    Returns the number of messages the broker acknowledged (PUBACK for QoS 1).
    """
    if speed is not None and speed <= 0:
        raise ConfigError(f"speed={speed} must be > 0 (or None for as fast as possible)")
    c = publisher(url)
    try:
        infos = []
        t0_wall = time.monotonic()
        t0 = messages[0].t_ns if messages else 0
        for i, m in enumerate(_paced(messages, speed, t0, t0_wall)):
            infos.append(c.publish(m.topic, m.payload, qos=qos))
            if progress and i % 200 == 199:
                progress(200)
        if progress:
            progress(len(messages) % 200)
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
        return sum(1 for info in infos if info.is_published())
    finally:
        c.loop_stop()
        c.disconnect()


def _paced(messages: list[Message], speed: float | None, t0: int, t0_wall: float) -> Iterator[Message]:
    for m in messages:
        if speed is not None:
            due = t0_wall + (m.t_ns - t0) / 1e9 / speed
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield m
