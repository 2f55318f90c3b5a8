"""Envelope handlers by config name (`mqtt.subscriptions[].format`).

A handler has `name` and `handle(Uplink) -> Handled`. Built-in handlers register here, under the
same name as their config value, so adding an envelope is one class and one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from greennanny.decoders.base import Decoder
from greennanny.store.base import DeviceRecord

if TYPE_CHECKING:
    from greennanny.config import Subscription

DeviceLookup = Callable[[str], DeviceRecord | None]


def build_handlers(devices: DeviceLookup, codecs: Mapping[str, Decoder], default_site: str) -> dict[str, Any]:
    from greennanny.ingest.chirpstack import ChirpstackV4
    from greennanny.ingest.json_topic import JsonTopic

    handlers: dict[str, Any] = {
        "chirpstack_v4": ChirpstackV4(devices, codecs, default_site),
        "json": JsonTopic(),
    }
    for name, factory in _optional():
        handlers[name] = factory(devices, codecs, default_site)
    return handlers


def subscription_handler(sub: Subscription, handlers: Mapping[str, Any], devices: DeviceLookup,
                         default_site: str) -> Any:
    """The handler of one subscription: its format's shared handler, or its own for a json template."""
    if not sub.template:
        return handlers[sub.format]
    from greennanny.ingest.json_topic import TemplateJsonTopic
    from greennanny.ingest.topic_template import TopicTemplate

    return TemplateJsonTopic(TopicTemplate.parse(sub.template), fields=sub.fields, zone=sub.zone,
                             aliases=sub.aliases, availability=sub.availability, devices=devices,
                             default_site=default_site)


def _optional() -> list[tuple[str, Callable[..., Any]]]:
    """Handlers whose modules may be absent in a trimmed build; each takes (devices, codecs, site)."""
    out: list[tuple[str, Callable[..., Any]]] = []
    try:
        from greennanny.ingest.chirpstack_v3 import ChirpstackV3

        out.append(("chirpstack_v3", ChirpstackV3))
    except ImportError:
        pass
    try:
        from greennanny.ingest.ttn_v3 import TtnV3

        out.append(("ttn_v3", TtnV3))
    except ImportError:
        pass
    try:
        from greennanny.ingest.line_protocol_topic import LineProtocolTopic

        out.append(("line_protocol", lambda d, c, s: LineProtocolTopic(s)))
    except ImportError:
        pass
    try:
        from greennanny.ingest.senml import SenmlTopic

        out.append(("senml", lambda d, c, s: SenmlTopic(s)))
    except ImportError:
        pass
    return out
