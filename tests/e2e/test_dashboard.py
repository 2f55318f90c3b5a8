"""The dashboard in a real browser: what it plots is exactly what the API serves.

Each test serves the app with uvicorn on a free loopback port, drives headless Chromium (set to
the greenhouse's time zone) and compares the page's plotly traces with the API's answer for the
same window (read from the plot's data-start/data-end). Fixtures are in conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from greennanny.api.app import create_app
from greennanny.config import Config, config_from_dict, write_token

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WAIT_S = 30
TRACES_JS = "return document.getElementById('plot').data.map(t => ({name: t.name, x: t.x, y: t.y}))"


def wall_clock(iso: str, tz: str) -> str:
    """An API timestamp as the page plots it: the browser's wall clock, to the second."""
    return pd.Timestamp(iso).tz_convert(tz).strftime("%Y-%m-%d %H:%M:%S")


def browser_tz(driver: Any) -> str:
    return str(driver.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone"))


def wait_for_plot(driver: Any, series_id: int | None = None) -> None:
    """Until the plot says it is drawn (for `series_id`, when given)."""
    from selenium.webdriver.support.ui import WebDriverWait

    want = "" if series_id is None else str(series_id)

    def drawn(d: Any) -> bool:
        return bool(
            d.execute_script(
                "const p = document.getElementById('plot');"
                "return p.dataset.state === 'ready' && Array.isArray(p.data)"
                " && (!arguments[0] || p.dataset.seriesId === arguments[0]);",
                want,
            )
        )

    WebDriverWait(driver, WAIT_S).until(
        drawn, f"the plot of series {want or '(default)'} never drew"
    )


def plot_attrs(driver: Any) -> dict[str, str]:
    plot = driver.find_element("id", "plot")
    return {a: plot.get_attribute(f"data-{a}") for a in ("series-id", "start", "end")}


def series_id(client: httpx.Client, key: Any) -> int:
    return next(s["id"] for s in client.get("/series").json() if s["key"] == str(key))


def test_dashboard_plots_what_the_api_serves(
    e2e_data: Any, serve: Callable[[Any], Any], browser: Any
) -> None:
    served = serve(create_app(Config(), e2e_data.store))
    client = httpx.Client(base_url=served.url, timeout=10)
    sid = series_id(client, e2e_data.key)

    browser.get(served.url + "/")
    wait_for_plot(browser)
    attrs = plot_attrs(browser)
    traces = browser.execute_script(TRACES_JS)

    # The default selection is the first series (sorted by key), and the address says so.
    first = client.get("/series").json()[0]
    assert first["id"] == sid
    assert attrs["series-id"] == str(sid)
    assert browser.execute_script("return location.hash") == f"#series={sid}"

    # The window is the week before the last reading, its end just past it.
    last = pd.Timestamp(first["last"])
    assert pd.Timestamp(attrs["start"]) == last - pd.Timedelta(days=7)
    assert pd.Timestamp(attrs["end"]) == last + pd.Timedelta(seconds=1)

    points = client.get(
        f"/series/{sid}/points", params={"start": attrs["start"], "end": attrs["end"]}
    )
    assert points.status_code == 200, points.text
    api_points = points.json()
    assert api_points["ts"][-1] == first["last"]  # the window includes the last reading

    actual = [t for t in traces if t["name"] == "actual"]
    assert len(actual) == 1, [t["name"] for t in traces]
    (actual_trace,) = actual
    assert len(actual_trace["x"]) == len(api_points["ts"]) > 1000
    assert actual_trace["y"][-1] == api_points["value"][-1]
    tz = browser_tz(browser)
    assert actual_trace["x"][-1] == wall_clock(api_points["ts"][-1], tz)
    assert actual_trace["x"][0] == wall_clock(api_points["ts"][0], tz)

    # The forecast the service made: mean as a line, the 80% interval as a band.
    got = client.get(f"/series/{sid}/forecast")
    assert got.status_code == 200, got.text
    fc = got.json()
    assert len(fc["mean"]) == 96  # 24 h at 15-minute steps
    forecast = [t for t in traces if t["name"] == f"forecast ({fc['model']})"]
    assert len(forecast) == 1, [t["name"] for t in traces]
    (fc_trace,) = forecast
    assert len(fc_trace["x"]) == len(fc["mean"])
    assert fc_trace["y"] == fc["mean"]
    assert pd.Timestamp(fc_trace["x"][0]) > pd.Timestamp(actual_trace["x"][-1])
    band = [t for t in traces if t["name"] == "80% interval"]
    assert [t["y"] for t in band] == [fc["lo80"], fc["hi80"]]

    # Axis, text under the plot, the series list and the header.
    y_title = browser.execute_script(
        "return document.getElementById('plot').layout.yaxis.title.text"
    )
    assert y_title == "air temperature (°C)"
    info = browser.find_element("id", "forecast-info").text
    assert fc["model"] in info and "backtest MASE" in info and "made at" in info
    if fc["backtest_mase"] is not None:
        assert f"{fc['backtest_mase']:.2f}" in info
    item = browser.find_element("css selector", f'.series-item[data-series-id="{sid}"]')
    shown = item.find_element("css selector", ".value").text  # "23.6 °C"
    number, unit = shown.split()
    assert unit == "°C"
    assert abs(float(number) - first["last_value"]) <= 0.05
    assert "selected" in item.get_attribute("class")
    assert "dead letters: 0" in browser.find_element("id", "deadletters").text
    assert "node ok" in browser.find_element("id", "health").text
    assert not browser.find_element("id", "error").is_displayed()
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe  # no script errors, no failed requests

    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))


