"""`greennanny import`, `replay`, `decode`, `deadletters`: data in, data checked, data kept."""

from __future__ import annotations

import base64
import binascii
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import typer

from greennanny.cli.backend import open_backend
from greennanny.cli.common import ConfigOpt, ViaOpt, console, friendly, print_json, progress_bar, resolve_config
from greennanny.errors import ConfigError, DecodeError, UnknownDevice
from greennanny.model import QUANTITIES, Batch


def build_spec(file: Path, preset: str | None, time_col: str | None, tz: str | None, zone_col: str | None,
               zone: str | None, site: str | None, maps: list[str]) -> Any:
    from greennanny.ingest.csv_import import PRESETS, ColumnMap, CsvImportSpec

    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"--preset {preset!r} unknown; known: {', '.join(sorted(PRESETS))}")
        spec = PRESETS[preset]
        return spec if not site else CsvImportSpec(**{**spec.__dict__, "site": site})
    if not time_col or not tz or not maps:
        raise ConfigError("without --preset, give --time-col, --tz and at least one --map COLUMN=QUANTITY[:UNIT]")
    cols = []
    for m in maps:
        if "=" not in m:
            raise ConfigError(f"--map {m!r} must be COLUMN=QUANTITY[:UNIT]")
        col, rhs = m.rsplit("=", 1)
        q, _, unit = rhs.partition(":")
        cols.append(ColumnMap(col, q, unit or None))
    return CsvImportSpec(time_col=time_col, tz=tz, columns=cols, site=site or "greenhouse", zone_col=zone_col,
                         zone=zone or (None if zone_col else "default"))


# The column mapping of a climate CSV, shared by `import` and `replay`.
PresetOpt = typer.Option(None, help="Known CSV layout: agc2018, osu2024.")
TimeColOpt = typer.Option(None, help="CSV column with local wall-clock time.")
TzOpt = typer.Option(None, help="IANA time zone of that clock, e.g. Europe/Amsterdam.")
ZoneColOpt = typer.Option(None, help="CSV column naming the zone/compartment of each row.")
ZoneOpt = typer.Option(None, help="Zone when there is no zone column.")
SiteOpt = typer.Option(None, help="Site name.")
MapOpt = typer.Option([], "--map", help="COLUMN=QUANTITY[:UNIT], repeatable; UNIT degF or K is converted to degC.")


