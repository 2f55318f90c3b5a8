// The greennanny dashboard: open alerts on top, series list on the left (measured series, then
// each zone's derived ones), the selected series and its forecast on the right, with the
// thresholds of its open alerts. Plain JavaScript on the node's own API (same origin, cookie
// credentials), no build step. Every string from the API goes in as text (textContent), never as
// HTML: device names and notes are typed by people.
//
// Times: the API speaks UTC ISO 8601; the plot shows the browser's wall clock (a grower reads
// "14:00" as greenhouse time), and says which time zone that is under the plot.
"use strict";

(() => {
  const DAY_MS = 86_400_000;
  const WINDOW_DAYS = 7;
  const REFRESH_MS = 60_000;
  const ALERTS_REFRESH_MS = 30_000; // the engine's default round (alerts.interval_s)
  const ACK_NAME_KEY = "greennanny.ack-name";
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
  const SEVERITY_COLOURS = { critical: "#c53030", warning: "#d48a12", info: "#2b6cb0" };
  const WHOLE_UNITS = new Set(["bool", "count", "level"]);

  const state = {
    series: [],
    selectedId: null,
    shownLast: null,
    seq: 0,
    errors: new Map(),
    // alerts: the open ones as last fetched, rules by name, node clock minus browser clock (ms),
    // the list's items by alert id (kept across refreshes, so an open acknowledge form survives)
    alerts: [],
    alertRules: new Map(),
    clockOffsetMs: 0,
    alertItems: new Map(),
    alertSeq: 0,
    alertsShownAt: null,
    plotBaseShapes: [],
    plotAlertSig: "",
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

  // A level as a person wrote it in a rule: 30, 0.85, 1200 (no padding zeros).
  const formatLevel = (v) => (Number.isFinite(v) ? String(Number(v.toPrecision(6))) : "–");
  const withUnit = (text, unit) => (unit ? `${text} ${unitLabel(unit)}` : text);

  // A duration as a grower reads it: "12 min", "2 h 10 min", "3 d 4 h".
  function span(ms) {
    const min = Math.round(Math.abs(ms) / 60_000);
    if (min < 60) return `${min} min`;
    const h = Math.floor(min / 60);
    if (h < 48) return min % 60 ? `${h} h ${min % 60} min` : `${h} h`;
    return h % 24 ? `${Math.floor(h / 24)} d ${h % 24} h` : `${Math.floor(h / 24)} d`;
  }
  function relative(ms, nowMs) {
    const d = ms - nowMs;
    if (Math.abs(d) < 60_000) return d < 0 ? "just now" : "in under a minute";
    return d < 0 ? `${span(d)} ago` : `in ${span(d)}`;
  }
  // "14:30" today, "2024-06-09 14:30" on another day (the browser's time zone).
  function localTime(ms, nowMs) {
    const full = shortWallClock(ms);
    return full.slice(0, 10) === shortWallClock(nowMs).slice(0, 10) ? full.slice(11) : full;
  }
  const nodeNow = () => Date.now() + state.clockOffsetMs;

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
    for (const item of state.alertItems.values()) {
      const on = Number(item.dataset.seriesId) === state.selectedId;
      item.classList.toggle("on-plot", on);
      item.querySelector(".alert-select").setAttribute("aria-current", on ? "true" : "false");
    }
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
    state.plotBaseShapes = lastX
      ? [{ type: "line", name: "last reading", xref: "x", yref: "paper", x0: lastX, x1: lastX, y0: 0, y1: 1,
           line: { color: "#a0aec0", width: 1, dash: "dot" } }]
      : [];
    const marks = alertShapes(s);
    layout.shapes = [...state.plotBaseShapes, ...marks];
    state.plotAlertSig = JSON.stringify(marks);
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

  // -- top: open alerts ---------------------------------------------------------------------
  // GET /alerts?state=open every ALERTS_REFRESH_MS: the firing alerts (acknowledged or not),
  // the conditions still pending and the active silences; GET /alerts/rules for each rule's
  // direction (above/below) and kind. Relative times are reckoned on the node's clock (`now`).
  const OPS = { above: "above", below: "below" };
  const detailTime = (d, name) => {
    const v = d[name] ?? d[`${name}_ns`]; // the API names detail times either way
    return typeof v === "string" ? isoToMs(v) : null;
  };
  const seriesById = (id) => state.series.find((s) => s.id === id);

  function seriesLabel(a) {
    if (a.site === null || a.site === undefined) {
      const s = seriesById(a.series_id);
      return s ? s.key : `series ${a.series_id}`;
    }
    return `${a.site} / ${a.zone} / ${a.device} / ${quantityLabel(a.quantity)}`;
  }

  function rememberedName() {
    try {
      return window.localStorage.getItem(ACK_NAME_KEY) || "";
    } catch {
      return ""; // storage disabled: the name is simply asked every time
    }
  }
  function rememberName(name) {
    try {
      window.localStorage.setItem(ACK_NAME_KEY, name);
    } catch {
      /* storage disabled */
    }
  }

  // One line of figures for an alert, by kind: the value, the episode's peak, the threshold.
  function alertFigures(a, nowMs) {
    const rule = state.alertRules.get(a.rule);
    const op = rule ? OPS[rule.op] : null;
    const unit = a.unit ?? "";
    const parts = [];
    const fig = (label, text, cls) =>
      el("span", { class: `fig ${cls}` }, `${label} `, el("strong", {}, text));
    const d = a.detail || {};
    if (a.kind === "forecast") {
      const pct = (p) => (Number.isFinite(p) ? `${Math.round(p * 100)} %` : "–");
      parts.push(fig("probability", pct(a.value), "probability"));
      if (rule) parts.push(el("span", { class: "fig muted" }, `fires at ≥ ${pct(rule.probability)}`));
      parts.push(fig("threshold", withUnit(`${op ? `${op} ` : ""}${formatLevel(a.threshold)}`, unit), "threshold"));
      if (Number.isFinite(d.forecast_extreme)) {
        parts.push(fig(op === "below" ? "forecast low" : "forecast peak", withUnit(formatValue(d.forecast_extreme, unit), unit), "peak"));
      }
      const expected = detailTime(d, "expected");
      const likely = detailTime(d, "likely");
      if (expected !== null) {
        parts.push(fig("expected", `${localTime(expected, nowMs)}, ${relative(expected, nowMs)}`, "expected"));
      } else if (likely !== null) {
        parts.push(fig("likely from", `${localTime(likely, nowMs)}, ${relative(likely, nowMs)}`, "expected"));
      }
      if (d.horizon_h) parts.push(el("span", { class: "fig muted" }, `within ${d.horizon_h} h (${d.model ?? "forecast"})`));
    } else if (a.kind === "stale") {
      parts.push(fig("no reading for", Number.isFinite(a.value) ? span(a.value * 1000) : "–", "value"));
      if (Number.isFinite(d.stale_after_s)) parts.push(fig("stale after", span(d.stale_after_s * 1000), "threshold"));
      const last = detailTime(d, "last_reading");
      if (last !== null) parts.push(fig("last reading", localTime(last, nowMs), "last"));
    } else {
      const u = a.kind === "rate" ? `${unitLabel(unit)}/h` : unitLabel(unit);
      const num = (v) => (a.kind === "rate" && v > 0 ? `+${formatValue(v, unit)}` : formatValue(v, unit));
      parts.push(fig("value", `${num(a.value)} ${u}`.trim(), "value"));
      parts.push(fig(op === "below" ? "lowest" : "peak", `${num(a.peak)} ${u}`.trim(), "peak"));
      parts.push(fig("threshold", `${op ? `${op} ` : ""}${formatLevel(a.threshold)} ${u}`.trim(), "threshold"));
      if (Number.isFinite(a.clear_level) && a.clear_level !== a.threshold) {
        parts.push(el("span", { class: "fig muted" }, `clears ${op === "below" ? "above" : "below"} ${formatLevel(a.clear_level)} ${u}`.trim()));
      }
    }
    return parts;
  }

  function alertTimes(a, nowMs) {
    const fired = a.fired ? isoToMs(a.fired) : null;
    const started = a.started ? isoToMs(a.started) : null;
    const out = [];
    if (fired !== null) {
      out.push(
        el("span", { class: "fired" }, "fired ", el("time", { dateTime: a.fired }, localTime(fired, nowMs)),
          ` (${relative(fired, nowMs)})`),
      );
    }
    if (started !== null && fired !== null && fired - started >= 60_000) {
      out.push(el("span", { class: "muted" }, `condition since ${localTime(started, nowMs)}`));
    }
    return out;
  }

  function alertAckState(a, nowMs) {
    if (!a.acked_by) return [el("span", { class: "unacked" }, "not acknowledged")];
    const at = a.acked ? isoToMs(a.acked) : null;
    const out = [
      el("span", { class: "acked" }, "acknowledged by ", el("strong", { class: "acked-by" }, a.acked_by)),
    ];
    if (at !== null) out.push(` at ${localTime(at, nowMs)} (${relative(at, nowMs)})`);
    if (a.ack_note) out.push(el("span", { class: "ack-note" }, ` — ${a.ack_note}`));
    return out;
  }

  // The static part of an alert's item (rule, series, severity never change for an alert id),
  // with its acknowledge form; `fillAlert` updates the rest on every refresh.
  function alertItem(a) {
    const id = a.alert_id;
    const formId = `ack-form-${id}`;
    const select = el(
      "button",
      { class: "alert-select", type: "button", title: "show this series with the alert's threshold" },
      el("span", { class: "severity" }, a.severity),
      el("span", { class: "alert-rule" }, a.rule),
      el("span", { class: "alert-series" }, seriesLabel(a)),
    );
    const open = el(
      "button",
      { class: "ack-open", type: "button", "aria-expanded": "false", "aria-controls": formId,
        "aria-label": `Acknowledge ${a.rule} on ${seriesLabel(a)}` },
      "Acknowledge",
    );
    const actor = el("input", { class: "ack-actor", name: "actor", type: "text", autocomplete: "name",
                                maxLength: 200, required: true });
    const note = el("input", { class: "ack-note-input", name: "note", type: "text", maxLength: 1000,
                               placeholder: "what is being done (optional)" });
    const submit = el("button", { class: "ack-submit", type: "submit" }, "Acknowledge");
    const cancel = el("button", { class: "ack-cancel", type: "button" }, "Cancel");
    const form = el(
      "form",
      { class: "ack-form", id: formId, hidden: true, "aria-label": `acknowledge alert ${id}` },
      el("label", {}, "Your name ", actor),
      el("label", {}, "Note ", note),
      submit,
      cancel,
    );
    const error = el("p", { class: "ack-error", role: "alert", hidden: true });
    const item = el(
      "li",
      { class: "alert", "data-alert-id": String(id), "data-series-id": String(a.series_id),
        "data-severity": a.severity, "data-kind": a.kind },
      select,
      el("div", { class: "alert-figures" }),
      el("div", { class: "alert-times muted" }),
      el("div", { class: "alert-ack" }, el("span", { class: "alert-ack-state" }), open),
      form,
      error,
    );
    const showForm = (on) => {
      form.hidden = !on;
      open.hidden = on; // the form has its own Acknowledge and Cancel
      open.setAttribute("aria-expanded", on ? "true" : "false");
      if (!on) return;
      if (!actor.value) actor.value = rememberedName();
      (actor.value ? note : actor).focus();
    };
    const showError = (message) => {
      error.textContent = message || "";
      error.hidden = !message;
    };
    // A click anywhere on the alert but its acknowledge controls shows its series.
    item.addEventListener("click", (ev) => {
      if (ev.target.closest(".alert-ack, .ack-form, .ack-error")) return;
      const sid = Number(item.dataset.seriesId);
      choose(sid);
      $("plot").scrollIntoView({ block: "nearest" });
    });
    open.addEventListener("click", () => {
      showError(null);
      showForm(form.hidden);
    });
    cancel.addEventListener("click", () => {
      showForm(false);
      open.focus();
    });
    form.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") cancel.click();
    });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const name = actor.value.trim();
      if (!name) {
        showError("Give your name: it is kept with the acknowledgement and in the audit log.");
        actor.focus();
        return;
      }
      submit.disabled = true;
      showError(null);
      try {
        await api(`/alerts/${id}/ack`, {}, { method: "POST", json: { actor: name, note: note.value.trim() } });
        rememberName(name);
        note.value = "";
        showForm(false);
        select.focus();
      } catch (exc) {
        showError(`could not acknowledge: ${exc.message}`);
      } finally {
        submit.disabled = false;
      }
      await refreshAlerts();
    });
    return item;
  }

  function fillAlert(item, a, nowMs) {
    item.dataset.acked = a.acked_by ? "true" : "false";
    item.querySelector(".alert-figures").replaceChildren(...alertFigures(a, nowMs));
    item.querySelector(".alert-times").replaceChildren(...alertTimes(a, nowMs));
    item.querySelector(".alert-ack-state").replaceChildren(...alertAckState(a, nowMs));
    const open = item.querySelector(".ack-open");
    const form = item.querySelector(".ack-form");
    if (a.acked_by) {
      form.hidden = true;
      open.setAttribute("aria-expanded", "false");
    }
    open.hidden = Boolean(a.acked_by) || !form.hidden;
  }

  // Put `nodes` in `parent` in order, moving only what is out of place (a screen reader then
  // announces the alerts that are new, not the whole list on every refresh).
  function syncChildren(parent, nodes) {
    const keep = new Set(nodes);
    for (const c of [...parent.children]) if (!keep.has(c)) c.remove();
    nodes.forEach((n, i) => {
      if (parent.children[i] !== n) parent.insertBefore(n, parent.children[i] ?? null);
    });
  }

  function renderAlerts(body) {
    const nowMs = nodeNow();
    const open = body.alerts
      .filter((a) => a.state === "firing")
      .sort((x, y) => (y.fired ? isoToMs(y.fired) : 0) - (x.fired ? isoToMs(x.fired) : 0) || y.alert_id - x.alert_id);
    state.alerts = open;
    const nodes = [];
    const seen = new Set();
    for (const a of open) {
      let item = state.alertItems.get(a.alert_id);
      if (!item) {
        item = alertItem(a);
        state.alertItems.set(a.alert_id, item);
      }
      fillAlert(item, a, nowMs);
      nodes.push(item);
      seen.add(a.alert_id);
    }
    for (const id of [...state.alertItems.keys()]) if (!seen.has(id)) state.alertItems.delete(id);
    const list = $("alert-list");
    if (!nodes.length) {
      const empty = list.querySelector(":scope > .alert-empty.none") ?? el("li", { class: "alert-empty none" }, "No open alerts.");
      nodes.push(empty);
    }
    syncChildren(list, nodes);

    const unacked = open.filter((a) => !a.acked_by).length;
    const badge = $("alert-count");
    badge.textContent = String(open.length);
    badge.dataset.count = String(open.length);
    badge.dataset.level = !open.length ? "ok"
      : open.some((a) => !a.acked_by && a.severity === "critical") ? "critical"
      : unacked ? "warning" : "acked";
    badge.title = open.length ? `${open.length} open, ${unacked} not acknowledged` : "no open alerts";
    document.title = unacked ? `(${unacked}) greennanny` : "greennanny";

    renderPending(body.pending || [], nowMs);
    renderSilences(body.silences || [], nowMs);
    state.alertsShownAt = wallClock(Date.now()).slice(11, 19);
    $("alerts-sub").textContent = `updated ${state.alertsShownAt} · times in ${timeZone()}`;
    $("alerts").dataset.state = "ready";
    markSelected();
    redrawAlertMarks();
  }

  function renderPending(pending, nowMs) {
    const box = $("alert-pending");
    box.hidden = pending.length === 0;
    if (!pending.length) {
      box.replaceChildren();
      return;
    }
    const items = pending.map((p) => {
      const rule = state.alertRules.get(p.rule);
      const s = seriesById(p.series_id);
      const unit = s ? s.unit : "";
      const since = p.since ? isoToMs(p.since) : null;
      let value = "";
      if (rule && rule.kind === "forecast") value = Number.isFinite(p.value) ? `${Math.round(p.value * 100)} %` : "";
      else if (Number.isFinite(p.value)) value = withUnit(formatValue(p.value, unit), unit);
      return el(
        "li",
        { class: "pending", "data-rule": p.rule, "data-series-id": String(p.series_id) },
        el("span", { class: "alert-rule" }, p.rule),
        " · ",
        el("span", { class: "alert-series" }, seriesLabel(p)),
        value ? ` · ${value}` : "",
        since !== null ? ` · since ${localTime(since, nowMs)} (${relative(since, nowMs)})` : "",
        rule && rule.for_s ? ` · fires after ${span(rule.for_s * 1000)}` : "",
      );
    });
    box.replaceChildren(
      el("h3", { class: "quiet-head" }, `Pending (${pending.length}): conditions that hold but not long enough yet`),
      el("ul", {}, ...items),
    );
  }

  function renderSilences(silences, nowMs) {
    const box = $("alert-silences");
    box.hidden = silences.length === 0;
    if (!silences.length) {
      box.replaceChildren();
      return;
    }
    const items = silences.map((x) => {
      const until = x.until ? isoToMs(x.until) : null;
      let scope = "all series";
      if (x.series_id !== null && x.series_id !== undefined) {
        const s = seriesById(x.series_id);
        scope = s ? s.key : `series ${x.series_id}`;
      }
      return el(
        "li",
        { class: "silence", "data-rule": x.rule },
        el("span", { class: "alert-rule" }, x.rule === "*" ? "every rule" : x.rule),
        ` · ${scope}`,
        until !== null ? ` · until ${localTime(until, nowMs)} (${relative(until, nowMs)})` : "",
        " · by ",
        el("span", { class: "silence-actor" }, x.actor ?? "?"),
        x.reason ? el("span", { class: "silence-reason" }, `: ${x.reason}`) : null,
      );
    });
    box.replaceChildren(
      el("h3", { class: "quiet-head" }, `Silenced (${silences.length}): alerts still show here, notifications are held`),
      el("ul", {}, ...items),
    );
  }

  async function refreshAlerts() {
    const seq = ++state.alertSeq;
    const rules = api("/alerts/rules").catch((exc) => exc);
    let body;
    try {
      body = await api("/alerts", { state: "open" });
    } catch (exc) {
      if (seq !== state.alertSeq) return;
      setError("alerts", `alerts: ${exc.message}`);
      $("alerts").dataset.state = "error";
      if (state.alertsShownAt) {
        $("alerts-sub").textContent = `could not refresh: the list below is as of ${state.alertsShownAt}`;
      } else {
        $("alerts-sub").textContent = "alerts unavailable";
        $("alert-list").replaceChildren(el("li", { class: "alert-empty" }, "alerts unavailable"));
        $("alert-count").textContent = "?";
        $("alert-count").dataset.level = "unknown";
      }
      return;
    }
    const r = await rules;
    if (seq !== state.alertSeq) return; // a newer refresh (after an acknowledgement) is on its way
    setError("alerts", null);
    if (r instanceof ApiError) {
      setError("alert-rules", `alert rules: ${r.message}`);
    } else {
      setError("alert-rules", null);
      state.alertRules = new Map(r.rules.map((x) => [x.name, x]));
    }
    if (body.now) state.clockOffsetMs = isoToMs(body.now) - Date.now();
    renderAlerts(body);
  }

  // -- the plot's alert marks: each open alert's threshold on its series, a forecast alert's
  // expected crossing as a vertical line.
  function alertShapes(s) {
    const out = [];
    const unit = unitLabel(s.unit);
    for (const a of state.alerts) {
      if (a.series_id !== s.id) continue;
      const colour = SEVERITY_COLOURS[a.severity] ?? SEVERITY_COLOURS.warning;
      const rule = state.alertRules.get(a.rule);
      const op = rule ? `${OPS[rule.op] ?? ""} ` : "";
      if ((a.kind === "threshold" || a.kind === "forecast") && Number.isFinite(a.threshold)) {
        out.push({
          type: "line", name: `threshold ${a.rule}`, xref: "paper", x0: 0, x1: 1, yref: "y",
          y0: a.threshold, y1: a.threshold, line: { color: colour, width: 1.5, dash: "dash" },
          label: { text: `${a.rule}: ${op}${formatLevel(a.threshold)} ${unit}`, textposition: "end",
                   yanchor: "bottom", font: { size: 11, color: colour } },
        });
      }
      const d = a.detail || {};
      const when = a.kind === "forecast" ? detailTime(d, "expected") ?? detailTime(d, "likely") : null;
      if (when !== null) {
        const x = wallClock(when);
        out.push({
          type: "line", name: `expected crossing ${a.rule}`, xref: "x", x0: x, x1: x, yref: "paper", y0: 0, y1: 1,
          line: { color: colour, width: 1.5, dash: "dot" },
          label: { text: `expected ${shortWallClock(when).slice(11)}`, textposition: "end", textangle: 0,
                   xanchor: "left", font: { size: 11, color: colour } },
        });
      }
    }
    return out;
  }

  function redrawAlertMarks() {
    const plot = $("plot");
    const s = seriesById(state.selectedId);
    if (!s || plot.dataset.state !== "ready" || !plot.classList.contains("js-plotly-plot")) return;
    const marks = alertShapes(s);
    const sig = JSON.stringify(marks);
    if (sig === state.plotAlertSig) return;
    state.plotAlertSig = sig;
    window.Plotly.relayout(plot, { shapes: [...state.plotBaseShapes, ...marks] });
  }

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
    await refreshAlerts(); // before the first plot, so it carries the thresholds of its open alerts
    if (seriesLoaded) selectFromHash();
    window.addEventListener("hashchange", selectFromHash);
    window.setInterval(refresh, REFRESH_MS);
    window.setInterval(refreshAlerts, ALERTS_REFRESH_MS);
    // A laptop opened at night: show the alerts as they are now, not as of when it slept.
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) refreshAlerts();
    });
  }

  if (!window.Plotly) {
    document.addEventListener("DOMContentLoaded", () =>
      setError("plotly", "plotly.js did not load from /static/plotly.min.js"),
    );
  }
  start();
})();
