"""End-to-end fixtures: a store with real readings and a real forecast, the API served by uvicorn
on a free loopback port, and a headless Chromium driven by Selenium.

The readings are the Reference compartment's air temperature of the Autonomous Greenhouse
Challenge 2018 (read from the shared data folder, never copied here); a daily sine stands in
where that folder is absent. The forecast is made by the real ForecastService, so the page is
tested on what a node would actually store.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
import pytest
import uvicorn
from tests.shared_paths import SHARED_DIR

from greennanny.config import ForecastConfig
from greennanny.forecast.service import ForecastService
from greennanny.model import Batch, SeriesKey, round_to_resolution
from greennanny.runtime.clock import FakeClock
from greennanny.store.duckdb import DuckDBStore

AGC2018_CLIMATE = SHARED_DIR / "data" / "agc2018_cucumber_greenhouse_climate.csv.gz"
REFERENCE = "Reference(Growers)"  # the growers' own compartment, the challenge's baseline
DAYS = 10
# Forecast by the service; humidity is written after the forecast run, so it has none yet.
KEY = SeriesKey("bleiswijk", "reference", "climate-computer", "air_temperature")
NEW_KEY = SeriesKey("bleiswijk", "reference", "climate-computer", "relative_humidity")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_TZ = "Europe/Amsterdam"  # the greenhouse's clock, so the plot reads as the grower's


@dataclass(frozen=True)
class E2EData:
    store: DuckDBStore
    key: SeriesKey  # air temperature, forecast by the service
    new_key: SeriesKey  # relative humidity, written after the forecast run: no forecast yet
    source: str  # "agc2018" or "synthetic"
    last_ns: int  # the last air temperature reading
    now_ns: int  # the forecast service's clock


def _agc2018_reference(column: str) -> tuple[np.ndarray, np.ndarray]:
    """(UTC ns, value) of the last DAYS days of one Reference compartment column, NaN dropped.

    `time_iso` is the climate computer's wall clock, taken as Europe/Amsterdam.
    """
    df = pd.read_csv(AGC2018_CLIMATE, usecols=["compartment", "time_iso", column])
    df = df[df["compartment"] == REFERENCE]
    local = pd.to_datetime(df["time_iso"], format="%Y-%m-%dT%H:%M:%S")
    df = df.assign(local=local)
    df = df[(df["local"] > df["local"].max() - pd.Timedelta(days=DAYS)) & df[column].notna()]
    utc = (
        df["local"]
        .dt.tz_localize("Europe/Amsterdam", ambiguous="NaT", nonexistent="NaT")
        .dt.tz_convert("UTC")
    )
    keep = utc.notna().to_numpy()
    return utc[keep].dt.as_unit("ns").astype("int64").to_numpy(), df[column].to_numpy(np.float64)[keep]


def _synthetic(column: str) -> tuple[np.ndarray, np.ndarray]:
    """A daily cycle at 5-minute steps, for a checkout without the shared folder."""
    step = 300 * 10**9
    end = pd.Timestamp("2024-06-10T00:00:00Z").value
    ts = np.arange(end - DAYS * 86_400 * 10**9, end, step, dtype=np.int64)
    day = np.sin(2 * np.pi * ((ts // 10**9 % 86_400) / 3600.0 - 9.0) / 24.0)
    return ts, (21.0 + 4.0 * day) if column == "Tair" else (80.0 - 10.0 * day)


def _write(store: DuckDBStore, key: SeriesKey, ts: np.ndarray, value: np.ndarray) -> None:
    index = np.zeros(len(ts), np.int32)
    value = round_to_resolution(value, [key.quantity], index)  # as the pipeline stores them
    store.write(Batch.from_columns([key], index, ts, value))


@pytest.fixture(scope="session")
def e2e_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EData]:
    """A store with ~10 days of greenhouse climate and the forecast the service made from it."""
    real = AGC2018_CLIMATE.is_file()
    read = _agc2018_reference if real else _synthetic
    store = DuckDBStore(tmp_path_factory.mktemp("e2e-store") / "greennanny.duckdb")
    ts, value = read("Tair")
    _write(store, KEY, ts, value)
    last_ns = int(ts.max())
    now_ns = last_ns + 60 * 10**9
    ForecastService(store, ForecastConfig(), FakeClock(now_ns)).run_once()
    _write(store, NEW_KEY, *read("RHair"))
    try:
        yield E2EData(store, KEY, NEW_KEY, "agc2018" if real else "synthetic", last_ns, now_ns)
    finally:
        store.close()


class ServedApp:
    """A uvicorn server for an ASGI app on its own thread, on a loopback port chosen by the OS."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self._sock]},
            name="e2e-uvicorn",
            daemon=True,
        )

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        self._sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Any], ServedApp]]:
    """`serve(app)` starts the app on a free loopback port; every server stops after the test."""
    running: list[ServedApp] = []

    def start(app: Any) -> ServedApp:
        served = ServedApp(app).__enter__()
        running.append(served)
        return served

    try:
        yield start
    finally:
        for served in reversed(running):
            served.__exit__()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Debian Chromium via the system chromedriver (Selenium Manager never runs)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"browser tests need Debian's chromium and chromedriver; missing {', '.join(missing)}"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,800",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": BROWSER_TZ})
        yield driver
    finally:
        driver.quit()
