"""Fuzz every codec and envelope: random and mutated payloads must give points or our own error.

Targets are built from the registry (every envelope `build_handlers` knows, plus the Milesight
codec per model), seeded with the real messages of ../shared/vectors and the ChirpStack archive
when present. Mutations: bit flips, truncation, byte insertion and deletion, splicing two seeds,
and for JSON bodies, a value replaced by another JSON type. Anything but an `InputError` (our
DecodeError, UnknownDevice, ...) escaping a target is a bug; hypothesis shrinks it and prints it.

    .venv/bin/python bench/fuzz.py [--examples 100000] [--target NAME] [--json]

The test suite runs the same targets at 2,000 examples each (tests/unit/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greennanny.decoders.milesight import MODELS, MilesightDecoder
from greennanny.errors import InputError
from greennanny.ingest.registry import build_handlers
from greennanny.model import Uplink
from greennanny.store.base import DeviceRecord

SHARED = Path(__file__).resolve().parents[2] / "shared"


@dataclass
class Target:
    name: str
    seeds: list[bytes]
    call: Callable[[bytes], Any]


def _vectors(family: str) -> list[dict[str, Any]]:
    p = SHARED / "vectors" / f"{family}.json"
    return json.loads(p.read_text())["vectors"] if p.exists() else []


class _AnyDevice:
    """Registry that knows every device: fuzzing must reach the payload decoders, not stop at lookup."""

    def __init__(self) -> None:
        self.models = sorted(MODELS)
        self.store = None

    def __call__(self, eui: str) -> DeviceRecord:
        model = self.models[hash(eui) % len(self.models)]
        fmap = "rbs305-ath" if hash(eui) % 3 == 0 else ""
        return DeviceRecord(eui, "milesight", model, fmap, "s", "z", "", "fuzz")

    def clear(self) -> None:
        pass


def _topic_seeds(family: str, default_topic: str) -> list[tuple[str, bytes]]:
    out = []
    for v in _vectors(family):
        body = v.get("body")
        raw = json.dumps(body).encode() if body is not None else (v.get("body_raw") or "").encode()
        out.append((v.get("topic") or default_topic, raw))
    return out


def targets() -> list[Target]:
    dec = MilesightDecoder()
    frames = [bytes.fromhex(v["payload_hex"]) for v in _vectors("milesight")] or [bytes.fromhex("01755C03673401046865")]
    models = sorted(MODELS)
    # One codec, every model: the model is picked from the payload, deterministically.
    out = [Target("codec:milesight", frames, lambda b: dec.decode(b, model=models[sum(b[:4]) % len(models)]))]
    handlers = build_handlers(_AnyDevice(), {"milesight": dec}, "site")
    topics = {
        "chirpstack_v4": ("chirpstack_v4", "application/a/device/0101010101010101/event/up"),
        "chirpstack_v3": ("chirpstack_v3", "application/1/device/0101010101010101/event/up"),
        "ttn_v3": ("ttn_v3", "v3/app@ttn/devices/dev/up"),
        "json": ("", "greennanny/site/zone/device"),
        "line_protocol": ("line_protocol", "greennanny/lp"),
        "senml": ("senml", "greennanny/senml/site/zone"),
    }
    for name, handler in sorted(handlers.items()):
        family, topic = topics.get(name, ("", "x/y"))
        if name == "line_protocol":
            seeds = [(topic, (v.get("input") or "").encode()) for v in _vectors(family) if v.get("kind") == "decode"]
        elif name == "senml":
            seeds = [(topic, (v.get("input_text") or json.dumps(v["input"])).encode()) for v in _vectors(family)]
        elif name == "json":
            seeds = [(topic, b'{"air_temperature": "21.5", "relative_humidity": 60, "ts": 1700000000123}')]
        else:
            seeds = _topic_seeds(family, topic)
        seeds = seeds or [(topic, b"{}")]
        # Every event kind's topic (up, status, join, log ...) gets payloads: pick one per payload.
        kinds = sorted({t for t, _ in seeds})
        out.append(Target(f"envelope:{name}", [s for _, s in seeds],
                          lambda b, h=handler, ts=kinds: h.handle(Uplink(ts[len(b) % len(ts)], b, 1_700_000_000 * 10**9))))
    return out


def _mutate(seed: bytes, rnd: random.Random, other: bytes) -> bytes:
    b = bytearray(seed)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(6)
        if op == 0 and b:
            i = rnd.randrange(len(b))
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1 and b:
            del b[rnd.randrange(len(b)):]
        elif op == 2:
            b.insert(rnd.randrange(len(b) + 1), rnd.randrange(256))
        elif op == 3 and b:
            del b[rnd.randrange(len(b))]
        elif op == 4:
            cut = rnd.randrange(len(b) + 1)
            b = b[:cut] + bytearray(other[rnd.randrange(len(other) + 1):])
        else:
            b = bytearray(_json_swap(bytes(b), rnd))
    return bytes(b)


def _json_swap(raw: bytes, rnd: random.Random) -> bytes:
    """Replace one value of a JSON body with another type (string number, null, list, huge int...)."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw
    repl = rnd.choice([None, "21.5", "nan", 1e308, -(2**63), 2**64, [], {}, True, "", "AAAA", 3.5])

    def walk(x: Any, depth: int = 0) -> Any:
        if isinstance(x, dict) and x:
            k = rnd.choice(list(x))
            x[k] = repl if rnd.random() < 0.4 or depth > 4 else walk(x[k], depth + 1)
        elif isinstance(x, list) and x:
            i = rnd.randrange(len(x))
            x[i] = repl if rnd.random() < 0.4 else walk(x[i], depth + 1)
        return x

    return json.dumps(walk(doc)).encode()


