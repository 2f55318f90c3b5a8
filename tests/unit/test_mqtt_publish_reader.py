"""`BufferedClient._gn_publishes` on bytes cut at every position: whole packets only, in order.

The integration test (tests/integration/test_mqtt_fast_path.py) shows it on a real broker; this one
makes the read end inside every part of a packet (fixed header, remaining length, topic, packet
id, payload), which a broker burst hits only by chance.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt

from greennanny.ingest.mqtt import BufferedClient


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: str, payload: bytes, qos: int, mid: int = 0, retain: bool = False) -> bytes:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + (mid.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | (qos << 1) | int(retain)]) + _varint(len(body)) + body


def _reader() -> tuple[BufferedClient, list[tuple[str, bytes, int, int]]]:
    c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t", clean_session=False, manual_ack=True)
    got: list[tuple[str, bytes, int, int]] = []
    c.on_publishes = got.extend
    return c, got


MESSAGES = [("a/b", b"", 0, 0), ("zone-é/1", b"x" * 130, 1, 7), ("t", bytes(range(256)) * 70, 1, 65535),
            ("g/h", b"\x00\x01", 0, 0), ("cs/up", b"{}" * 9000, 1, 1)]
PACKETS = [publish(t, p, q, m) for t, p, q, m in MESSAGES]
STREAM = b"".join(PACKETS)
ENDS = [sum(len(p) for p in PACKETS[:i + 1]) for i in range(len(PACKETS))]


def test_every_cut_position_yields_exactly_the_whole_packets_before_it() -> None:
    for cut in range(len(STREAM) + 1):
        c, got = _reader()
        c._gn_buf, c._gn_pos = STREAM[:cut], 0
        c._gn_publishes()
        whole = sum(1 for e in ENDS if e <= cut)
        assert got == MESSAGES[:whole], f"cut at {cut}"
        assert c._gn_pos == (ENDS[whole - 1] if whole else 0), f"cut at {cut}"
        assert c.gn_fast_packets == whole


def test_stops_at_a_packet_it_leaves_to_paho() -> None:
    pingresp, qos2 = b"\xd0\x00", publish("q/2", b"exactly once", 2, 9)
    for other in (pingresp, qos2):
        c, got = _reader()
        c._gn_buf = PACKETS[0] + PACKETS[1] + other + PACKETS[3]
        c._gn_publishes()
        assert got == MESSAGES[:2]
        assert c._gn_pos == len(PACKETS[0]) + len(PACKETS[1])  # paho reads `other` next, then we go on


def test_retain_flag_and_a_reader_set_off_leave_everything_to_paho() -> None:
    c, got = _reader()
    c._gn_buf = publish("r", b"1", 1, 3, retain=True)
    c._gn_publishes()
    assert got == [("r", b"1", 1, 3)]
    c2, _ = _reader()
    c2.on_publishes = None
    c2._gn_buf = STREAM
    c2._gn_publishes()
    assert c2._gn_pos == 0
