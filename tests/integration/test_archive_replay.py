"""The shared ChirpStack archive through a real Mosquitto: one outcome per event, pinned."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from greennanny.config import config_from_dict
from greennanny.ingest import replay
from greennanny.runtime.demo import ARCHIVE_FILE, archive_devices
from greennanny.runtime.node import Node

pytestmark = pytest.mark.integration
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "chirpstack_archive_outcomes.json"


def test_archive_replay_gives_every_event_exactly_one_pinned_outcome(mosquitto, shared_dir, tmp_path):
    archive = shared_dir / "data" / ARCHIVE_FILE
    pinned = json.loads(FIXTURE.read_text())
    cfg = config_from_dict({"node": {"data_dir": str(tmp_path / "node")}, "mqtt": {"url": mosquitto.url},
                            "pipeline": {"mode": "backfill"}, "forecast": {"enabled": False},
                            "devices": archive_devices(archive)}, base_dir=tmp_path)
    node = Node(cfg)
    node.start(forecasts=False)
    try:
        node.mqtt.wait_connected(10)
        msgs = replay.chirpstack_archive_messages(archive)
        assert len(msgs) == pinned["total"] == 14207
        assert replay.publish(mosquitto.url, msgs) == 14207
        end = time.monotonic() + 120
        while node.stats.messages < 14207 and time.monotonic() < end:
            time.sleep(0.2)
        time.sleep(0.5)  # nothing more may arrive: exactly one outcome per event
        detail = node.store.outcome_detail()
        assert sum(detail.values()) == 14207
        assert detail == pinned["outcomes"]
        # Each dead letter keeps its raw bytes and a reason naming what was missing.
        for dl in node.store.deadletters(limit=10):
            assert dl["payload"] and dl["reason"] == "codec_error" and "no decoded object" in dl["detail"]
        # Device 7894e80000027b84: frame-counter resets and duplicates, pinned.
        dev = pinned["device_7894e80000027b84"]
        events = [e for e in node.store.device_events() if e[1] == "7894e80000027b84"]
        assert sum(e[2] == "fcnt_reset" for e in events) == dev["fcnt_reset"]
        assert sum(e[2] == "log" and "UPLINK_F_CNT_RETRANSMISSION" in e[3] for e in events) == dev["log_events"]
        dups = node.store._cur().execute("SELECT count(*) FROM ledger WHERE outcome = 'duplicate' "
                                         "AND topic LIKE '%/7894e80000027b84/%'").fetchone()[0]
        assert dups == dev["duplicate"]
        # Status events give battery and link-margin series; every uplink gives radio health.
        assert {s.key.quantity for s in node.store.series()} >= {"battery", "link_margin", "rssi", "snr",
                                                                  "gateway_count"}
        # What was stored is real: RBS305 -4 degC at 2026-01-15T04:48:34.513Z for 7894e80000027b84.
        s = next(x for x in node.store.series(quantity="air_temperature") if x.key.device == "7894e80000027b84")
        df = node.store.query(s.id, None, None)
        # Column access: a row (df.iloc[0]) would upcast the int64 ns timestamp to float.
        assert (int(df["ts"].iloc[0]), float(df["value"].iloc[0])) == (1768452514513000000, -4.0)
    finally:
        node.stop()
