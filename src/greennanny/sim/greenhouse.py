"""A small simulated greenhouse whose sensors speak like real ones.

Two zones, each with a Milesight EM300-TH (temperature, humidity) and an EM500-CO2 (temperature,
humidity, CO2, pressure) and one light sensor (EM500-LGT illuminance), every 10 minutes, as
ChirpStack v4 `up` events with base64 Milesight payloads. Physics, roughly: temperature follows
the sun with a lag, relative humidity moves against temperature, plants draw CO2 down by day,
light is a clipped sine over the photoperiod. Deterministic for a seed. One unregistered device
and one truncated frame a day show dead letters at work.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import uuid
from dataclasses import dataclass

import numpy as np

from greennanny.ingest.replay import Message

APP_ID = "9a1b3c5d-0000-4000-8000-00000000c0de"
DAY_NS = 86_400 * 1_000_000_000


@dataclass(frozen=True)
class SimDevice:
    dev_eui: str
    model: str
    zone: str


DEVICES = [
    SimDevice("24e124136b310001", "EM300-TH", "house-1"),
    SimDevice("24e124126b310002", "EM500-CO2", "house-1"),
    SimDevice("24e124136b310003", "EM300-TH", "house-2"),
    SimDevice("24e124126b310004", "EM500-CO2", "house-2"),
]
UNKNOWN_EUI = "24e1241fffff0099"


def _temp(ch: int, t: float) -> bytes:
    return bytes([ch, 0x67]) + struct.pack("<h", round(t * 10))


def _hum(ch: int, h: float) -> bytes:
    return bytes([ch, 0x68, max(0, min(255, round(h * 2)))])


def frame(model: str, temp: float, hum: float, co2: float, battery: int = 95) -> bytes:
    """Milesight channel/type frame for the models the simulator uses."""
    if model == "EM300-TH":
        return bytes([0x01, 0x75, battery]) + _temp(0x03, temp) + _hum(0x04, hum)
    if model == "EM500-CO2":
        return (bytes([0x01, 0x75, battery]) + _temp(0x03, temp) + _hum(0x04, hum)
                + bytes([0x05, 0x7D]) + struct.pack("<H", round(co2))
                + bytes([0x06, 0x73]) + struct.pack("<H", 10130))
    raise ValueError(f"simulator has no frame for {model}")


def climate(t_ns: np.ndarray, zone_offset: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    hours = (t_ns % DAY_NS) / 3.6e12
    sun = np.clip(np.sin((hours - 6) / 14 * math.pi), 0, None)  # 06:00-20:00 light
    lagged = np.sin((hours - 9) / 24 * 2 * math.pi)
    temp = 20 + zone_offset + 5 * lagged + rng.normal(0, 0.2, t_ns.shape)
    hum = np.clip(75 - 12 * lagged + rng.normal(0, 1.0, t_ns.shape), 20, 100)
    co2 = 900 - 450 * sun + rng.normal(0, 15, t_ns.shape)
    return temp, hum, co2


def envelope(dev_eui: str, model: str, f_cnt: int, t_ns: int, data: bytes) -> bytes:
    secs, frac = divmod(t_ns, 1_000_000_000)
    import datetime as dt

    ts = dt.datetime.fromtimestamp(secs, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    body = {
        "deduplicationId": str(uuid.UUID(int=(int(dev_eui, 16) << 64) | f_cnt)),
        "time": f"{ts}.{frac // 1_000_000:03d}+00:00",
        "deviceInfo": {"applicationId": APP_ID, "applicationName": "simulated-greenhouse",
                       "deviceProfileName": f"Milesight {model}", "deviceName": f"{model} {dev_eui[-4:]}",
                       "devEui": dev_eui},
        "fCnt": f_cnt, "fPort": 85, "confirmed": False, "data": base64.b64encode(data).decode(),
        "rxInfo": [{"gatewayId": "0016c001ff10d3f6", "rssi": -70, "snr": 9.5}],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def simulate(start_ns: int, days: int, step_s: int = 600, seed: int = 7) -> list[Message]:
    """All messages of `days` days from `start_ns` (UTC), in time order."""
    rng = np.random.default_rng(seed)
    n = days * 86_400 // step_s
    t = start_ns + np.arange(n, dtype=np.int64) * step_s * 1_000_000_000
    msgs: list[Message] = []
    for di, dev in enumerate(DEVICES):
        temp, hum, co2 = climate(t, 1.5 if dev.zone == "house-2" else 0.0, rng)
        jitter = di * 7 * 1_000_000_000
        for i in range(n):
            ts = int(t[i]) + jitter
            payload = frame(dev.model, float(temp[i]), float(hum[i]), float(co2[i]))
            topic = f"application/{APP_ID}/device/{dev.dev_eui}/event/up"
            msgs.append(Message(topic, envelope(dev.dev_eui, dev.model, i, ts, payload), ts))
    for d in range(days):  # the faults a real network shows
        ts = start_ns + d * DAY_NS + 12 * 3_600 * 1_000_000_000
        bad = frame("EM300-TH", 21.0, 60.0, 0)[:-1]  # humidity channel cut short
        msgs.append(Message(f"application/{APP_ID}/device/{DEVICES[0].dev_eui}/event/up",
                            envelope(DEVICES[0].dev_eui, "EM300-TH", 100_000 + d, ts, bad), ts))
        msgs.append(Message(f"application/{APP_ID}/device/{UNKNOWN_EUI}/event/up",
                            envelope(UNKNOWN_EUI, "EM300-TH", d, ts, frame("EM300-TH", 22.0, 55.0, 0)), ts))
    msgs.sort(key=lambda m: m.t_ns)
    return msgs