def payloads(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    mutated = st.builds(lambda i, j, s: _mutate(seeds[i % len(seeds)], random.Random(s), seeds[j % len(seeds)]),
                        st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 2**32))
    return st.one_of(mutated, st.binary(max_size=256), st.sampled_from(seeds),
                     st.text(max_size=200).map(str.encode),
                     st.binary(max_size=64).map(lambda b: base64.b64encode(b)))


def run_volume(target: Target, examples: int, seed: int = 0) -> float:
    """The same mutations without hypothesis' bookkeeping (about 100x faster), for volume."""
    rnd = random.Random(seed)
    seeds = target.seeds
    t = time.perf_counter()
    for i in range(examples):
        kind = i % 4
        if kind == 0:
            payload = rnd.randbytes(rnd.randrange(257))
        else:
            payload = _mutate(seeds[rnd.randrange(len(seeds))], rnd, seeds[rnd.randrange(len(seeds))])
        try:
            target.call(payload)
        except InputError:
            pass
        except Exception as exc:
            raise AssertionError(f"{target.name}: {exc!r} escaped for payload {payload!r}") from exc
    return time.perf_counter() - t


def run(target: Target, examples: int, seed: int = 0) -> float:
    """Run `examples` payloads through the target under hypothesis (which shrinks a failure);
    returns seconds. Raises on the first escape."""

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(payloads(target.seeds))
    def check(payload: bytes) -> None:
        try:
            target.call(payload)
        except InputError:
            pass

    t = time.perf_counter()
    check()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=100_000, help="payloads per target")
    ap.add_argument("--hypothesis", type=int, default=2_000,
                    help="of those, how many run under hypothesis (shrinking); the rest in the volume loop")
    ap.add_argument("--target", default="", help="only targets whose name contains this")
    ap.add_argument("--json", action="store_true", help="print one JSON object last")
    a = ap.parse_args()
    results: dict[str, dict[str, Any]] = {}
    failed = 0
    for t in targets():
        if a.target not in t.name:
            continue
        try:
            n_h = min(a.hypothesis, a.examples)
            secs = run(t, n_h) + run_volume(t, a.examples - n_h)
            results[t.name] = {"examples": a.examples, "hypothesis_examples": n_h, "seconds": round(secs, 2),
                               "per_s": round(a.examples / secs), "escaped": 0}
            print(f"{t.name:28} {a.examples} payloads ({n_h} under hypothesis) in {secs:7.1f} s "
                  f"({a.examples / secs:8.0f}/s): only our errors")
        except Exception as exc:  # noqa: BLE001 - report and go on to the next target
            failed += 1
            results[t.name] = {"examples": a.examples, "escaped": 1, "error": repr(exc)[:500]}
            print(f"{t.name:28} FAILED: {exc!r}"[:600])
    if a.json:
        print(json.dumps({"targets": results, "failed_targets": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
