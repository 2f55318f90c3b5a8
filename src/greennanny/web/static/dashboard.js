// The greennanny dashboard: open alerts on top, series list on the left (measured series, then
// each zone's derived ones), the selected series and its forecast on the right, with the
// thresholds of its open alerts (that panel and those marks: dashboard_alerts.js, loaded first).
// Plain JavaScript on the node's own API (same origin, cookie credentials), no build step. Every
// string from the API goes in as text (textContent), never as HTML: device names and notes are
// typed by people.
//
// Times: the API speaks UTC ISO 8601; the plot shows the browser's wall clock (a grower reads
// "14:00" as greenhouse time), and says which time zone that is under the plot.
"use strict";

(() => {
  const DAY_MS = 86_400_000;
  const WINDOW_DAYS = 7;
  const REFRESH_MS = 60_000;
  const DERIVED_DEVICE = "derived";

  const UNIT_LABELS = {
    degC: "°C",
    "umol/m2/s": "µmol/m²/s",
    "mol/m2/d": "mol/m²/d",
    "g/m3": "g/m³",
    "mg/m3": "mg/m³",
    "ug/m3": "µg/m³",
    "degC d": "°C·d",
    "degC*d": "°C·d",
  };
  const QUANTITY_LABELS = {
    co2: "CO₂",
    vpd: "VPD",
    ppfd: "PPFD",
    dli: "DLI",
    tvoc: "TVOC",
    pm2_5: "PM2.5",
    pm10: "PM10",
    soil_ec: "substrate EC",
    vpd_leaf: "leaf VPD",
    gdd: "GDD",
  };
  // What a derived series is, for the picker (the node computes them per zone from its readings).
  const DERIVED_DESCRIPTIONS = {
    vpd: "vapour pressure deficit",
    vpd_leaf: "vapour pressure deficit at the leaf",
    dew_point: "dew point temperature",
    dew_point_margin: "air above dew point (condensation risk)",
    absolute_humidity: "water vapour in the air",
    humidity_deficit: "water the air can still take up",
    saturation_vapour_pressure: "saturation vapour pressure",
    vapour_pressure: "vapour pressure",
    dli: "daily light integral",
    gdd: "growing degree days",
  };
  const WHOLE_UNITS = new Set(["bool", "count", "level"]);

  const state = {
    series: [],
    selectedId: null,
    shownLast: null,
    seq: 0,
    errors: new Map(),
  };
  const $ = (id) => document.getElementById(id);

  // -- small helpers ------------------------------------------------------------------------
  const unitLabel = (unit) => UNIT_LABELS[unit] ?? unit ?? "";
  const quantityLabel = (q) => QUANTITY_LABELS[q] ?? q.replace(/_/g, " ");

  function formatValue(v, unit) {
    if (v === null || v === undefined || !Number.isFinite(v)) return "–";
    if (WHOLE_UNITS.has(unit)) return String(Math.round(v));
    const a = Math.abs(v);
    return v.toFixed(a >= 100 ? 0 : a >= 1 ? 1 : 2);
  }

  // "2018-12-06T23:55:00.123456Z" -> epoch ms (Date keeps milliseconds only).
  const isoToMs = (iso) => Date.parse(iso.replace(/(\.\d{3})\d+/, "$1"));
  const pad = (n, w = 2) => String(n).padStart(w, "0");

  // Epoch ms -> "YYYY-MM-DD HH:MM:SS[.mmm]" in the browser's time zone (what plotly plots).
  function wallClock(ms) {
    const d = new Date(ms);
    const base =
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return d.getMilliseconds() ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
  }
  const shortWallClock = (ms) => wallClock(ms).slice(0, 16);
  const timeZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";

  // Children are nodes or strings; strings become text nodes (never parsed as HTML).
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k.startsWith("data-") || k.startsWith("aria-") || k === "role") node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }


  // -- the API ------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, params = {}, { method = "GET", json } = {}) {
    const url = new URL(path, window.location.origin);
    for (const [k, v] of Object.entries(params)) {
      if (v !== null && v !== undefined) url.searchParams.set(k, v);
    }
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    let resp;
    try {
      resp = await fetch(url, init);
    } catch (exc) {
      throw new ApiError(0, "network", `cannot reach the node (${exc.message})`);
    }
    let body = null;
    try {
      body = await resp.json();
    } catch {
      body = null;
    }
    if (!resp.ok) {
      const err = body && body.error;
      let message = (err && err.message) || `${url.pathname} answered ${resp.status} ${resp.statusText}`;
      if (resp.status === 401) message += " — open the dashboard as /?token=<your API token> to sign in";
      throw new ApiError(resp.status, (err && err.code) || "http_error", message);
    }
    if (body === null) throw new ApiError(resp.status, "bad_response", `${url.pathname} did not answer JSON`);
    return body;
  }

  // One visible error box; each source (series list, plot, ...) owns one line and clears it
  // when it next succeeds.
  function setError(source, message) {
    if (message) state.errors.set(source, message);
    else state.errors.delete(source);
    const box = $("error");
    box.replaceChildren(...[...state.errors.values()].map((m) => el("div", {}, m)));
    box.hidden = state.errors.size === 0;
  }

  // -- header: node health and dead letters -------------------------------------------------
  async function refreshHeader() {
    const health = $("health");
    try {
      const h = await api("/health");
      const parts = [`node ${h.status}`, `v${h.version}`];
      let level = h.status === "ok" ? "ok" : "warn";
      if (h.mqtt_connected !== undefined) {
        parts.push(h.mqtt_connected ? "MQTT connected" : "MQTT disconnected");
        if (!h.mqtt_connected) level = "warn";
      }
      if (h.points_stored !== undefined) parts.push(`${h.points_stored.toLocaleString("en")} points stored`);
      health.querySelector(".label").textContent = parts.join(" · ");
      health.dataset.level = level;
      setError("health", null);
    } catch (exc) {
      health.querySelector(".label").textContent = "node unreachable";
      health.dataset.level = "bad";
      setError("health", `health: ${exc.message}`);
    }
    const dl = $("deadletters");
    try {
      const d = await api("/deadletters", { limit: 1 });
      const counts = d.counts || {};
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      dl.textContent = `dead letters: ${total.toLocaleString("en")}`;
      dl.dataset.level = total ? "warn" : "ok";
      dl.dataset.count = String(total);
      dl.title = total
        ? Object.entries(counts).map(([r, n]) => `${r}: ${n}`).join("\n")
        : "no dead letters";
      setError("deadletters", null);
    } catch (exc) {
      dl.textContent = "dead letters: ?";
      dl.dataset.level = "bad";
      setError("deadletters", `dead letters: ${exc.message}`);
    }
  }

  // -- left: sites > zones > series (measured, then derived) --------------------------------
  function seriesButton(s) {
    const derived = s.device === DERIVED_DEVICE;
    const value = el(
      "span",
      { class: "value" },
      formatValue(s.last_value, s.unit),
      el("span", { class: "unit" }, ` ${unitLabel(s.unit)}`),
    );
    const button = el(
      "button",
      {
        class: derived ? "series-item derived" : "series-item",
        type: "button",
        title: `${s.key}\nlast reading ${s.last ? shortWallClock(isoToMs(s.last)) : "none"}` +
          `\n${s.points.toLocaleString("en")} readings` +
          (derived ? "\ncomputed on the node from this zone's readings" : ""),
        "data-series-id": String(s.id),
        "data-value": String(s.last_value),
        "data-unit": s.unit,
        "data-derived": derived ? "true" : "false",
      },
      el("span", { class: "quantity" }, quantityLabel(s.quantity)),
      value,
      el("span", { class: "device" }, derived ? (DERIVED_DESCRIPTIONS[s.quantity] ?? "derived") : s.device),
    );
    button.addEventListener("click", () => choose(s.id));
    return el("li", {}, button);
  }

  function renderSeriesList() {
    const list = $("series-list");
    if (!state.series.length) {
      list.replaceChildren(el("p", { class: "muted" }, "No series yet. Data appears here once the node stores readings."));
      return;
    }
    const sites = new Map();
    for (const s of state.series) {
      if (!sites.has(s.site)) sites.set(s.site, new Map());
      const zones = sites.get(s.site);
      if (!zones.has(s.zone)) zones.set(s.zone, []);
      zones.get(s.zone).push(s);
    }
    const out = [];
    for (const [site, zones] of sites) {
      const siteNode = el("section", { class: "site" }, el("h3", { class: "site-name" }, site));
      for (const [zone, items] of zones) {
        const zoneNode = el("div", { class: "zone" }, el("h4", { class: "zone-name" }, zone));
        const measured = items.filter((s) => s.device !== DERIVED_DEVICE);
        const derived = items.filter((s) => s.device === DERIVED_DEVICE);
        if (measured.length) zoneNode.append(el("ul", { class: "zone-items" }, ...measured.map(seriesButton)));
        if (derived.length) {
          zoneNode.append(
            el(
              "div",
              { class: "derived-group", role: "group", "aria-label": `${zone}: derived` },
              el("h5", { class: "derived-head", title: "computed on the node from this zone's readings" }, "derived"),
              el("ul", { class: "zone-items" }, ...derived.map(seriesButton)),
            ),
          );
        }
        siteNode.append(zoneNode);
      }
      out.push(siteNode);
    }
    list.replaceChildren(...out);
    markSelected();
  }

  function markSelected() {
    for (const b of document.querySelectorAll(".series-item")) {
      const on = Number(b.dataset.seriesId) === state.selectedId;
      b.classList.toggle("selected", on);
      b.setAttribute("aria-current", on ? "true" : "false");
    }
    alerts.markSelected();
  }

  async function loadSeries() {
    try {
      state.series = await api("/series");
      setError("series", null);
    } catch (exc) {
      setError("series", `series list: ${exc.message}`);
      if (!state.series.length) $("series-list").replaceChildren(el("p", { class: "muted" }, "series list unavailable"));
      return false;
    }
    renderSeriesList();
    return true;
  }

  // -- selection and the URL hash -----------------------------------------------------------
  function hashSeriesId() {
    const m = /(?:^#|&)series=(\d+)/.exec(window.location.hash);
    return m ? Number(m[1]) : null;
  }

  function choose(id) {
    if (hashSeriesId() === id) showSeries(id);
    else window.location.hash = `series=${id}`; // hashchange does the rest
  }

  function selectFromHash() {
    if (!state.series.length) return;
    let id = hashSeriesId();
    if (id !== null && !state.series.some((s) => s.id === id)) {
      setError("selection", `series ${id} (from the address) does not exist; showing the first series`);
      id = null;
    } else {
      setError("selection", null);
    }
    if (id === null) {
      id = state.series[0].id;
      history.replaceState(null, "", `${window.location.pathname}#series=${id}`);
    }
    showSeries(id);
  }

  // -- right: the plot ----------------------------------------------------------------------
  async function showSeries(id) {
    const seq = ++state.seq;
    const s = state.series.find((x) => x.id === id);
    state.selectedId = id;
    markSelected();
    const plot = $("plot");
    const qlabel = quantityLabel(s.quantity);
    $("series-title").textContent = `${qlabel} · ${s.site} / ${s.zone}`;
    $("series-sub").textContent = `${s.device} · series ${s.id} · ${s.key}`;
    plot.dataset.seriesId = String(id);
    plot.dataset.state = "loading";
    state.shownLast = s.last;
    if (!s.last) {
      window.Plotly.purge(plot);
      plot.removeAttribute("data-start");
      plot.removeAttribute("data-end");
      plot.replaceChildren(el("p", { class: "placeholder" }, "no readings yet"));
      $("forecast-info").textContent = "";
      $("window-info").textContent = "";
      plot.dataset.state = "ready";
      return;
    }
    // The week before the last reading; `end` is exclusive, so one second past the last one.
    const lastMs = isoToMs(s.last);
    const start = new Date(lastMs - WINDOW_DAYS * DAY_MS).toISOString();
    const end = new Date(lastMs + 1000).toISOString();
    plot.dataset.start = start;
    plot.dataset.end = end;

    const forecastOrNull = api(`/series/${id}/forecast`).catch((exc) => {
      if (exc.status === 404) return null; // no forecast yet: a normal state, not an error
      return exc;
    });
    let points;
    try {
      points = await api(`/series/${id}/points`, { start, end });
    } catch (exc) {
      if (seq !== state.seq) return;
      setError("plot", `readings of series ${id}: ${exc.message}`);
      plot.dataset.state = "error";
      return;
    }
    const forecast = await forecastOrNull;
    if (seq !== state.seq) return; // the user picked another series meanwhile
    setError("plot", null);
    const fc = forecast instanceof ApiError ? null : forecast;
    setError("forecast", forecast instanceof ApiError ? `forecast of series ${id}: ${forecast.message}` : null);

    // The text under the plot first, so the plot is sized to the room that is left.
    renderForecastInfo(forecast);
    $("window-info").textContent =
      `${points.ts.length.toLocaleString("en")} readings, ${WINDOW_DAYS} days to ` +
      `${shortWallClock(lastMs)} · times in ${timeZone()}`;
    await drawPlot(plot, s, points, fc);
    if (seq !== state.seq) return;
    plot.dataset.state = "ready";
  }

  async function drawPlot(plot, s, points, fc) {
    const unit = unitLabel(s.unit);
    const ax = points.ts.map((t) => wallClock(isoToMs(t)));
    const traces = [];
    if (fc) {
      const fx = fc.ts.map((t) => wallClock(isoToMs(t)));
      const band = { type: "scatter", mode: "lines", x: fx, line: { width: 0 }, legendgroup: "band" };
      traces.push({ ...band, name: "80% interval", y: fc.lo80, showlegend: false, hovertemplate: `low %{y:.2f} ${unit}` });
      traces.push({
        ...band,
        name: "80% interval",
        y: fc.hi80,
        fill: "tonexty",
        fillcolor: "rgba(221, 107, 32, 0.18)",
        legendrank: 3,
        hovertemplate: `high %{y:.2f} ${unit}`,
      });
    }
    traces.push({
      type: "scatter",
      mode: "lines",
      name: "actual",
      x: ax,
      y: points.value,
      line: { color: "#2b6cb0", width: 1.5 },
      legendrank: 1,
      hovertemplate: `%{y:.2f} ${unit}`,
    });
    if (fc) {
      traces.push({
        type: "scatter",
        mode: "lines",
        name: `forecast (${fc.model})`,
        x: fc.ts.map((t) => wallClock(isoToMs(t))),
        y: fc.mean,
        line: { color: "#dd6b20", width: 2 },
        legendrank: 2,
        hovertemplate: `%{y:.2f} ${unit}`,
      });
    }
    const lastX = ax.length ? ax[ax.length - 1] : null;
    const layout = {
      margin: { l: 64, r: 20, t: 36, b: 44 },
      hovermode: "x unified",
      legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom" },
      font: { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#2d3748" },
      paper_bgcolor: "#ffffff",
      plot_bgcolor: "#ffffff",
      xaxis: { type: "date", gridcolor: "#edf2f7", linecolor: "#cbd5e0", hoverformat: "%Y-%m-%d %H:%M" },
      yaxis: {
        title: { text: `${quantityLabel(s.quantity)} (${unit})` },
        gridcolor: "#edf2f7",
        zeroline: false,
        linecolor: "#cbd5e0",
      },
    };
    const baseShapes = lastX
      ? [{ type: "line", name: "last reading", xref: "x", yref: "paper", x0: lastX, x1: lastX, y0: 0, y1: 1,
           line: { color: "#a0aec0", width: 1, dash: "dot" } }]
      : [];
    layout.shapes = alerts.plotShapes(s, baseShapes); // with the thresholds of the open alerts
    const placeholder = plot.querySelector(":scope > .placeholder"); // left by a series without readings
    if (placeholder) placeholder.remove();
    await window.Plotly.react(plot, traces, layout, {
      responsive: true,
      displaylogo: false,
      modeBarButtonsToRemove: ["lasso2d", "select2d"],
    });
  }

  function renderForecastInfo(forecast) {
    const box = $("forecast-info");
    if (forecast === null) {
      box.replaceChildren(el("span", { class: "no-forecast" }, "no forecast yet"));
      return;
    }
    if (forecast instanceof ApiError) {
      box.replaceChildren(el("span", { class: "no-forecast" }, "forecast unavailable"));
      return;
    }
    const mase = forecast.backtest_mase;
    const parts = [
      el("span", {}, "model ", el("strong", { class: "model" }, forecast.model)),
      el(
        "span",
        { title: "mean absolute scaled error of the backtest: below 1 beats the naive baseline" },
        "backtest MASE ",
        el("strong", { class: "mase" }, mase === null || mase === undefined ? "–" : mase.toFixed(2)),
      ),
      el("span", {}, "made at ", el("strong", { class: "made-at" }, shortWallClock(isoToMs(forecast.made_at)))),
    ];
    if (forecast.runner_up) {
      const rm = forecast.runner_up_mase;
      parts.push(el("span", {}, `runner-up ${forecast.runner_up}` + (rm === null ? "" : ` (MASE ${rm.toFixed(2)})`)));
    }
    if (forecast.fallback_reason) parts.push(el("span", { class: "fallback" }, `fallback: ${forecast.fallback_reason}`));
    box.replaceChildren(...parts);
  }

  // -- top: open alerts (dashboard_alerts.js) -----------------------------------------------
  const alerts = window.greennanny.alertsPanel({
    state, $, el, api, ApiError, setError, choose,
    isoToMs, wallClock, shortWallClock, timeZone, formatValue, unitLabel, quantityLabel,
  });


  // -- start and refresh --------------------------------------------------------------------
  async function refresh() {
    refreshHeader();
    if (!(await loadSeries())) return;
    const s = state.series.find((x) => x.id === state.selectedId);
    if (s && s.last !== state.shownLast) showSeries(s.id); // new readings arrived
  }

  // Plotly follows window resizes only; the plot's box also changes when the text around it does.
  function followPlotSize() {
    if (!window.ResizeObserver) return;
    const plot = $("plot");
    new ResizeObserver(() => {
      if (plot.classList.contains("js-plotly-plot")) window.Plotly.Plots.resize(plot);
    }).observe(plot);
  }

  async function start() {
    // A token given as ?token= is now a cookie (set by the page's response): keep it out of the
    // address bar, bookmarks and screenshots.
    if (new URLSearchParams(window.location.search).has("token")) {
      history.replaceState(null, "", window.location.pathname + window.location.hash);
    }
    followPlotSize();
    refreshHeader();
    const seriesLoaded = await loadSeries(); // first: pending conditions and silences name series
    await alerts.refresh(); // before the first plot, so it carries the thresholds of its open alerts
    if (seriesLoaded) selectFromHash();
    window.addEventListener("hashchange", selectFromHash);
    window.setInterval(refresh, REFRESH_MS);
    alerts.startRefreshing(); // every 30 s, and when the tab is shown again
  }

  if (!window.Plotly) {
    document.addEventListener("DOMContentLoaded", () =>
      setError("plotly", "plotly.js did not load from /static/plotly.min.js"),
    );
  }
  start();
})();
