"""The dashboard's alerts panel and derived series in a real browser (issue 7).

A store written for the test, with "now" the wall clock (the API's clock when no node runs): a
bay's air temperature above a 30 degC rule for the last 40 minutes, a forecast of it crossing
33 degC in two hours, a derived VPD series, and a humidity probe whose device name is HTML. The
rule engine runs once (AlertEngine.run), as a node's round would; then uvicorn serves the API and
headless Chromium (the greenhouse's time zone) opens the dashboard. Fixtures are in conftest.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from greennanny.alerts.config import AlertsConfig
from greennanny.alerts.engine import AlertEngine
from greennanny.api.app import create_app
from greennanny.config import Config
from greennanny.model import Batch, SeriesKey, round_to_resolution
from greennanny.store.duckdb import DuckDBStore

pytestmark = pytest.mark.e2e

S = 1_000_000_000
MIN = 60 * S
WAIT_S = 20
SITE, ZONE = "gh-north", "bay-1"
HTML_DEVICE = "<img src=x onerror=alert(1)>"
TEMP = SeriesKey(SITE, ZONE, "sht41-a", "air_temperature")
VPD = SeriesKey(SITE, ZONE, "derived", "vpd")
RH = SeriesKey(SITE, ZONE, HTML_DEVICE, "relative_humidity")
RULES = [
    {"name": "bay-heat", "quantity": "air_temperature", "value": 30.0, "clear": 29.0, "severity": "critical"},
    {
        "name": "bay-heat-ahead",
        "kind": "forecast",
        "quantity": "air_temperature",
        "value": 33.0,
        "horizon_h": 6,
        "probability": 0.5,
    },
    {"name": "bay-humid", "quantity": "relative_humidity", "value": 80.0, "for_s": 3 * 3600, "severity": "info"},
]
SILENCE_REASON = "fogging test <b>tonight</b>"
TRACES_JS = "return document.getElementById('plot').data.map(t => ({name: t.name, x: t.x, y: t.y}))"


@dataclass(frozen=True)
class Scene:
    store: DuckDBStore
    cfg: Config
    now_ns: int  # the engine's round
    made_ns: int  # the forecast's
    expected_ns: int  # its first step above 33 degC


def _write(store: DuckDBStore, key: SeriesKey, ts: np.ndarray, value: np.ndarray) -> None:
    index = np.zeros(len(ts), np.int32)
    store.write(Batch.from_columns([key], index, ts, round_to_resolution(value, [key.quantity], index)))


def _forecast(store: DuckDBStore, series_id: int, made_ns: int) -> int:
    """Six hours at 15-minute steps rising from 31.5 degC by 0.25 a step: above 33 from step 8."""
    step = 15 * MIN
    ts = made_ns + step * np.arange(1, 25, dtype=np.int64)
    mean = 31.5 + 0.25 * np.arange(24)
    run_id = store.next_run_id()
    sid = np.full(24, series_id, np.int32)
    store.write_forecasts(
        pd.DataFrame(
            {
                "run_id": [run_id],
                "series_id": np.array([series_id], np.int32),
                "made_ns": [made_ns],
                "start_ns": [int(ts[0])],
                "step_ns": [step],
                "horizon": np.array([24], np.int32),
                "model": ["ets"],
                "backtest_mae": [0.3],
                "backtest_mase": [0.8],
                "runner_up": ["naive"],
                "runner_up_mase": [1.0],
                "fallback_reason": [None],
            }
        ),
        pd.DataFrame(
            {
                "run_id": run_id,
                "series_id": sid,
                "ts": ts,
                "mean": mean,
                "lo80": mean - 0.6,
                "hi80": mean + 0.6,
                "lo95": mean - 0.9,
                "hi95": mean + 0.9,
            }
        ),
    )
    return int(ts[np.argmax(mean > 33.0)])


def build_scene(tmp_path: Path, *, hot: bool = True) -> Scene:
    now = time.time_ns() // MIN * MIN
    ts = now - 2 * MIN - 5 * MIN * np.arange(72, dtype=np.int64)[::-1]  # 6 h, the last 2 min ago
    temp = np.full(len(ts), 24.0)
    if hot:
        temp[-8:] = 31.0 + 0.1 * np.arange(8)  # the last 40 minutes above 30, up to 31.7
    store = DuckDBStore(tmp_path / "alerts.duckdb")
    _write(store, TEMP, ts, temp)
    _write(store, VPD, ts, 0.8 + 0.4 * np.sin(np.arange(len(ts)) / 10.0))
    _write(store, RH, ts, np.full(len(ts), 86.0))
    made = now - MIN
    expected = -1
    if hot:
        (temp_info,) = store.series(quantity="air_temperature")
        expected = _forecast(store, temp_info.id, made)
    cfg = Config(alerts=AlertsConfig.model_validate({"rules": RULES}))
    AlertEngine(store, cfg.alerts).run(now)  # one round, as the node runs them
    return Scene(store, cfg, now, made, expected)


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    s = build_scene(tmp_path)
    try:
        yield s
    finally:
        s.store.close()


def wait(driver: Any, what: str, check: Callable[[Any], Any]) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S).until(check, what)


def wait_for_plot(driver: Any, series_id: int) -> None:
    wait(
        driver,
        f"the plot of series {series_id} never drew",
        lambda d: d.execute_script(
            "const p = document.getElementById('plot');"
            "return p.dataset.state === 'ready' && Array.isArray(p.data) && p.dataset.seriesId === arguments[0];",
            str(series_id),
        ),
    )


def alerts_ready(driver: Any, count: int) -> None:
    wait(
        driver,
        f"the alerts panel never listed {count} alert(s)",
        lambda d: d.execute_script(
            "return document.getElementById('alerts').dataset.state === 'ready'"
            " && document.querySelectorAll('#alert-list > li.alert').length === arguments[0];",
            count,
        ),
    )


def local(iso: str, tz: str, fmt: str = "%H:%M") -> str:
    return pd.Timestamp(iso).tz_convert(tz).strftime(fmt)


def page_time(iso: str, tz: str) -> str:
    """As the page writes a time: "14:30" today (in the browser's zone), else with the date."""
    t = pd.Timestamp(iso).tz_convert(tz)
    return t.strftime("%H:%M" if t.date() == pd.Timestamp.now(tz=tz).date() else "%Y-%m-%d %H:%M")


def minutes(text: str, pattern: str) -> int:
    """Minutes in a relative time such as "(41 min ago)" or "in 1 h 59 min"."""
    m = re.search(pattern, text)
    assert m, (pattern, text)
    h, mins = m.group("h"), m.group("m")
    return (int(h) if h else 0) * 60 + int(mins)


def fig(item: Any, cls: str) -> str:
    return str(item.find_element("css selector", f".fig.{cls} strong").text)


def browser_tz(driver: Any) -> str:
    return str(driver.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone"))


def test_open_alerts_shown_plotted_and_acknowledged(scene: Scene, serve: Callable[[Any], Any], browser: Any) -> None:
    served = serve(create_app(scene.cfg, scene.store))
    client = httpx.Client(base_url=served.url, timeout=10)
    assert (
        client.post(
            "/alerts/silence", json={"rule": "bay-humid", "minutes": 120, "actor": "carol", "reason": SILENCE_REASON}
        ).status_code
        == 200
    )
    body = client.get("/alerts", params={"state": "open"}).json()
    heat = next(a for a in body["alerts"] if a["rule"] == "bay-heat")
    ahead = next(a for a in body["alerts"] if a["rule"] == "bay-heat-ahead")
    assert len(body["alerts"]) == 2 and [p["rule"] for p in body["pending"]] == ["bay-humid"]
    temp_id = heat["series_id"]

    browser.get(served.url + "/")
    alerts_ready(browser, 2)
    tz = browser_tz(browser)
    items = browser.find_elements("css selector", "#alert-list > li.alert")
    # Newest first: the forecast alert fired a minute ago, the heat alert 40 minutes ago.
    assert [i.get_attribute("data-alert-id") for i in items] == [str(ahead["alert_id"]), str(heat["alert_id"])]
    badge = browser.find_element("id", "alert-count")
    assert badge.text == "2" and badge.get_attribute("data-level") == "critical"
    assert browser.title == "(2) greennanny"

    # The heat alert: severity, rule, series, value, peak and threshold with the unit, when it fired.
    item = items[1]
    assert item.get_attribute("data-severity") == "critical"
    assert item.find_element("css selector", ".severity").text.lower() == "critical"
    assert item.find_element("css selector", ".alert-rule").text == "bay-heat"
    assert item.find_element("css selector", ".alert-series").text == f"{SITE} / {ZONE} / sht41-a / air temperature"
    assert heat["value"] == 31.7 and heat["peak"] == 31.7 and heat["threshold"] == 30.0
    assert fig(item, "value") == "31.7 °C"
    assert fig(item, "peak") == "31.7 °C"
    assert fig(item, "threshold") == "above 30 °C"
    fired = item.find_element("css selector", ".fired").text
    assert fired.startswith(f"fired {page_time(heat['fired'], tz)} ("), fired
    ago = (time.time_ns() - pd.Timestamp(heat["fired"]).value) / MIN
    assert abs(minutes(fired, r"\((?:(?P<h>\d+) h )?(?P<m>\d+) min ago\)") - ago) <= 1.5, fired
    assert "not acknowledged" in item.text

    # The forecast alert: probability, its threshold and the expected crossing ("expected 14:30, in 2 h").
    fc_item = items[0]
    assert fig(fc_item, "probability") == f"{round(ahead['value'] * 100)} %" and ahead["value"] >= 0.5
    assert fig(fc_item, "threshold") == "above 33 °C"
    expected_iso = ahead["detail"].get("expected") or ahead["detail"]["expected_ns"]
    assert pd.Timestamp(expected_iso).value == scene.expected_ns
    expected_text = fig(fc_item, "expected")
    assert expected_text.startswith(f"{page_time(expected_iso, tz)}, in "), expected_text
    to_go = (scene.expected_ns - time.time_ns()) / MIN
    assert abs(minutes(expected_text, r"in (?:(?P<h>\d+) h )?(?P<m>\d+) min") - to_go) <= 1.5, expected_text

    # Pending conditions and silences, quietly below.
    pending = browser.find_element("id", "alert-pending")
    assert pending.is_displayed() and "bay-humid" in pending.text and "fires after 3 h" in pending.text
    silences = browser.find_element("id", "alert-silences")
    assert silences.is_displayed() and "carol" in silences.text
    assert silences.find_element("css selector", ".silence-reason").text == f": {SILENCE_REASON}"

    # Clicking the heat alert plots its series with both alerts' thresholds and the expected crossing.
    item.find_element("css selector", ".alert-select").click()
    wait_for_plot(browser, temp_id)
    assert browser.execute_script("return location.hash") == f"#series={temp_id}"
    assert "on-plot" in item.get_attribute("class")
    shapes = browser.execute_script("return document.getElementById('plot').layout.shapes")
    by_name = {s.get("name"): s for s in shapes}
    assert by_name["threshold bay-heat"]["y0"] == by_name["threshold bay-heat"]["y1"] == 30
    assert by_name["threshold bay-heat-ahead"]["y0"] == 33
    crossing = by_name["expected crossing bay-heat-ahead"]
    assert crossing["x0"] == crossing["x1"] == local(expected_iso, tz, "%Y-%m-%d %H:%M:%S")
    names = [t["name"] for t in browser.execute_script(TRACES_JS)]
    assert "actual" in names and "forecast (ets)" in names

    # Acknowledge: a name (remembered for next time) and a note; the API and the page say who.
    assert browser.execute_script("return localStorage.getItem('greennanny.ack-name')") is None
    item.find_element("css selector", ".ack-open").click()
    form = item.find_element("css selector", ".ack-form")
    assert form.is_displayed()
    actor = form.find_element("css selector", ".ack-actor")
    assert actor.get_attribute("value") == ""
    actor.send_keys("alice")
    form.find_element("css selector", ".ack-note-input").send_keys("vents opened")
    form.find_element("css selector", ".ack-submit").click()
    wait(browser, "the alert never showed its acknowledgement", lambda _: item.get_attribute("data-acked") == "true")
    got = client.get(f"/alerts/{heat['alert_id']}").json()
    assert got["acked_by"] == "alice" and got["ack_note"] == "vents opened" and got["state"] == "firing"
    assert item.find_element("css selector", ".acked-by").text == "alice"
    assert "vents opened" in item.find_element("css selector", ".alert-ack").text
    assert not item.find_element("css selector", ".ack-open").is_displayed()
    assert badge.get_attribute("data-level") == "warning" and browser.title == "(1) greennanny"

    # The other alert's form remembers the name; meanwhile bob takes it from the CLI: the page shows
    # the API's refusal, then who has it.
    fc_item.find_element("css selector", ".ack-open").click()
    fc_actor = fc_item.find_element("css selector", ".ack-actor")
    assert fc_actor.get_attribute("value") == "alice"
    taken = client.post(f"/alerts/{ahead['alert_id']}/ack", json={"actor": "bob", "note": ""})
    assert taken.status_code == 200, taken.text
    fc_item.find_element("css selector", ".ack-submit").click()
    error = fc_item.find_element("css selector", ".ack-error")
    wait(browser, "the refused acknowledgement was not shown", lambda _: error.is_displayed())
    refusal = client.post(f"/alerts/{ahead['alert_id']}/ack", json={"actor": "x"}).json()["error"]["message"]
    assert "already acknowledged by bob" in refusal
    assert refusal in error.text
    wait(
        browser, "the page never showed bob's acknowledgement", lambda _: fc_item.get_attribute("data-acked") == "true"
    )
    assert fc_item.find_element("css selector", ".acked-by").text == "bob"
    assert browser.title == "greennanny"
    # No script errors; the failed requests logged are the refused POST and the 404 of a series
    # without a forecast (the humidity, plotted first), both expected.
    severe = [
        e["message"]
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE"
        and not re.search(r"/alerts/\d+/ack - .* 400|/series/\d+/forecast - .* 404", e["message"])
    ]
    assert not severe, severe


def test_derived_series_in_the_picker_and_html_in_names_shown_as_text(
    scene: Scene, serve: Callable[[Any], Any], browser: Any
) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    served = serve(create_app(scene.cfg, scene.store))
    client = httpx.Client(base_url=served.url, timeout=10)
    series = client.get("/series").json()
    vpd = next(s for s in series if s["key"] == str(VPD))
    rh = next(s for s in series if s["key"] == str(RH))
    temp = next(s for s in series if s["key"] == str(TEMP))

    browser.get(served.url + "/")
    alerts_ready(browser, 2)
    wait_for_plot(browser, rh["id"])  # the first series by key: "<" sorts before letters

    # VPD is under the zone, in its "derived" group, with its unit; the sensors are not.
    group = browser.find_element("css selector", ".zone .derived-group")
    assert group.find_element("css selector", ".derived-head").text.lower() == "derived"
    button = group.find_element("css selector", f'.series-item[data-series-id="{vpd["id"]}"]')
    assert button.find_element("css selector", ".quantity").text == "VPD"
    assert button.find_element("css selector", ".unit").text == "kPa"
    assert button.find_element("css selector", ".device").text == "vapour pressure deficit"
    assert not group.find_elements("css selector", f'.series-item[data-series-id="{temp["id"]}"]')
    assert len(browser.find_elements("css selector", f'.series-item[data-series-id="{vpd["id"]}"]')) == 1
    button.click()
    wait_for_plot(browser, vpd["id"])
    attrs = browser.execute_script("const p = document.getElementById('plot'); return [p.dataset.start, p.dataset.end]")
    points = client.get(f"/series/{vpd['id']}/points", params={"start": attrs[0], "end": attrs[1]}).json()
    (actual,) = [t for t in browser.execute_script(TRACES_JS) if t["name"] == "actual"]
    assert len(actual["y"]) == len(points["value"]) == 72 and actual["y"] == points["value"]
    assert browser.execute_script("return document.getElementById('plot').layout.yaxis.title.text") == "VPD (kPa)"
    assert browser.find_element("id", "forecast-info").text == "no forecast yet"
    assert not browser.find_element("id", "error").is_displayed()

    # A device named with HTML is text everywhere: the picker, the pending condition, no <img> made.
    rh_button = browser.find_element("css selector", f'.series-item[data-series-id="{rh["id"]}"]')
    assert rh_button.find_element("css selector", ".device").text == HTML_DEVICE
    pending = browser.find_element("css selector", "#alert-pending .alert-series")
    assert pending.text == f"{SITE} / {ZONE} / {HTML_DEVICE} / relative humidity"
    assert browser.execute_script("return document.querySelectorAll('#series-list img, #alerts img').length") == 0
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 (an onerror=alert(1) that ran would have opened one)


def test_alerts_error_shown_then_no_open_alerts(tmp_path: Path, serve: Callable[[Any], Any], browser: Any) -> None:
    calm = build_scene(tmp_path, hot=False)
    app = create_app(calm.cfg, calm.store)
    failing = {"on": True}

    @app.middleware("http")
    async def store_busy(request: Any, call_next: Any) -> Any:  # the API's own error envelope
        from fastapi.responses import JSONResponse

        if failing["on"] and request.url.path == "/alerts":
            return JSONResponse(
                status_code=503,
                content={"error": {"code": "store_unavailable", "message": "store busy: maintenance holds the lock"}},
            )
        return await call_next(request)

    try:
        served = serve(app)
        browser.get(served.url + "/")
        error = browser.find_element("id", "error")
        wait(browser, "the alerts error was not shown", lambda _: error.is_displayed())
        assert "alerts: store busy: maintenance holds the lock" in error.text
        assert browser.find_element("id", "alert-count").text == "?"
        assert browser.find_element("id", "alert-list").text == "alerts unavailable"

        failing["on"] = False
        browser.execute_script("document.dispatchEvent(new Event('visibilitychange'))")  # back to the tab
        alerts_ready(browser, 0)
        assert browser.find_element("id", "alert-list").text == "No open alerts."
        assert browser.find_element("id", "alert-count").text == "0"
        assert not browser.find_element("id", "error").is_displayed()
        assert "bay-humid" in browser.find_element("id", "alert-pending").text  # still pending, not firing
    finally:
        calm.store.close()
