"""The model registry: a version per series per training run, with lineage; the `production`
alias and the full history of who moved it when and why; rollback; the audit log (design 005).

Why in the store: the node that fits the models owns the store, so a run's versions, alias
changes and audit row commit in one transaction with no extra server; the CLI and the API reach
the same tables through the node. Rows go in as Arrow tables, so a run of 10,000 series is a few
statements, not 10,000.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from greennanny import __version__
from greennanny.errors import ArtifactRefused, UnknownVersion
from greennanny.forecast.panel import Panel
from greennanny.forecast.refresh import Choice
from greennanny.mlops import artifacts
from greennanny.mlops.gate import Decision
from greennanny.store.duckdb import DuckDBStore
from greennanny.store.duckdb_sql import first_row

PRODUCTION = "production"
CANDIDATE = "candidate"
FIRST = "first version of the series"


@dataclass(frozen=True, slots=True)
class Lineage:
    """What a version was trained on: the window, its finite points and a hash of the values."""

    data_start_ns: int
    data_end_ns: int
    data_points: int
    data_sha256: str


def lineage_of(panel: Panel) -> dict[int, Lineage]:
    """Per series of `panel`: its grid window, finite points, and the sha256 of its values as
    float64 with the grid's start and step, so the same data always hashes the same."""
    head = np.array([panel.start_ns, panel.step_ns], np.int64).tobytes()
    end = panel.start_ns + panel.n_steps * panel.step_ns
    counts = np.isfinite(panel.values).sum(axis=1)
    return {int(sid): Lineage(panel.start_ns, end, int(counts[i]),
                              hashlib.sha256(head + np.ascontiguousarray(panel.values[i], np.float64).tobytes()).hexdigest())
            for i, sid in enumerate(panel.series_ids.tolist())}


@dataclass(slots=True)
class Loaded:
    """Choices loaded for the node: by series, the version each came from, and for a series that
    did not get its production version, why (the fallback chain's record)."""

    choices: dict[int, Choice] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)
    notes: dict[int, str] = field(default_factory=dict)
    last_run_ns: int | None = None  # when the newest production version was trained


