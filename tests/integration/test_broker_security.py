"""The node against a Mosquitto with a password file and a TLS listener signed by a CA that the
fixture makes: credentials and TLS work, wrong credentials are refused, no secret is logged."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from greennanny.config import config_from_dict
from greennanny.errors import BrokerError
from greennanny.runtime.broker import Mosquitto, MosquittoConfig, free_port
from greennanny.runtime.node import Node

pytestmark = pytest.mark.integration
PASSWORD = "s3cret-Greenhouse!"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def secure_broker(tmp_path):
    if not shutil.which("openssl") or not shutil.which("mosquitto_passwd"):
        pytest.skip("openssl or mosquitto_passwd missing")
    pki = tmp_path / "pki"
    pki.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=greennanny test CA", cwd=pki)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=pki)
    (pki / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=pki)
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "node", PASSWORD], check=True, capture_output=True)
    tls_port = free_port()
    cfg = MosquittoConfig(data_dir=tmp_path / "mq", password_file=pw, extra_lines=[
        f"listener {tls_port} 127.0.0.1", f"cafile {pki / 'ca.crt'}", f"certfile {pki / 'server.crt'}",
        f"keyfile {pki / 'server.key'}", "tls_version tlsv1.2"])
    with Mosquitto(cfg) as m:
        yield m, tls_port, pki / "ca.crt"


def node_cfg(tmp_path: Path, url: str, ca: Path | None, password: str) -> dict:
    (tmp_path / "mqtt_password").write_text(password + "\n")
    return {"node": {"data_dir": str(tmp_path / "node")}, "forecast": {"enabled": False},
            "pipeline": {"mode": "backfill", "batch_max_wait_ms": 50},
            "mqtt": {"url": url, "username": "node", "password_file": "mqtt_password",
                     "ca_file": str(ca) if ca else ""}}


def test_node_over_tls_with_credentials_stores_messages_and_logs_no_secret(secure_broker, tmp_path, caplog):
    _, tls_port, ca = secure_broker
    cfg = config_from_dict(node_cfg(tmp_path, f"mqtts://127.0.0.1:{tls_port}", ca, PASSWORD), base_dir=tmp_path)
    with caplog.at_level(logging.DEBUG):
        node = Node(cfg)
        node.start(forecasts=False)
        try:
            node.mqtt.wait_connected(15)
            import paho.mqtt.client as mqtt

            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
            pub.username_pw_set("node", PASSWORD)
            pub.tls_set(ca_certs=str(ca))
            pub.connect("127.0.0.1", tls_port)
            pub.loop_start()
            pub.publish("greennanny/gh/h1/p1", b'{"co2": 612, "ts": 1700000000}', qos=1).wait_for_publish(10)
            pub.loop_stop()
            pub.disconnect()
            end = time.monotonic() + 15
            while node.stats.points < 1 and time.monotonic() < end:
                time.sleep(0.05)
            assert node.stats.points == 1
        finally:
            node.stop()
    assert PASSWORD not in caplog.text


def test_wrong_password_is_refused_and_said_so(secure_broker, tmp_path, caplog):
    broker, _, _ = secure_broker
    cfg = config_from_dict(node_cfg(tmp_path, broker.url, None, "wrong"), base_dir=tmp_path)
    node = Node(cfg)
    with caplog.at_level(logging.ERROR, logger="greennanny.mqtt"):
        node.start(forecasts=False)
        try:
            with pytest.raises(BrokerError):
                node.mqtt.wait_connected(3)
        finally:
            node.stop()
    assert any("refused the connection" in r.getMessage() for r in caplog.records)
    assert "wrong" not in caplog.text


def test_tls_with_an_untrusted_ca_does_not_connect(secure_broker, tmp_path):
    _, tls_port, _ = secure_broker
    cfg = config_from_dict(node_cfg(tmp_path, f"mqtts://127.0.0.1:{tls_port}", None, PASSWORD), base_dir=tmp_path)
    node = Node(cfg)
    node.start(forecasts=False)
    try:
        with pytest.raises(BrokerError):
            node.mqtt.wait_connected(3)
    finally:
        node.stop()