def import_cmd(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Climate-computer CSV export (.csv or .csv.gz)."),
               preset: str = PresetOpt, time_col: str = TimeColOpt, tz: str = TzOpt, zone_col: str = ZoneColOpt,
               zone: str = ZoneOpt, site: str = SiteOpt, map_: list[str] = MapOpt,
               as_json: bool = typer.Option(False, "--json", help="Print the import summary as JSON."),
               config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Import a climate CSV: time zone, DST fall-back by row order, unit conversion, missing markers."""
    friendly(_import)(file, build_spec(file, preset, time_col, tz, zone_col, zone, site, map_), as_json, config, via)


def _import(file: Path, spec: Any, as_json: bool, config: Path | None, via: str) -> None:
    from greennanny.ingest.csv_import import read_climate_csv

    batch, stats = read_climate_csv(file, spec)
    written = replaced = 0
    with open_backend(resolve_config(config), prefer=via) as b, progress_bar(remaining=True, transient=False) as bar:
        task = bar.add_task(f"import via {b.via}", total=len(batch))
        for chunk in chunks(batch, 100_000):
            res = b.write_batch(chunk)
            written += res["written"]
            replaced += res["replaced"]
            bar.advance(task, len(chunk))
    summary = {"file": str(file), "rows": stats.rows, "points_stored": written, "replaced": replaced,
               "cells_missing": stats.cells_missing, "duplicate_instants": stats.duplicate_instants,
               "ambiguous_resolved": stats.ambiguous_resolved, "flagged": stats.flagged, "via": b.via,
               "series": len(batch.keys)}
    if as_json:
        print_json(summary)
    else:
        console.print(summary)


def chunks(batch: Batch, size: int) -> list[Batch]:
    out = []
    for lo in range(0, len(batch), size):
        sl = slice(lo, lo + size)
        reasons = {r - lo: t for r, t in batch.reasons.items() if lo <= r < lo + size}
        out.append(Batch(batch.keys, batch.key_index[sl], batch.ts_ns[sl], batch.value[sl], batch.quality[sl], reasons))
    return out


def replay_cmd(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="ChirpStack event archive or climate CSV."),
               broker: str = typer.Option(None, help="Broker URL (default: mqtt.url of the config)."),
               speed: str = typer.Option("max", help="Speed-up: 1 = real time, 60 = a minute per second, max = as fast as possible."),
               preset: str = PresetOpt, time_col: str = TimeColOpt, tz: str = TzOpt, zone_col: str = ZoneColOpt,
               zone: str = ZoneOpt, site: str = SiteOpt, map_: list[str] = MapOpt,
               limit: int = typer.Option(0, help="Publish only the first N messages (0 = all)."),
               config: Path = ConfigOpt) -> None:
    """Publish a ChirpStack archive (as its events) or a climate CSV (as JSON messages) at QoS 1."""
    friendly(_replay)(file, broker, speed, limit, config,
                      lambda: build_spec(file, preset, time_col, tz, zone_col, zone, site, map_))


def _replay(file: Path, broker: str | None, speed: str, limit: int, config: Path | None, spec: Any) -> None:
    from greennanny.ingest import replay

    cfg = resolve_config(config)
    url = broker or cfg.mqtt.url
    if speed != "max":
        try:
            s: float | None = float(speed)
        except ValueError:
            raise ConfigError(f"--speed {speed!r} must be a number (1 = real time) or max") from None
    else:
        s = None
    if replay.is_chirpstack_archive(file):
        msgs = replay.chirpstack_archive_messages(file)
    else:
        from greennanny.ingest.csv_import import read_climate_csv

        msgs = replay.batch_messages(read_climate_csv(file, spec())[0])
    if limit:
        msgs = msgs[:limit]
    with progress_bar(remaining=True, transient=False) as bar:
        task = bar.add_task(f"publish to {url}", total=len(msgs))
        acked = replay.publish(url, msgs, speed=s, progress=lambda n: bar.advance(task, n))
    console.print(f"published {len(msgs)} messages, {acked} acknowledged by the broker")


FORMAT_TOPICS = {  # a plausible topic per envelope, when --topic is not given
    "chirpstack-v4": "application/app/device/{eui}/event/up",
    "chirpstack-v3": "application/1/device/{eui}/event/up",
    "ttn-v3": "v3/app@ttn/devices/device/up",
    "json": "greennanny/site/zone/device",
    "line-protocol": "greennanny/lp",
    "senml": "greennanny/senml/site/zone",
}


def decode_cmd(payload: str = typer.Argument(None, help="Hex or base64 payload (for --codec without --format)."),
               codec: str = typer.Option(None, help="Payload codec, e.g. milesight."),
               model: str = typer.Option(None, help="Device model for the codec, e.g. AM307."),
               field_map: str = typer.Option(None, help="With --format: map the server-decoded object by this field map."),
               fmt: str = typer.Option(None, "--format", help="Envelope of a message read from stdin: "
                                       + ", ".join(FORMAT_TOPICS) + "."),
               topic: str = typer.Option(None, help="Topic for --format (default: a plausible one).")) -> None:
    """Decode one payload (or, with --format, one whole message from stdin) offline; print JSON."""
    friendly(_decode)(payload, codec, model, field_map, fmt, topic)


def _decode(payload: str | None, codec: str | None, model: str | None, field_map: str | None, fmt: str | None,
            topic: str | None) -> None:
    from greennanny.runtime.node import codecs

    if fmt:
        print_json(_decode_envelope(fmt, sys.stdin.buffer.read(), topic, codec or "", model or "", field_map or ""))
        return
    if codec:
        if payload is None:
            raise ConfigError("give the payload as hex or base64")
        dec = codecs().get(codec)
        if dec is None:
            raise ConfigError(f"--codec {codec!r} unknown; known: {', '.join(codecs())}")
        if getattr(dec, "needs_model", False) and not model:
            raise ConfigError(f"--codec {codec} needs --model (the bytes alone are ambiguous), e.g. --model EM300-TH")
        out = dec.decode(_bytes(payload), model=model)
        print_json({"object": out.object, "points": [_reading(r) for r in out.readings], "unmapped": out.unmapped})
        return
    raise ConfigError("give --codec (with a payload) or --format (message on stdin)")


def _decode_envelope(fmt: str, raw: bytes, topic: str | None, codec: str, model: str, field_map: str) -> dict[str, Any]:
    """Run one message through the same handler the node uses, with a one-device registry.

    The device is the one the message names; how its payload decodes comes from --codec/--model or
    --field-map, else (ChirpStack) from the device-profile name when a shipped field map fits.
    """
    from greennanny.ingest.field_maps import PROFILE_FIELD_MAPS
    from greennanny.ingest.registry import build_handlers
    from greennanny.model import Uplink
    from greennanny.runtime.node import codecs
    from greennanny.store.base import DeviceRecord

    if fmt not in FORMAT_TOPICS:
        raise ConfigError(f"--format {fmt!r} unknown; known: {', '.join(FORMAT_TOPICS)}")
    fmap = field_map
    if not codec and not fmap:
        try:
            profile = json.loads(raw).get("deviceInfo", {}).get("deviceProfileName", "")
        except (ValueError, AttributeError):
            profile = ""
        fmap = PROFILE_FIELD_MAPS.get(profile, "")

    def lookup(eui: str) -> DeviceRecord | None:
        return DeviceRecord(eui, codec, model, fmap, "site", "zone", "", "decode") if (codec or fmap) else None

    handlers = build_handlers(lookup, codecs(), "site")
    handler = handlers.get(fmt.replace("-", "_"))
    if handler is None:
        raise ConfigError(f"--format {fmt!r} is not available in this build")
    eui = "0000000000000000"
    try:
        body = json.loads(raw)
        eui = str(body.get("deviceInfo", {}).get("devEui") or eui).lower()
    except (ValueError, AttributeError):
        pass
    try:
        h = handler.handle(Uplink(topic or FORMAT_TOPICS[fmt].format(eui=eui), raw, 0))
    except UnknownDevice as exc:  # offline there is no registry: say how to name the decoding instead
        raise ConfigError(f"{exc}; offline, say how its payload decodes: --codec milesight --model MODEL, or "
                          f"--field-map NAME for a network-server-decoded object") from None
    points = [_reading(r, h.ts_ns) for r in h.readings]
    points += [{**_reading(p, h.ts_ns), "series": str(p.key)} for p in h.points]
    return {"outcome": h.outcome.value, "kind": h.kind, "device": h.device, "points": points,
            "health": [_reading(r, h.ts_ns) for r in h.health], "unmapped": h.unmapped, "detail": h.detail,
            "rejected": [{"reason": r, "detail": d} for _, r, d in h.rejected],
            "events": [{"kind": k, "detail": d} for k, d in h.events]}


def _bytes(text: str) -> bytes:
    t = text.strip().replace(" ", "")
    try:
        return bytes.fromhex(t)
    except ValueError:
        pass
    try:
        return base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError(f"payload {text[:40]!r} is neither hex nor base64", field="payload") from None


def _reading(r: Any, default_ts: int | None = None) -> dict[str, Any]:
    """A Reading or a keyed Point as JSON."""
    from greennanny.api.app import iso

    quantity = r.quantity if hasattr(r, "quantity") else r.key.quantity
    ts = r.ts_ns if r.ts_ns else default_ts
    value = None if not np.isfinite(r.value) else r.value
    return {"quantity": quantity, "value": value, "unit": QUANTITIES[quantity].unit,
            "ts": iso(ts) if ts else None, "quality": r.quality.name.lower(), "reason": r.reason,
            **({"channel": r.channel} if getattr(r, "channel", "") else {})}


deadletters_app = typer.Typer(help="Messages that could not be decoded, kept with their reason.", no_args_is_help=True)


@deadletters_app.command("list")
@friendly
def deadletters_list(reason: str = typer.Option(None, help="Only this reason, e.g. unknown_device."),
                     limit: int = typer.Option(20, help="Newest N dead letters."),
                     as_json: bool = typer.Option(False, "--json", help="Print JSON (the API's body)."), config: Path = ConfigOpt,
                     via: str = ViaOpt) -> None:
    """Dead letters grouped by reason, newest first, with topic, raw bytes and reason."""
    with open_backend(resolve_config(config), prefer=via) as b:
        body = b.get("/deadletters", reason=reason, limit=limit)
    if as_json:
        print_json(body)
        return
    console.print("by reason (all kept): " + json.dumps(body["counts"]))
    for r in body["items"]:
        console.print(f"{r['received']}  {r['reason']:<16} {r['topic']}\n    {r['detail']}\n    raw: {r['payload_text'][:160]}")


@deadletters_app.command("replay")
@friendly
def deadletters_replay(reason: str = typer.Option(None, help="Only dead letters with this reason."),
                       config: Path = ConfigOpt, via: str = ViaOpt) -> None:
    """Decode kept dead letters again with the current registry and config (after a fix)."""
    with open_backend(resolve_config(config), prefer=via) as b:
        res = b.post("/deadletters/replay" + (f"?reason={reason}" if reason else ""))
    console.print(f"replayed via {b.via}: " + json.dumps(res), soft_wrap=True)