class Registry:
    def __init__(self, store: DuckDBStore, directory: Path | None = None) -> None:
        self.store = store
        self.directory = directory if directory is not None else store.path.parent / "models"

    # -- writes ------------------------------------------------------------------------------
    def register_run(self, run_id: int, now_ns: int, choices: Mapping[int, Choice], lineage: Mapping[int, Lineage],
                     *, step_ns: int, horizon: int, trained_by: str, reason: str,
                     gate: Mapping[int, Decision] | None = None,
                     why: Mapping[int, tuple[str, str]] | None = None) -> dict[int, int]:
        """Register one training run: a new version per series of `choices`, its artifact, the
        aliases and one audit row, in one transaction. Returns the version given to each series.

        A series without a production version gets the new one as production. One with a
        `gate` decision gets it as production if the gate promoted it, else as `candidate`
        (production stays); the decision and its numbers go to `model_gate_decisions`. A series
        with production but no decision (a run without a gate) is promoted with `reason`.
        `why` gives some series their own (trained_by, reason): a retrain that drift asked for."""
        if not choices:
            return {}
        sids = sorted(int(s) for s in choices)
        latest = dict(self.store.reader().execute(
            "SELECT series_id, max(version) FROM model_versions GROUP BY 1").fetchall())
        versions = [int(latest.get(s, 0)) + 1 for s in sids]
        picks = [choices[s] for s in sids]
        saved = artifacts.save(self.directory, run_id, artifacts.encode(sids, versions, picks))
        lin = [lineage[s] for s in sids]
        n = len(sids)
        table = pa.table({
            "series_id": pa.array(sids, pa.int32()), "version": pa.array(versions, pa.int32()),
            "run_id": pa.array([run_id] * n, pa.int64()), "created_ns": pa.array([now_ns] * n, pa.int64()),
            "model": [c.model for c in picks],
            "params": [None if c.params is None else json.dumps(c.params, sort_keys=True) for c in picks],
            "step_ns": pa.array([step_ns] * n, pa.int64()), "horizon": pa.array([horizon] * n, pa.int32()),
            "data_start_ns": pa.array([x.data_start_ns for x in lin], pa.int64()),
            "data_end_ns": pa.array([x.data_end_ns for x in lin], pa.int64()),
            "data_points": pa.array([x.data_points for x in lin], pa.int32()),
            "data_sha256": [x.data_sha256 for x in lin], "code_version": [__version__] * n,
            "backtest_mae": [c.mae for c in picks], "backtest_mase": [c.mase for c in picks],
            "runner_up": [c.runner_up for c in picks], "runner_up_mase": [c.runner_up_mase for c in picks],
            "trained_by": [(why or {}).get(s, (trained_by, reason))[0] for s in sids],
            "reason": [(why or {}).get(s, (trained_by, reason))[1] for s in sids], "artifact": [saved.name] * n,
        })
        models: dict[str, int] = {}
        for c in picks:
            models[c.model] = models.get(c.model, 0) + 1
        gate = gate or {}
        prod = self._production_versions()
        promote: dict[str, list[tuple[int, int]]] = {}  # reason -> (series, version)
        held: list[tuple[int, int]] = []
        for s, v in zip(sids, versions):
            d = gate.get(s)
            if s not in prod:
                promote.setdefault(FIRST, []).append((s, v))
            elif d is None:
                promote.setdefault(f"{reason} (no gate)", []).append((s, v))
            elif d.promoted:
                promote.setdefault(d.reason, []).append((s, v))
            else:
                held.append((s, v))
        decided = [(s, v) for s, v in zip(sids, versions) if s in gate and s in prod]
        decisions = pa.table({
            "run_id": pa.array([run_id] * len(decided), pa.int64()),
            "at_ns": pa.array([now_ns] * len(decided), pa.int64()),
            "series_id": pa.array([s for s, _ in decided], pa.int32()),
            "candidate_version": pa.array([v for _, v in decided], pa.int32()),
            "production_version": pa.array([prod[s] for s, _ in decided], pa.int32()),
            "candidate_mase": pa.array([_finite(gate[s].candidate_mase) for s, _ in decided], pa.float64()),
            "production_mase": pa.array([_finite(gate[s].production_mase) for s, _ in decided], pa.float64()),
            "coverage80": pa.array([_finite(gate[s].coverage80) for s, _ in decided], pa.float64()),
            "cells": pa.array([gate[s].cells for s, _ in decided], pa.int32()),
            "promoted": pa.array([gate[s].promoted for s, _ in decided], pa.bool_()),
            "reason": pa.array([gate[s].reason for s, _ in decided], pa.string()),
        })
        n_promoted = sum(len(x) for x in promote.values())

        def tx(con: duckdb.DuckDBPyConnection) -> None:
            con.register("_mv", table)
            try:
                con.execute("INSERT INTO model_versions SELECT * FROM _mv")
            finally:
                con.unregister("_mv")
            con.execute("INSERT INTO model_artifacts VALUES (?, ?, ?, ?, ?)",
                        [saved.name, run_id, saved.sha256, saved.bytes, now_ns])
            for because, pairs in promote.items():
                _move_alias(con, [s for s, _ in pairs], [v for _, v in pairs], PRODUCTION, now_ns, trained_by, because)
            promoted_ids = [s for pairs in promote.values() for s, _ in pairs]
            if promoted_ids:  # a candidate alias left from an earlier run no longer names the newest
                con.execute(f"DELETE FROM model_aliases WHERE alias = ? AND series_id IN "
                            f"({','.join(str(s) for s in promoted_ids)})", [CANDIDATE])
            if held:
                _move_alias(con, [s for s, _ in held], [v for _, v in held], CANDIDATE, now_ns, trained_by,
                            "refit kept out of production by the gate")
            if decided:
                con.register("_gd", decisions)
                try:
                    con.execute("INSERT INTO model_gate_decisions SELECT * FROM _gd")
                finally:
                    con.unregister("_gd")
            _audit(con, now_ns, trained_by, "register", f"run {run_id}",
                   {"series": n, "models": models, "reason": reason, "artifact": saved.name,
                    "sha256": saved.sha256, "bytes": saved.bytes, "promoted": n_promoted, "kept_as_candidate": len(held)})
            if decided:
                _audit(con, now_ns, trained_by, "gate", f"run {run_id}", _gate_summary(gate, decided))

        self.store.transaction(tx)
        return dict(zip(sids, versions))

    def rollback(self, series_ids: Sequence[int] | None, to: int | None, *, actor: str, reason: str,
                 now_ns: int) -> list[dict[str, int]]:
        """Move `production` of `series_ids` (None: every series that has one) to version `to`,
        or with `to=None` to the version that held it before the current one. Nothing moves
        unless every series has that version and its artifact loads."""
        cur = self.store.reader()
        prod = dict(cur.execute("SELECT series_id, version FROM model_aliases WHERE alias = ?", [PRODUCTION]).fetchall())
        sids = sorted(prod) if series_ids is None else [int(s) for s in series_ids]
        if not sids:
            raise UnknownVersion("no series has a production model to roll back")
        missing = [s for s in sids if s not in prod]
        if missing:
            raise UnknownVersion(f"series {_few(missing)} have no production model in the registry")
        targets: dict[int, int] = {}
        if to is None:
            before = {(int(s), int(v)): p for s, v, p in cur.execute(
                "SELECT series_id, version, previous_version FROM model_alias_history WHERE alias = ? "
                "AND previous_version IS NOT NULL ORDER BY at_ns", [PRODUCTION]).fetchall()}
            for s in sids:
                p = before.get((s, prod[s]))
                if p is None:
                    raise UnknownVersion(f"series {s}: production v{prod[s]} has no previous version to roll back to")
                targets[s] = int(p)
        else:
            have = {(int(s), int(v)) for s, v in cur.execute(
                "SELECT series_id, version FROM model_versions WHERE version = ?", [int(to)]).fetchall()}
            lacking = [s for s in sids if (s, int(to)) not in have]
            if lacking:
                raise UnknownVersion(f"series {_few(lacking)} have no version {to}")
            targets = {s: int(to) for s in sids}
        self._check_loadable(targets)
        moved = [s for s in sids if targets[s] != prod[s]]

        def tx(con: duckdb.DuckDBPyConnection) -> None:
            if moved:
                _move_alias(con, moved, [targets[s] for s in moved], PRODUCTION, now_ns, actor, f"rollback: {reason}")
            _audit(con, now_ns, actor, "rollback", "all series" if series_ids is None else _few(sids),
                   {"to": "previous" if to is None else int(to), "reason": reason, "series": len(sids),
                    "moved": len(moved), "first": [[s, prod[s], targets[s]] for s in moved[:20]]})

        self.store.transaction(tx)
        return [{"series_id": s, "from": prod[s], "to": targets[s]} for s in sids]

    def prune(self, keep: int, now_ns: int) -> int:
        """Retention of superseded artifacts: remove every run's file that holds neither a
        production version nor one of the newest `keep` versions of any series. The versions'
        rows (lineage, figures) stay; their artifact row goes, so a load or rollback says why.
        Files that no row names and older than an hour (a crash between save and commit) go too.
        Returns the files removed."""
        sql = ("WITH ranked AS (SELECT artifact, row_number() OVER (PARTITION BY series_id ORDER BY version DESC) AS rn "
               "FROM model_versions), kept AS (SELECT artifact FROM ranked WHERE rn <= ? UNION "
               "SELECT v.artifact FROM model_aliases a JOIN model_versions v ON v.series_id = a.series_id "
               "AND v.version = a.version) SELECT artifact FROM model_artifacts WHERE artifact NOT IN "
               "(SELECT artifact FROM kept WHERE artifact IS NOT NULL) ORDER BY artifact")
        gone = [r[0] for r in self.store.reader().execute(sql, [int(keep)]).fetchall()]

        def tx(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(f"DELETE FROM model_artifacts WHERE artifact IN ({','.join('?' * len(gone))})", gone)
            _audit(con, now_ns, "retention", "prune", f"{len(gone)} artifacts",
                   {"kept_versions": keep, "removed": gone[:50], "count": len(gone)})

        if gone:
            self.store.transaction(tx)
        named = {r[0] for r in self.store.reader().execute("SELECT artifact FROM model_artifacts").fetchall()}
        removed = 0
        if self.directory.is_dir():
            for f in sorted(self.directory.glob("run-*.parquet")):
                if f.name in gone or (f.name not in named and f.stat().st_mtime < time.time() - 3600):
                    f.unlink(missing_ok=True)
                    removed += 1
        return removed

    def record(self, now_ns: int, actor: str, action: str, subject: str, detail: Mapping[str, Any]) -> None:
        """One audit row on its own (a fallback seen while forecasting, say)."""
        self.store.transaction(lambda con: _audit(con, now_ns, actor, action, subject, detail))

    # -- loads -------------------------------------------------------------------------------
    def load_production(self, series_ids: Sequence[int] | None = None, *, now_ns: int, actor: str = "node") -> Loaded:
        """The production choice of each series, its artifact checked by sha256.

        Fallback chain for a series whose production artifact is refused: the newest earlier
        version whose artifact loads; else none (the caller refits it the full way). Each
        refused artifact is one audit row with the reason and what the series got instead."""
        cur = self.store.reader()
        where = "" if series_ids is None else f" AND a.series_id IN ({','.join(str(int(s)) for s in series_ids) or 'NULL'})"
        rows = cur.execute(
            "SELECT a.series_id, a.version, v.artifact, v.created_ns FROM model_aliases a JOIN model_versions v "
            "ON v.series_id = a.series_id AND v.version = a.version WHERE a.alias = ?" + where + " ORDER BY a.series_id",
            [PRODUCTION]).fetchall()
        out = Loaded()
        if not rows:
            return out
        out.last_run_ns = max(int(r[3]) for r in rows)
        files = _Files(self)
        refused: dict[str, dict[str, Any]] = {}
        for sid, version, name, _ in rows:
            sid, version = int(sid), int(version)
            got, why = files.choice(name, sid)
            if got is not None:
                out.choices[sid], out.versions[sid] = got, version
                continue
            rec = refused.setdefault(name, {"reason": why, "series": 0, "previous_version": 0, "refit": 0})
            rec["series"] += 1
            earlier = cur.execute("SELECT version, artifact FROM model_versions WHERE series_id = ? AND version < ? "
                                  "ORDER BY version DESC", [sid, version]).fetchall()
            for v, other in earlier:
                alt, _ = files.choice(other, sid)
                if alt is not None:
                    out.choices[sid], out.versions[sid] = alt, int(v)
                    out.notes[sid] = f"production v{version} refused ({why}); v{int(v)} used (previous version)"
                    rec["previous_version"] += 1
                    break
            else:
                out.notes[sid] = f"production v{version} refused ({why}); no earlier version loads: refit"
                rec["refit"] += 1
        for name, rec in refused.items():
            self.record(now_ns, actor, "fallback", name, rec)
        return out

    def _check_loadable(self, targets: Mapping[int, int]) -> None:
        cur = self.store.reader()
        want = pa.table({"series_id": pa.array(list(targets), pa.int32()),
                         "version": pa.array(list(targets.values()), pa.int32())})
        cur.register("_want", want)
        try:
            names = dict(cur.execute("SELECT v.series_id, v.artifact FROM model_versions v SEMI JOIN _want w "
                                     "ON v.series_id = w.series_id AND v.version = w.version").fetchall())
        finally:
            cur.unregister("_want")
        files = _Files(self)
        for sid, version in targets.items():
            got, why = files.choice(names[sid], sid)
            if got is None:
                raise ArtifactRefused(f"series {sid} v{version}: {why}; production not moved")

    # -- reads -------------------------------------------------------------------------------
    def _production_versions(self) -> dict[int, int]:
        return {int(s): int(v) for s, v in self.store.reader().execute(
            "SELECT series_id, version FROM model_aliases WHERE alias = ?", [PRODUCTION]).fetchall()}

    def candidate(self, series_id: int) -> int | None:
        """The version the gate kept out of production (the newest refit), if any."""
        row = first_row(self.store.reader(), "SELECT version FROM model_aliases WHERE alias = ? AND series_id = ?",
                        [CANDIDATE, int(series_id)])
        return None if row is None else int(row[0])

    def gate_decisions(self, series_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The gate's newest decisions (of one series), newest first, with their numbers."""
        where, args = ("WHERE series_id = ?", [int(series_id)]) if series_id is not None else ("", [])
        return _dicts(self.store.reader().execute(
            f"SELECT * FROM model_gate_decisions {where} ORDER BY at_ns DESC, series_id LIMIT ?", [*args, int(limit)]))

    def production(self, series_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Each series' production version with its lineage and backtest figures."""
        where = "" if series_ids is None else f" AND a.series_id IN ({','.join(str(int(s)) for s in series_ids) or 'NULL'})"
        return _dicts(self.store.reader().execute(
            "SELECT a.series_id, a.version, a.since_ns, v.* EXCLUDE (series_id, version) FROM model_aliases a "
            "JOIN model_versions v ON v.series_id = a.series_id AND v.version = a.version "
            f"WHERE a.alias = ?{where} ORDER BY a.series_id", [PRODUCTION]))

    def versions(self, series_id: int) -> list[dict[str, Any]]:
        return _dicts(self.store.reader().execute(
            "SELECT * FROM model_versions WHERE series_id = ? ORDER BY version", [series_id]))

    def history(self, series_id: int) -> list[dict[str, Any]]:
        return _dicts(self.store.reader().execute(
            "SELECT * FROM model_alias_history WHERE series_id = ? ORDER BY at_ns, version", [series_id]))

    def audit(self, limit: int = 100, action: str | None = None) -> list[dict[str, Any]]:
        """The newest `limit` audit rows (of one `action`), oldest first."""
        where, args = ("WHERE action = ?", [action]) if action else ("", [])
        rows = _dicts(self.store.reader().execute(
            f"SELECT * FROM audit_log {where} ORDER BY seq DESC LIMIT ?", [*args, int(limit)]))
        for r in rows:
            r["detail"] = json.loads(r["detail"]) if r["detail"] else {}
        return rows[::-1]


class _Files:
    """Artifacts loaded once each per call, with the hash checked and a refusal remembered."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.cur = reg.store.reader()
        self.cache: dict[str, dict[int, Choice] | str] = {}

    def choice(self, name: str, sid: int) -> tuple[Choice | None, str]:
        if name not in self.cache:
            rec = self.cur.execute("SELECT sha256 FROM model_artifacts WHERE artifact = ?", [name]).fetchall()
            if not rec:
                self.cache[name] = (f"model artifact {name} was removed by retention "
                                    "(store.retention.model_versions_kept)")
            else:
                try:
                    self.cache[name] = artifacts.load(self.reg.directory, name, rec[0][0])
                except ArtifactRefused as exc:
                    self.cache[name] = str(exc)
        got = self.cache[name]
        if isinstance(got, str):
            return None, got
        if sid not in got:
            return None, f"model artifact {name} holds no row for series {sid}"
        return got[sid], ""


def _move_alias(con: duckdb.DuckDBPyConnection, sids: Sequence[int], versions: Sequence[int], alias: str,
                now_ns: int, actor: str, reason: str) -> None:
    new = pa.table({"series_id": pa.array(sids, pa.int32()), "version": pa.array(versions, pa.int32())})
    con.register("_al", new)
    try:
        con.execute("INSERT INTO model_alias_history SELECT ?, n.series_id, ?, n.version, a.version, ?, ? FROM _al n "
                    "LEFT JOIN model_aliases a ON a.series_id = n.series_id AND a.alias = ?",
                    [now_ns, alias, actor, reason, alias])
        con.execute("DELETE FROM model_aliases WHERE alias = ? AND series_id IN (SELECT series_id FROM _al)", [alias])
        con.execute("INSERT INTO model_aliases SELECT series_id, ?, version, ? FROM _al", [alias, now_ns])
    finally:
        con.unregister("_al")


def _audit(con: duckdb.DuckDBPyConnection, now_ns: int, actor: str, action: str, subject: str,
           detail: Mapping[str, Any]) -> None:
    con.execute("INSERT INTO audit_log SELECT coalesce(max(seq), 0) + 1, ?, ?, ?, ?, ? FROM audit_log",
                [now_ns, actor, action, subject, json.dumps(detail, sort_keys=True, default=str)])


def record_config(store: DuckDBStore, config: Mapping[str, Any], now_ns: int, actor: str = "node") -> dict[str, Any]:
    """An audit row when the node starts with a configuration that differs from the last one it
    recorded: which dotted keys changed, from what to what (values of keys that name a password,
    token or secret are never written; the config holds file names for those anyway). Returns the
    changes (empty when nothing changed)."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, Mapping):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        else:
            secret = any(w in prefix.lower() for w in ("password", "token", "secret"))
            flat[prefix] = "(set)" if secret and v else v

    walk("", config)
    flat = json.loads(json.dumps(flat, default=str))
    last = store.reader().execute("SELECT detail FROM audit_log WHERE action = 'config' ORDER BY seq DESC LIMIT 1").fetchall()
    before = json.loads(last[0][0]).get("values", {}) if last else {}
    changed = {k: [before.get(k), flat.get(k)] for k in sorted(set(before) | set(flat)) if before.get(k) != flat.get(k)}
    if changed:
        first = not last
        store.transaction(lambda con: _audit(con, now_ns, actor, "config", "first start" if first else
                                             f"{len(changed)} settings changed",
                                             {"changed": {} if first else changed, "values": flat}))
    return {} if not last else changed


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _gate_summary(gate: Mapping[int, Decision], decided: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """The audit row of a run's gate: counts and the spread of the numbers it decided on."""
    ds = [gate[s] for s, _ in decided]
    ratio = [d.candidate_mase / d.production_mase for d in ds
             if np.isfinite(d.candidate_mase) and np.isfinite(d.production_mase) and d.production_mase > 0]
    return {"decided": len(ds), "promoted": sum(d.promoted for d in ds), "kept": sum(not d.promoted for d in ds),
            "median_candidate_over_production_mase": round(float(np.median(ratio)), 4) if ratio else None,
            "promoted_series": [d.series_id for d in ds if d.promoted][:50]}


def _dicts(res: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cols = [d[0] for d in res.description or []]
    return [dict(zip(cols, row)) for row in res.fetchall()]


def _few(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
