"""The model registry (design 005): versions with lineage per run, production alias and its
history, rollback, artifacts checked by sha256, the fallback chain at load, the audit log; and the
forecast service registering its choices and resuming from them after a restart."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from greennanny.config import ForecastConfig
from greennanny.errors import ArtifactRefused, UnknownVersion
from greennanny.forecast.panel import Panel
from greennanny.forecast.refresh import Choice
from greennanny.forecast.service import ForecastService
from greennanny.mlops import artifacts
from greennanny.mlops.registry import PRODUCTION, Registry, lineage_of
from greennanny.model import Batch, SeriesKey
from greennanny.runtime.clock import SystemClock
from greennanny.store.duckdb import DuckDBStore

H = 3600 * 10**9
END = 1_767_225_600 * 10**9  # 2026-01-01T00:00Z


def _choice(model: str, mase: float, params: dict[str, float] | None = None) -> Choice:
    return Choice(model, mase * 2, mase, "seasonal_naive", mase + 0.1, np.linspace(0.5, 1.0, 4),
                  np.linspace(0.8, 1.6, 4), params)


def _panel(sids: list[int], shift: float = 0.0) -> Panel:
    vals = np.arange(len(sids) * 48, dtype=np.float64).reshape(len(sids), 48) + shift
    vals[0, 3] = np.nan
    return Panel(np.array(sids, np.int64), END - 48 * H, H, vals)


def _register(reg: Registry, run_id: int, choices: dict[int, Choice], now: int, shift: float = 0.0) -> dict[int, int]:
    return reg.register_run(run_id, now, choices, lineage_of(_panel(sorted(choices), shift)), step_ns=H, horizon=4,
                            trained_by="schedule", reason="refit")


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    store = DuckDBStore(tmp_path / "store.duckdb")
    yield Registry(store)
    store.close()


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_artifact_round_trips_and_a_changed_or_missing_file_is_refused(tmp_path: Path) -> None:
    picks = [_choice("ets", 0.8, {"alpha": 0.3, "gamma": 0.1}), _choice("profile", 0.9)]
    saved = artifacts.save(tmp_path, 7, artifacts.encode([3, 5], [1, 4], picks))
    assert saved.sha256 == hashlib.sha256((tmp_path / saved.name).read_bytes()).hexdigest()
    got = artifacts.load(tmp_path, saved.name, saved.sha256)
    assert sorted(got) == [3, 5]
    assert got[3].model == "ets" and got[3].params == {"alpha": 0.3, "gamma": 0.1} and got[5].params is None
    np.testing.assert_array_equal(got[5].half95, picks[1].half95)
    assert got[3].mase == pytest.approx(0.8) and got[3].runner_up == "seasonal_naive"
    _corrupt(tmp_path / saved.name)
    with pytest.raises(ArtifactRefused, match="sha256 .* not the .* recorded"):
        artifacts.load(tmp_path, saved.name, saved.sha256)
    (tmp_path / saved.name).unlink()
    with pytest.raises(ArtifactRefused, match="is missing"):
        artifacts.load(tmp_path, saved.name, saved.sha256)


def test_two_runs_give_versions_with_lineage_production_history_and_audit(reg: Registry) -> None:
    assert _register(reg, 1, {1: _choice("ets", 0.8), 2: _choice("profile", 0.9)}, END) == {1: 1, 2: 1}
    assert _register(reg, 2, {1: _choice("blend", 0.7)}, END + H, shift=1.0) == {1: 2}
    prod = {r["series_id"]: r for r in reg.production()}
    assert (prod[1]["version"], prod[1]["model"], prod[2]["version"]) == (2, "blend", 1)
    v = reg.versions(1)
    assert [x["version"] for x in v] == [1, 2] and v[0]["data_sha256"] != v[1]["data_sha256"]
    assert v[1]["data_sha256"] == lineage_of(_panel([1], 1.0))[1].data_sha256
    assert (v[0]["data_points"], v[0]["data_start_ns"], v[0]["data_end_ns"]) == (47, END - 48 * H, END)
    assert v[1]["trained_by"] == "schedule" and v[1]["backtest_mase"] == pytest.approx(0.7)
    hist = reg.history(1)
    assert [(h["version"], h["previous_version"]) for h in hist] == [(1, None), (2, 1)]
    audit = reg.audit()
    assert [a["action"] for a in audit] == ["register", "register"]
    assert audit[0]["detail"]["series"] == 2 and audit[0]["detail"]["models"] == {"ets": 1, "profile": 1}
    assert audit[0]["seq"] < audit[1]["seq"]


def test_rollback_to_previous_and_to_a_version_is_recorded(reg: Registry) -> None:
    _register(reg, 1, {1: _choice("ets", 0.8), 2: _choice("profile", 0.9)}, END)
    _register(reg, 2, {1: _choice("blend", 0.7)}, END + H)
    moved = reg.rollback([1], None, actor="alice", reason="v2 overshoots at night", now_ns=END + 2 * H)
    assert moved == [{"series_id": 1, "from": 2, "to": 1}]
    assert reg.production([1])[0]["version"] == 1
    last = reg.history(1)[-1]
    assert (last["version"], last["previous_version"], last["actor"]) == (1, 2, "alice")
    assert last["reason"] == "rollback: v2 overshoots at night"
    assert reg.rollback([1], 2, actor="alice", reason="undo", now_ns=END + 3 * H)[0]["to"] == 2
    assert reg.audit()[-1]["action"] == "rollback" and reg.audit()[-1]["actor"] == "alice"
    with pytest.raises(UnknownVersion, match="series 2: production v1 has no previous version"):
        reg.rollback([2], None, actor="alice", reason="x", now_ns=END + 4 * H)
    with pytest.raises(UnknownVersion, match="series 1 have no version 5"):
        reg.rollback([1], 5, actor="alice", reason="x", now_ns=END + 4 * H)
    with pytest.raises(UnknownVersion, match="series 9 have no production model"):
        reg.rollback([9], None, actor="alice", reason="x", now_ns=END + 4 * H)
    with pytest.raises(UnknownVersion):  # --all: series 2 has no previous, so nothing moves
        reg.rollback(None, None, actor="alice", reason="x", now_ns=END + 4 * H)
    assert {r["series_id"]: r["version"] for r in reg.production()} == {1: 2, 2: 1}


def test_rollback_to_a_version_whose_artifact_is_corrupted_is_refused_and_nothing_moves(reg: Registry) -> None:
    _register(reg, 1, {1: _choice("ets", 0.8)}, END)
    _register(reg, 2, {1: _choice("blend", 0.7)}, END + H)
    _corrupt(reg.directory / artifacts.artifact_name(1))
    with pytest.raises(ArtifactRefused, match="series 1 v1: .*sha256"):
        reg.rollback([1], None, actor="bob", reason="x", now_ns=END + 2 * H)
    assert reg.production([1])[0]["version"] == 2
    assert [a["action"] for a in reg.audit()] == ["register", "register"]


def test_load_production_falls_back_to_the_previous_version_then_to_a_refit_with_reasons(reg: Registry) -> None:
    _register(reg, 1, {1: _choice("ets", 0.8), 2: _choice("profile", 0.9)}, END)
    _register(reg, 2, {1: _choice("blend", 0.7)}, END + H)
    ok = reg.load_production(now_ns=END + 2 * H)
    assert (ok.choices[1].model, ok.versions, ok.notes, ok.last_run_ns) == ("blend", {1: 2, 2: 1}, {}, END + H)
    _corrupt(reg.directory / artifacts.artifact_name(2))
    got = reg.load_production(now_ns=END + 2 * H)
    assert got.choices[1].model == "ets" and got.versions[1] == 1
    assert got.notes[1].startswith("production v2 refused (model artifact") and "v1 used (previous version)" in got.notes[1]
    (reg.directory / artifacts.artifact_name(1)).unlink()
    gone = reg.load_production(now_ns=END + 3 * H)
    assert gone.choices == {} and "no earlier version loads: refit" in gone.notes[1]
    assert "is missing" in gone.notes[2]
    falls = [a for a in reg.audit() if a["action"] == "fallback"]
    assert [(a["subject"], a["detail"]["previous_version"], a["detail"]["refit"]) for a in falls] == [
        ("run-00000002.parquet", 1, 0), ("run-00000002.parquet", 0, 1), ("run-00000001.parquet", 0, 1)]


def _daily_store(path: Path) -> DuckDBStore:
    store = DuckDBStore(path)
    t = END - np.arange(14 * 24, 0, -1, dtype=np.int64) * H
    hours = (t // 10**9 % 86_400) / 3600
    rng = np.random.default_rng(3)
    keys = [SeriesKey("gh", f"z{i}", f"dev{i}", "air_temperature") for i in range(3)]
    vals = [np.round(20 + (3 + i) * np.sin((hours - 9) / 24 * 2 * np.pi) + rng.normal(0, 0.2, len(t)), 2) for i in range(3)]
    idx = np.repeat(np.arange(3, dtype=np.int32), len(t))
    store.write(Batch(keys, idx, np.tile(t, 3), np.concatenate(vals), np.zeros(len(idx), np.uint8), {}))
    return store


def test_service_registers_its_choices_and_a_restarted_node_refreshes_them(tmp_path: Path) -> None:
    store = _daily_store(tmp_path / "s.duckdb")
    cfg = ForecastConfig(step_min=60, horizon_h=6, refit_h=24)
    first = ForecastService(store, cfg, SystemClock()).run_once(END + 1)
    assert first.refit and first.registered == 3
    reg = Registry(store)
    prod = {r["series_id"]: r for r in reg.production()}
    assert sorted(prod) == [s.id for s in store.series()] and {r["version"] for r in prod.values()} == {1}
    models = {s: r["model"] for s, r in prod.items()}
    # a restart an hour later: the node's service resumes from the registry and refreshes
    again = ForecastService(store, cfg, SystemClock(), resume=True).run_once(END + H + 1)
    assert (again.refit, again.refreshed, again.registered) == (False, 3, 0)
    for sid, model in models.items():
        meta, _ = store.latest_forecast(sid)
        assert (meta["model"], meta["fallback_reason"]) == (model, None)
    # the artifact is corrupted on disk: the restarted node refits (no earlier version) and says why
    _corrupt(reg.directory / artifacts.artifact_name(first.run_id))
    third = ForecastService(store, cfg, SystemClock(), resume=True).run_once(END + 2 * H + 1)
    assert third.refreshed == 0 and third.registered == 3
    assert {r["version"] for r in reg.production()} == {2}
    assert [a["action"] for a in reg.audit()] == ["register", "fallback", "register"] + ["fallback_closed"] * 3
    # a rollback to v1 is refused (its artifact is the corrupted one); v2's file is fine
    with pytest.raises(ArtifactRefused):
        reg.rollback(None, 1, actor="ops", reason="x", now_ns=END + 3 * H)
    store.close()


def test_a_resumed_node_uses_the_previous_version_when_production_is_refused_and_labels_the_forecast(
        tmp_path: Path) -> None:
    store = _daily_store(tmp_path / "s.duckdb")
    cfg = ForecastConfig(step_min=60, horizon_h=6, refit_h=24, promotion_gate=False)  # every refit goes live
    ForecastService(store, cfg, SystemClock()).run_once(END + 1)
    second = ForecastService(store, cfg, SystemClock()).run_once(END + H + 1)  # a new service refits: v2
    reg = Registry(store)
    assert {r["version"] for r in reg.production()} == {2}
    _corrupt(reg.directory / artifacts.artifact_name(second.run_id))
    svc = ForecastService(store, cfg, SystemClock(), resume=True)
    run = svc.run_once(END + 2 * H + 1)
    assert (run.refreshed, run.registered) == (3, 0)
    for s in store.series():
        meta, pts = store.latest_forecast(s.id)
        assert "production v2 refused" in meta["fallback_reason"] and "v1 used (previous version)" in meta["fallback_reason"]
        assert np.isfinite(pts["mean"]).all()
    assert reg.audit()[-1]["action"] == "fallback" and reg.audit()[-1]["detail"]["previous_version"] == 3
    # the next refit gives the series a new version and the label goes
    svc.cfg = cfg.model_copy(update={"refit_h": 0})
    svc.run_once(END + 3 * H + 1)
    assert {r["version"] for r in reg.production()} == {3}
    meta, _ = store.latest_forecast(store.series()[0].id)
    assert meta["fallback_reason"] is None
    assert PRODUCTION == "production"
    store.close()


def test_retention_removes_superseded_artifacts_but_keeps_production_newest_and_lineage(reg: Registry) -> None:
    _register(reg, 1, {1: _choice("ets", 0.8), 2: _choice("profile", 0.9)}, END)
    for run in range(2, 6):
        _register(reg, run, {1: _choice("blend", 0.7)}, END + run * H)
    orphan = reg.directory / artifacts.artifact_name(99)  # saved by a run that crashed before its commit
    orphan.write_bytes(b"x")
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    reg.store.retention_policy = replace(reg.store.retention_policy, model_versions_kept=2)
    assert reg.store.maintain(END + 10 * H)["model_artifacts_removed"] == 3  # runs 2, 3 and the orphan
    left = sorted(p.name for p in reg.directory.iterdir())
    assert left == [artifacts.artifact_name(r) for r in (1, 4, 5)]  # run 1 holds series 2's production
    assert [v["version"] for v in reg.versions(1)] == [1, 2, 3, 4, 5]  # lineage rows stay
    with pytest.raises(ArtifactRefused, match="v2: model artifact run-00000002.parquet was removed by retention"):
        reg.rollback([1], 2, actor="ops", reason="x", now_ns=END + 11 * H)
    prune = reg.audit(action="prune")[-1]
    assert prune["actor"] == "retention" and prune["detail"]["removed"] == ["run-00000002.parquet", "run-00000003.parquet"]
    assert reg.store.maintain(END + 12 * H)["model_artifacts_removed"] == 0
