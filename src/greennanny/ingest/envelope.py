"""What an envelope handler reports for one message, and the topic matcher.

An envelope (ChirpStack v4 event, plain JSON topic, ...) knows where a payload came from and what
kind of event it is; it hands the payload to a decoder or a field map and says what happened in a
`Handled`. It raises `InputError` for anything the runtime must keep as a dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from greennanny.decoders.base import Reading
from greennanny.model import Outcome, Point


@dataclass(slots=True)
class Handled:
    outcome: Outcome
    kind: str
    site: str = ""
    zone: str = ""
    device: str = ""
    ts_ns: int = 0  # the message's own time (readings without a ts get this)
    readings: list[Reading] = field(default_factory=list)
    dedup_key: str = ""  # exact identity of the message (ChirpStack deduplicationId, or a hash)
    window_key: str = ""  # identity that only counts inside the dedup window (devEUI+fCnt+payload)
    unmapped: list[str] = field(default_factory=list)
    detail: str = ""
    # Envelopes whose one message carries several devices (line protocol, SenML) give points
    # with their full keys here; ts 0 in a Point means "the message's own time".
    points: list[Point] = field(default_factory=list)
    # Parts of the message that could not be used while the rest could (a bad line among good
    # ones): (raw fragment, reason, detail). Each is kept as a dead letter; the message's own
    # outcome reflects what was stored.
    rejected: list[tuple[bytes, str, str]] = field(default_factory=list)
    # Device-level events found while decoding (join, log, location): (kind, detail).
    events: list[tuple[str, str]] = field(default_factory=list)
    # Radio/link health of the device (RSSI, SNR, gateways): stored under the device's key but
    # not a measurement, so they never make an otherwise empty uplink count as `stored`.
    health: list[Reading] = field(default_factory=list)
    # LoRaWAN frame counter of an uplink (None for other envelopes): frame-counter resets.
    f_cnt: int | None = None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (+ one level, # the rest); a leading '/' is an empty first level."""
    f_parts = topic_filter.split("/")
    t_parts = topic.split("/")
    for i, f in enumerate(f_parts):
        if f == "#":
            return True
        if i >= len(t_parts):
            return False
        if f != "+" and f != t_parts[i]:
            return False
    return len(f_parts) == len(t_parts)
