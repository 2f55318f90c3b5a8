"""Crop-climate formulas (issue 7, processors/climate.py): exact values, bad input named, and the
agreement with real controllers' own columns on the shared data (skipped where it is absent)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from tests.shared_paths import SHARED_DIR

from greennanny.errors import InputError
from greennanny.processors import climate

DATA = SHARED_DIR / "data"
H = 3600 * 10**9


def test_exact_values() -> None:
    es25 = 0.6108 * np.exp(17.27 * 25 / (25 + 237.3))
    assert climate.es_fao56(25.0) == pytest.approx(3.168, abs=1e-3)  # FAO-56 annex 2, table 2.3: 3.168 kPa
    assert climate.es_fao56(25.0) == pytest.approx(es25)
    assert climate.vpd_air(25.0, 60.0) == pytest.approx(0.4 * es25)
    assert climate.vpd_air(25.0, 100.0) == 0.0
    assert climate.vpd_leaf(25.0, 60.0, 25.0) == pytest.approx(climate.vpd_air(25.0, 60.0))
    assert climate.vpd_leaf(25.0, 60.0, 27.0) == pytest.approx(climate.es_fao56(27.0) - 0.6 * es25)
    for t in (-10.0, 0.0, 17.9, 25.0, 40.0):  # dew point equals air temperature at 100 %
        assert climate.dew_point(t, 100.0) == pytest.approx(t, abs=1e-9)
    assert climate.dew_point_margin(12.0, 20.0, 80.0) == pytest.approx(12.0 - climate.dew_point(20.0, 80.0))
    # absolute humidity at 20 degC, 50 %: es 2.3383 kPa -> ea 1.1692 kPa -> 1169.2 / (461.5 x 293.15) kg/m3
    assert climate.absolute_humidity(20.0, 50.0) == pytest.approx(8.642, abs=1e-3)
    assert climate.humidity_deficit(20.0, 50.0) == pytest.approx(climate.absolute_humidity(20.0, 50.0))
    assert list(climate.growing_degree_days([8.0, 10.0, 18.5])) == [0.0, 0.0, 8.5]


def test_dli_integrates_the_day_window_and_does_not_stretch_a_reading_over_an_outage() -> None:
    start = 1_767_225_600 * 10**9 + 6 * H  # a photoperiod day starting 06:00
    ts = start + np.arange(0, 24 * 12, dtype=np.int64) * 300 * 10**9  # 5-min readings
    hours = (ts - start) / H
    ppfd = np.where(hours < 12, 500.0, 0.0)  # 12 h at 500 umol/m2/s: 21.6 mol/m2
    assert climate.dli(ts, ppfd, day_start_ns=start) == pytest.approx(21.6)
    # a midnight reset would split it: 06:00-24:00 of the previous day, 00:00-06:00 of this one
    assert climate.dli(ts, ppfd, day_start_ns=start + 18 * H) == pytest.approx(0.0)
    gap = (hours < 2) | (hours >= 5)  # three hours without a reading
    got = climate.dli(ts[gap], ppfd[gap], day_start_ns=start)
    assert got == pytest.approx(21.6 - 3 * 500 * 3600 / 1e6 + 500 * (900 - 300) / 1e6)  # the last reading holds 15 min


@pytest.mark.parametrize(("call", "message"), [
    (lambda: climate.vpd_air(25.0, 110.0), "rh: 110 % is outside 0..100 %"),
    (lambda: climate.dew_point(20.0, -3.0), "rh: -3 % is outside 0..100 %"),
    (lambda: climate.vpd_air(150.0, 50.0), "t: 150 degC is outside -80..100 degC"),
    (lambda: climate.dli(np.array([0, 300 * 10**9]), np.array([100.0, -5.0]), day_start_ns=0),
     "ppfd: -5 umol/m2/s is outside 0..3000"),
    (lambda: climate.dli(np.array([0]), np.array([32_000.0]), day_start_ns=0), "ppfd: 32000 umol/m2/s"),  # lux
    (lambda: climate.vpd_air(25.0, 50.0, formula="buck"), "formula: 'buck' is not one of fao56, alduchov"),
])
def test_bad_input_is_refused_naming_the_field_and_value(call, message) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_calc_prints_json_and_refuses_bad_input() -> None:
    def calc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "greennanny.cli.main", "calc", *args], capture_output=True,
                              text=True, timeout=60, check=False)

    r = calc("vpd", "--t", "25", "--rh", "60")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["metric"], out["unit"], out["value"]) == ("vpd_air", "kPa", round(float(climate.vpd_air(25, 60)), 4))
    out = json.loads(calc("leaf-vpd", "--t", "25", "--rh", "60", "--leaf-offset", "2").stdout)
    assert out["inputs"]["t_leaf"] == 27.0 and out["value"] == round(float(climate.vpd_leaf(25, 60, 27)), 4)
    out = json.loads(calc("dewpoint", "--t", "20", "--rh", "80", "--t-surface", "15").stdout)
    assert out["value"] == round(float(climate.dew_point(20, 80)), 4) and out["margin_degC"] < 0  # it condenses
    assert json.loads(calc("dli", "--ppfd", "400", "--hours", "16").stdout)["value"] == 23.04
    r = calc("vpd", "--t", "25", "--rh", "160")
    assert r.returncode != 0 and "rh: 160 % is outside 0..100 %" in r.stderr


@pytest.mark.skipif(not (DATA / "osu2024_tomato_greenhouse_environment.csv.gz").exists(), reason="shared data absent")
def test_air_vpd_agrees_with_the_osu_2024_controllers_vpd_air_column() -> None:
    d = pd.read_csv(DATA / "osu2024_tomato_greenhouse_environment.csv.gz", usecols=["T Air", "RH", "VPD Air"])
    d = d.apply(pd.to_numeric, errors="coerce").dropna()
    ours = climate.vpd_air(d["T Air"].to_numpy(), d["RH"].to_numpy())
    diff = np.abs(ours - d["VPD Air"].to_numpy())
    print(f"\nOSU 2024 VPD Air: {len(d)} rows, mean |difference| {diff.mean():.4f} kPa (FAO-56 Tetens)")
    assert len(d) > 40_000 and diff.mean() < 0.0015 and np.quantile(diff, 0.99) < 0.01
    magnus = np.abs(climate.vpd_air(d["T Air"].to_numpy(), d["RH"].to_numpy(), "alduchov") - d["VPD Air"].to_numpy())
    assert diff.mean() < magnus.mean()  # the controller's formula is Tetens', not Magnus'


@pytest.mark.skipif(not (DATA / "agc2018_cucumber_greenhouse_climate.csv.gz").exists(), reason="shared data absent")
def test_humidity_deficit_agrees_with_the_agc_2018_humdef_column() -> None:
    d = pd.read_csv(DATA / "agc2018_cucumber_greenhouse_climate.csv.gz", usecols=["Tair", "RHair", "HumDef"])
    d = d.apply(pd.to_numeric, errors="coerce").dropna()
    ours = climate.humidity_deficit(d["Tair"].to_numpy(), d["RHair"].to_numpy(), "alduchov")
    diff = np.abs(ours - d["HumDef"].to_numpy())
    print(f"\nAGC 2018 HumDef: {len(d)} rows, mean |difference| {diff.mean():.4f} g/m3 (Alduchov-Eskridge)")
    assert len(d) > 190_000 and diff.mean() < 0.02


@pytest.mark.skipif(not (DATA / "cornell2020_tomato_lassi_greenhouse_environment.csv.gz").exists(),
                    reason="shared data absent")
@pytest.mark.parametrize("name", ["cornell2020_tomato_lassi", "cornell2020_tomato_co2lassi",
                                  "cornell2020_strawberry_lassi"])
def test_dli_agrees_with_the_cornell_2020_controllers_daily_dli_between_its_resets(name: str) -> None:
    c = pd.read_csv(DATA / f"{name}_greenhouse_environment.csv.gz", usecols=["time_iso", "PPFD (umol/m2/s)",
                                                                              "Daily DLI"])
    ts = pd.to_datetime(c["time_iso"]).dt.as_unit("ns").astype("int64").to_numpy()  # local wall clock, as logged
    ppfd = pd.to_numeric(c["PPFD (umol/m2/s)"], errors="coerce").to_numpy()
    daily = pd.to_numeric(c["Daily DLI"], errors="coerce").to_numpy()
    resets = np.flatnonzero(np.isfinite(daily))  # the controller logs its day total when it resets, ~06:50-07:45
    got = np.array([climate.dli(ts, ppfd, day_start_ns=int(ts[a]), end_ns=int(ts[b]))
                    for a, b in itertools.pairwise(resets)])
    diff = np.abs(got - daily[resets[1:]])
    print(f"\n{name}: {diff.size} days, mean |DLI difference| {diff.mean():.3f} mol/m2/d "
          f"(mean DLI {daily[resets].mean():.1f})")
    assert diff.size > 130 and diff.mean() < 0.1 and np.quantile(diff, 0.9) < 0.11
