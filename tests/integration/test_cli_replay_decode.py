"""`greennanny replay` and `greennanny decode` as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from greennanny.config import config_from_dict
from greennanny.runtime.node import Node

pytestmark = pytest.mark.integration


def gn(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "greennanny.cli.main", *args], input=stdin,
                          capture_output=True, text=True, timeout=300, check=False)


def test_replay_of_a_climate_csv_arrives_as_json_messages(mosquitto, tmp_path):
    csv = tmp_path / "climate.csv"
    rows = ["time,house,T,RH", *[f"2024-11-03 00:{m:02d}:00,h1,{70 + m / 10:.1f},{60 + m}" for m in range(0, 60, 5)],
            "2024-11-03 01:00:00,h1,72.0,M1", "2024-11-03 01:00:00,h1,71.0,70"]  # fall-back hour, twice
    csv.write_text("\n".join(rows) + "\n")
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path / "n")}, "mqtt": {"url": mosquitto.url},
                            "pipeline": {"mode": "backfill"}}, base_dir=tmp_path)
    node = Node(cfg)
    node.start(forecasts=False)
    try:
        node.mqtt.wait_connected(10)
        r = gn("replay", str(csv), "--broker", mosquitto.url, "--time-col", "time", "--tz", "America/New_York",
               "--zone-col", "house", "--site", "osu", "--map", "T=air_temperature:degF",
               "--map", "RH=relative_humidity")
        assert r.returncode == 0, r.stderr
        assert "published 14 messages, 14 acknowledged" in r.stdout
        end = time.monotonic() + 20
        while node.stats.messages < 14 and time.monotonic() < end:
            time.sleep(0.1)
        temps = next(s for s in node.store.series(quantity="air_temperature"))
        assert (temps.key.site, temps.key.zone, temps.points) == ("osu", "h1", 14)
        # Both 01:00 local readings kept: 05:00Z (EDT) and 06:00Z (EST); degF converted.
        df = node.store.query(temps.id, None, None)
        assert [round(v, 2) for v in df["value"].tail(2)] == [22.22, 21.67]
        assert (int(df["ts"].iloc[-1]) - int(df["ts"].iloc[-2])) == 3600 * 10**9
    finally:
        node.stop()


def test_replay_rejects_a_bad_speed_with_a_clear_error(tmp_path, shared_dir):
    r = gn("replay", str(shared_dir / "data" / "ssi2026_chirpstack_lorawan_events.csv.gz"), "--speed", "fast",
           "--broker", "mqtt://127.0.0.1:1")
    assert r.returncode == 2 and "--speed 'fast'" in r.stderr


def test_decode_cli_prints_object_and_points_for_a_milesight_frame():
    r = gn("decode", "--codec", "milesight", "--model", "EM320-TH", "01755C0367CCFF046865")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["object"] == {"battery": 92, "temperature": -5.2, "humidity": 50.5}
    assert {(p["quantity"], p["value"], p["unit"]) for p in out["points"]} == {
        ("battery", 92.0, "%"), ("air_temperature", -5.2, "degC"), ("relative_humidity", 50.5, "%")}


def test_decode_cli_names_the_byte_offset_of_a_short_frame():
    r = gn("decode", "--codec", "milesight", "--model", "EM300-TH", "01755C036734")
    assert r.returncode == 1 and "offset 5" in r.stderr


def test_decode_cli_asks_for_the_model_a_milesight_frame_needs():
    r = gn("decode", "--codec", "milesight", "01755C0367CCFF046865")
    assert r.returncode == 2 and "--codec milesight needs --model" in " ".join(r.stderr.split()), r.stderr


def test_decode_cli_says_how_to_decode_a_device_it_cannot_name():
    """Offline there is no registry: an up event of a device whose profile matches no shipped
    field map must say which options decode it, not only that the device is unregistered."""
    ev = json.dumps({"deviceInfo": {"devEui": "0101010101010101", "deviceProfileName": "no such profile"},
                     "fPort": 85, "data": "AXVcA2fM/w=="})
    r = gn("decode", "--format", "chirpstack-v4", stdin=ev)
    said = " ".join(r.stderr.split())  # rich wraps the message at the terminal width
    assert r.returncode == 2, r.stderr
    assert "0101010101010101" in said and "--codec milesight --model MODEL" in said
    r = gn("decode", "--format", "chirpstack-v4", "--codec", "milesight", "--model", "EM300-TH", stdin=ev)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outcome"] == "stored"


def test_decode_cli_reads_a_chirpstack_event_from_stdin(shared_dir):
    import pandas as pd

    df = pd.read_csv(shared_dir / "data" / "ssi2026_chirpstack_lorawan_events.csv.gz", nrows=400)
    ev = df[df["deviceInfo.devEui"] == "7894e80000027b84"]["event_json"].iloc[0]
    r = gn("decode", "--format", "chirpstack-v4", stdin=ev)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["outcome"] == "stored"
    assert {p["quantity"]: p["value"] for p in out["points"]} == {"air_temperature": -4.0,
                                                                    "relative_humidity": 64.0}


def test_decode_cli_line_protocol_keeps_the_good_line_and_names_the_bad_one():
    body = ("climate,device=p1 air_temperature=21.5,relative_humidity=60 1700000000000000001\n"
            "bad line here\n")
    r = gn("decode", "--format", "line-protocol", stdin=body)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {(p["quantity"], p["value"], p["ts"]) for p in out["points"]} == {
        ("air_temperature", 21.5, "2023-11-14T22:13:20.000000001Z"),
        ("relative_humidity", 60.0, "2023-11-14T22:13:20.000000001Z")}
    assert [x["detail"].split(":")[0] for x in out["rejected"]] == ["line 2"]


def test_decode_cli_senml_resolves_base_fields():
    pack = json.dumps([{"bn": "urn:dev:ow:10e2073a01080063:", "bt": 1.7e9, "bu": "Cel", "n": "temp", "v": 23.1},
                       {"n": "temp", "t": 60, "v": 23.4}])
    r = gn("decode", "--format", "senml", stdin=pack)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [(p["quantity"], p["value"], p["ts"]) for p in out["points"]] == [
        ("air_temperature", 23.1, "2023-11-14T22:13:20Z"), ("air_temperature", 23.4, "2023-11-14T22:14:20Z")]