def test_series_without_forecast_and_selection_by_address(
    e2e_data: Any, serve: Callable[[Any], Any], browser: Any
) -> None:
    served = serve(create_app(Config(), e2e_data.store))
    client = httpx.Client(base_url=served.url, timeout=10)
    rh, temp = series_id(client, e2e_data.new_key), series_id(client, e2e_data.key)
    assert client.get(f"/series/{rh}/forecast").status_code == 404

    browser.get(f"{served.url}/#series={rh}")
    wait_for_plot(browser, rh)
    assert [t["name"] for t in browser.execute_script(TRACES_JS)] == ["actual"]
    assert browser.find_element("id", "forecast-info").text == "no forecast yet"
    assert not browser.find_element("id", "error").is_displayed()  # a 404 forecast is no error
    y_title = browser.execute_script(
        "return document.getElementById('plot').layout.yaxis.title.text"
    )
    assert y_title == "relative humidity (%)"

    browser.find_element("css selector", f'.series-item[data-series-id="{temp}"]').click()
    wait_for_plot(browser, temp)
    assert browser.execute_script("return location.hash") == f"#series={temp}"
    names = [t["name"] for t in browser.execute_script(TRACES_JS)]
    assert "actual" in names and any(n.startswith("forecast (") for n in names)


def test_token_required_off_loopback_and_cookie_from_address(
    e2e_data: Any, serve: Callable[[Any], Any], browser: Any, tmp_path: Path
) -> None:
    write_token(tmp_path / "api_token")
    cfg = config_from_dict(
        {"api": {"host": "0.0.0.0", "token_file": "api_token"}}, base_dir=tmp_path
    )
    token = cfg.api_token()
    assert token
    served = serve(create_app(cfg, e2e_data.store))  # still served on loopback: only cfg differs
    client = httpx.Client(base_url=served.url, timeout=10)

    denied = client.get("/series")
    assert denied.status_code == 401
    body = denied.json()
    assert set(body) == {"error"} and body["error"]["code"] == "unauthorized"
    assert "token" in body["error"]["message"]
    assert client.get("/health").status_code == 200
    page = client.get("/")
    assert page.status_code == 401 and "API token" in page.text  # a sign-in page, not raw JSON
    authed = client.get("/series", headers={"Authorization": f"Bearer {token}"})
    assert authed.status_code == 200
    temp = next(s["id"] for s in authed.json() if s["key"] == str(e2e_data.key))
    rh = next(s["id"] for s in authed.json() if s["key"] == str(e2e_data.new_key))

    browser.get(f"{served.url}/?token={token}")
    wait_for_plot(browser, temp)
    names = [t["name"] for t in browser.execute_script(TRACES_JS)]
    assert "actual" in names and any(n.startswith("forecast (") for n in names)
    assert "token" not in browser.current_url  # moved into the cookie, out of the address bar
    assert any(c["name"] == "gn_token" and c["httpOnly"] for c in browser.get_cookies())

    # Without the cookie the API refuses, and the page shows the API's message.
    from selenium.webdriver.support.ui import WebDriverWait

    browser.delete_all_cookies()
    browser.execute_script("location.hash = arguments[0]", f"series={rh}")
    error = browser.find_element("id", "error")
    WebDriverWait(browser, WAIT_S).until(lambda _: error.is_displayed(), "no error box shown")
    assert body["error"]["message"] in error.text
