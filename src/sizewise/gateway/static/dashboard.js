// The sizewise dashboard: fetch /dashboard/data every few seconds and redraw each chart with Plotly.react.
// Every number comes from that JSON as is (the dashboard test reads the charts' data back and compares).
"use strict";

const REFRESH_MS = 5000;
const CONFIG = { displaylogo: false, displayModeBar: false, responsive: true };  // drag to zoom, double-click back
const BASE = { margin: { t: 40, r: 20, b: 50, l: 60 }, legend: { orientation: "h", y: -0.2 } };

// What the browser test waits for: the last answer drawn and how many were drawn.
window.sizewiseDashboard = { renders: 0, last: null, error: null };

function times(data) {  // UTC, like the router history's times (plotly draws date strings as written)
  return data.t.map((t) => new Date(t * 1000).toISOString().replace("T", " ").replace("Z", ""));
}

function layout(title, extra) {
  return Object.assign({}, BASE, { title: { text: title, font: { size: 15 } } }, extra || {});
}

function draw(id, traces, title, extra) {
  Plotly.react(id, traces, layout(title, extra), CONFIG);
}

function cumulative(values) {
  let sum = 0;
  return values.map((v) => (sum += v));
}

function percent(v) {
  return v === null || v === undefined ? "?" : (100 * v).toFixed(0) + "%";
}

function drawTraffic(data, x) {
  const models = Object.keys(data.requests);
  const perModel = models.map((m) => ({ type: "bar", name: m, x: x, y: data.requests[m] }));
  draw("requests", perModel, "Requests per model", { barmode: "stack", yaxis: { title: { text: "requests" } } });
  const share = models.map((m) => ({ type: "bar", name: m, x: x, y: data.share[m] }));  // empty buckets: no bar
  draw("share", share, "Share per model", {
    barmode: "stack", yaxis: { title: { text: "share" }, tickformat: ".0%", range: [0, 1] },
  });
}

function drawCost(data, x) {
  draw("cost", [
    { type: "scatter", mode: "lines", name: "served", x: x, y: cumulative(data.cost) },
    { type: "scatter", mode: "lines", name: "always-big", x: x, y: cumulative(data.big_cost), line: { dash: "dot" } },
  ], "Cost vs always-big (cumulative)", { yaxis: { title: { text: "USD" } } });
  const s = data.savings || {};
  const quality = s.quality === undefined ? null : s.quality;
  const interval = s.interval || [quality, quality];
  const cost = {
    type: "bar", name: "cost vs always-big", x: ["cost vs always-big"], y: [s.cost_ratio],
    text: [percent(s.cost_ratio)], textposition: "outside",
  };
  const kept = {
    type: "bar", name: "quality retained", x: ["quality retained"], y: [quality], text: [percent(quality)],
    textposition: "inside", insidetextanchor: "middle",  // clear of the interval's whiskers
    error_y: { type: "data", symmetric: false, visible: quality !== null, array: [quality === null ? 0 : interval[1] - quality],
      arrayminus: [quality === null ? 0 : quality - interval[0]] },
  };
  const title = quality === null
    ? `Savings: quality unknown (${s.judged || 0} judged)`
    : `Savings: quality ${percent(quality)} (${percent(interval[0])}-${percent(interval[1])}), ${s.judged} judged`;
  draw("savings", [cost, kept], title, { yaxis: { tickformat: ".0%", rangemode: "tozero" }, showlegend: false });
}

function drawEvents(data, x) {
  const names = ["escalations", "fallbacks", "errors"];
  const traces = names.map((n) => ({ type: "bar", name: n, x: x, y: data[n] }));
  draw("events", traces, "Escalations, fallbacks and errors", { barmode: "group" });
}

function drawLatency(data) {
  const models = Object.keys(data.models);
  const trace = (key, name) => ({ type: "bar", name: name, x: models, y: models.map((m) => data.models[m][key]) });
  draw("latency", [trace("p50_ms", "p50"), trace("p95_ms", "p95")], "Latency per model",
    { barmode: "group", yaxis: { title: { text: "ms" } } });
}

function drawFilters(data) {
  const names = Object.keys(data.filters);
  const trace = { type: "bar", orientation: "h", name: "fired", x: names.map((n) => data.filters[n]), y: names };
  draw("filters", [trace], names.length ? "Filters that fired" : "Filters that fired: none",
    { yaxis: { automargin: true }, xaxis: { title: { text: "requests" } }, showlegend: false, bargap: 0.5 });
}

function drawRouter(router) {
  const events = router.history || [];
  const trace = {
    type: "scatter", mode: "markers+text", name: "events", textposition: "top center",
    x: events.map((e) => (e.time || "").replace("T", " ").replace("Z", "")),
    y: events.map((e) => e.to || e.version || null),
    text: events.map((e) => e.event),
    hovertext: events.map((e) => `${e.event} ${e.from || ""} → ${e.to || e.version || ""}: ${e.reason || e.note || ""}`),
    hoverinfo: "text",
  };
  const current = router.current ? `current ${router.current}` : `policy ${router.policy}` + (router.router ? `, router ${router.router}` : "");
  const title = `Router: ${current}` + (router.dir ? "" : " (no router directory)");
  draw("router", [trace], title, { yaxis: { type: "category", title: { text: "version" } }, showlegend: false });
}

function render(data) {
  const t = data.totals || {};
  const whose = data.client ? `key ${data.client}: ` : "";  // a client's key sees its own requests only
  document.getElementById("summary").textContent = data.error
    ? data.error
    : whose + `${t.answered} answered, ${t.escalations} escalated, ${t.fallbacks} fallbacks, ${t.errors} errors`
      + (data.savings && data.savings.line ? ` · ${data.savings.line}` : "");
  if (!data.error) {
    const x = times(data);
    drawTraffic(data, x);
    drawCost(data, x);
    drawEvents(data, x);
    drawLatency(data);
    drawFilters(data);
  }
  drawRouter(data.router);
}

// The page's own ?since= and ?bucket= (a link to a given window) go to the data request as they are.
const ASKED = new URLSearchParams(window.location.search);

function chooseWindow() {
  const select = document.getElementById("since");
  const since = ASKED.get("since");
  if (since && ![...select.options].some((o) => o.value === since)) select.add(new Option(since, since));
  if (since) select.value = since;
}

async function refresh() {
  const status = document.getElementById("status");
  const query = new URLSearchParams({ since: document.getElementById("since").value });
  if (ASKED.get("bucket")) query.set("bucket", ASKED.get("bucket"));
  try {
    // From the origin: a page opened as http://user:key@host/ may not fetch a URL that carries credentials.
    const url = new URL(`/dashboard/data?${query}`, window.location.origin);
    const response = await fetch(url, { cache: "no-store" });
    const body = await response.json();
    if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
    render(body);
    window.sizewiseDashboard.last = body;
    window.sizewiseDashboard.renders += 1;
    window.sizewiseDashboard.error = null;
    status.className = "";
    status.textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC (all times UTC)`;
  } catch (error) {  // keep the last charts; say what is wrong
    window.sizewiseDashboard.error = String(error.message || error);
    status.className = "error";
    status.textContent = `not updated: ${window.sizewiseDashboard.error}`;
  }
}

chooseWindow();
document.getElementById("since").addEventListener("change", refresh);
if (typeof Plotly === "undefined") {
  document.getElementById("status").textContent = "plotly.js did not load (is plotly installed on the gateway?)";
} else {
  refresh();
  setInterval(refresh, REFRESH_MS);
}
