// The dashboard's open-alerts panel, on top of the page: the firing alerts (severity, series,
// figures, times, who acknowledged), each with its inline Acknowledge form, the conditions still
// pending, the active silences, the badge, and the marks the open alerts put on the plot (their
// thresholds, a forecast alert's expected crossing).
//
// Loaded before dashboard.js, which calls `greennanny.alertsPanel(deps)` once with the helpers
// and state it shares (see there) and uses what it returns. `greennanny` is the only global this
// file adds. As in dashboard.js, every string from the API goes in as text, never as HTML.
"use strict";

window.greennanny = window.greennanny || {};

window.greennanny.alertsPanel = ({
  state, // dashboard.js's: `series` (the list as last fetched) and `selectedId` (the plotted one)
  $, el, api, ApiError, setError, choose,
  isoToMs, wallClock, shortWallClock, timeZone, formatValue, unitLabel, quantityLabel,
}) => {
  const ALERTS_REFRESH_MS = 30_000; // the engine's default round (alerts.interval_s)
  const ACK_NAME_KEY = "greennanny.ack-name";
  const SEVERITY_COLOURS = { critical: "#c53030", warning: "#d48a12", info: "#2b6cb0" };

  // The open alerts as last fetched, rules by name, node clock minus browser clock (ms), the
  // list's items by alert id (kept across refreshes, so an open acknowledge form survives), and
  // the plot's shapes other than the alert marks, with the marks last drawn.
  const panel = {
    alerts: [],
    alertRules: new Map(),
    clockOffsetMs: 0,
    alertItems: new Map(),
    alertSeq: 0,
    alertsShownAt: null,
    plotBaseShapes: [],
    plotAlertSig: "",
  };

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
  const nodeNow = () => Date.now() + panel.clockOffsetMs;

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

  // Marks the alert whose series is plotted (dashboard.js marks the series list).
  function markSelected() {
    for (const item of panel.alertItems.values()) {
      const on = Number(item.dataset.seriesId) === state.selectedId;
      item.classList.toggle("on-plot", on);
      item.querySelector(".alert-select").setAttribute("aria-current", on ? "true" : "false");
    }
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
    const rule = panel.alertRules.get(a.rule);
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
    panel.alerts = open;
    const nodes = [];
    const seen = new Set();
    for (const a of open) {
      let item = panel.alertItems.get(a.alert_id);
      if (!item) {
        item = alertItem(a);
        panel.alertItems.set(a.alert_id, item);
      }
      fillAlert(item, a, nowMs);
      nodes.push(item);
      seen.add(a.alert_id);
    }
    for (const id of [...panel.alertItems.keys()]) if (!seen.has(id)) panel.alertItems.delete(id);
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
    panel.alertsShownAt = wallClock(Date.now()).slice(11, 19);
    $("alerts-sub").textContent = `updated ${panel.alertsShownAt} · times in ${timeZone()}`;
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
      const rule = panel.alertRules.get(p.rule);
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
    const seq = ++panel.alertSeq;
    const rules = api("/alerts/rules").catch((exc) => exc);
    let body;
    try {
      body = await api("/alerts", { state: "open" });
    } catch (exc) {
      if (seq !== panel.alertSeq) return;
      setError("alerts", `alerts: ${exc.message}`);
      $("alerts").dataset.state = "error";
      if (panel.alertsShownAt) {
        $("alerts-sub").textContent = `could not refresh: the list below is as of ${panel.alertsShownAt}`;
      } else {
        $("alerts-sub").textContent = "alerts unavailable";
        $("alert-list").replaceChildren(el("li", { class: "alert-empty" }, "alerts unavailable"));
        $("alert-count").textContent = "?";
        $("alert-count").dataset.level = "unknown";
      }
      return;
    }
    const r = await rules;
    if (seq !== panel.alertSeq) return; // a newer refresh (after an acknowledgement) is on its way
    setError("alerts", null);
    if (r instanceof ApiError) {
      setError("alert-rules", `alert rules: ${r.message}`);
    } else {
      setError("alert-rules", null);
      panel.alertRules = new Map(r.rules.map((x) => [x.name, x]));
    }
    if (body.now) panel.clockOffsetMs = isoToMs(body.now) - Date.now();
    renderAlerts(body);
  }

  // -- the plot's alert marks: each open alert's threshold on its series, a forecast alert's
  // expected crossing as a vertical line.
  function alertShapes(s) {
    const out = [];
    const unit = unitLabel(s.unit);
    for (const a of panel.alerts) {
      if (a.series_id !== s.id) continue;
      const colour = SEVERITY_COLOURS[a.severity] ?? SEVERITY_COLOURS.warning;
      const rule = panel.alertRules.get(a.rule);
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
    if (sig === panel.plotAlertSig) return;
    panel.plotAlertSig = sig;
    window.Plotly.relayout(plot, { shapes: [...panel.plotBaseShapes, ...marks] });
  }

  // The shapes of a plot being drawn: `baseShapes` (dashboard.js's) and the alert marks, both
  // kept so that a refresh of the alerts can redraw only the marks.
  function plotShapes(s, baseShapes) {
    panel.plotBaseShapes = baseShapes;
    const marks = alertShapes(s);
    panel.plotAlertSig = JSON.stringify(marks);
    return [...baseShapes, ...marks];
  }

  function startRefreshing() {
    window.setInterval(refreshAlerts, ALERTS_REFRESH_MS);
    // A laptop opened at night: show the alerts as they are now, not as of when it slept.
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) refreshAlerts();
    });
  }

  return { refresh: refreshAlerts, startRefreshing, markSelected, plotShapes };
};
