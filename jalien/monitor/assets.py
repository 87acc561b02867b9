# ruff: noqa: E501 - the page's HTML and JavaScript, kept as written
"""The monitoring page's HTML, script and style (served by ``monitor.page``; no external
CDN, no build step: hand-written SVG plots). Kept as Python strings so that the Nuitka
binary carries them without package data."""

INDEX = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>jalien - the grid</title>
<link rel="stylesheet" href="/monitor/style.css">
</head>
<body>
<header>
  <h1>jalien grid monitor</h1>
  <span id="who"></span> <span id="live" class="off">connecting...</span>
</header>
<section class="counters">
  <div class="counter"><b id="running-count">-</b><span>jobs running</span></div>
  <div class="counter"><b id="waiting-count">-</b><span>jobs waiting</span></div>
  <div class="counter"><b id="done-count">-</b><span>jobs done</span></div>
  <div class="counter"><b id="agents-count">-</b><span>JobAgents</span></div>
  <div class="counter"><b id="ces-count">-</b><span>CEs</span></div>
</section>
<section class="plots">
  <figure><figcaption>jobs by state</figcaption><svg id="states-plot" width="460" height="200"></svg></figure>
  <figure><figcaption>the last hours, per minute</figcaption><svg id="history-plot" width="460" height="200"></svg></figure>
</section>
<h2>Sites and CEs</h2><table id="sites"></table>
<h2>Jobs by user and state</h2><table id="jobs"></table>
<h2>JobAgents</h2><table id="agents"></table>
<h2>Storage elements</h2><table id="ses"></table>
<h2>Transfers</h2><table id="transfers"></table>
<h2>Services and background steps</h2><table id="loops"></table>
<h2>Recent errors</h2><table id="errors"></table>
<script src="/monitor/app.js"></script>
</body>
</html>
"""

STYLE = """
body { font-family: sans-serif; margin: 1em 2em; color: #222; }
header { display: flex; gap: 1em; align-items: baseline; }
h1 { font-size: 1.4em; margin: 0.2em 0; }
h2 { font-size: 1.1em; margin-top: 1.2em; border-bottom: 1px solid #ccc; }
.counters { display: flex; gap: 1em; margin: 1em 0; }
.counter { border: 1px solid #bbb; border-radius: 6px; padding: 0.5em 1em; min-width: 7em; }
.counter b { display: block; font-size: 2em; }
.plots { display: flex; gap: 2em; }
figure { margin: 0; } figcaption { font-size: 0.9em; color: #555; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: left; }
th { background: #f3f3f3; }
#live.on { color: #2a2; } #live.off { color: #a22; }
"""

APP_JS = r"""
"use strict";
const COLORS = {RUNNING: "#2a7", WAITING: "#fa3", DONE: "#37c", SAVING: "#7c3",
                STARTED: "#5b5", ASSIGNED: "#9c6", KILLED: "#999", ZOMBIE: "#c6c"};
function color(state) { return COLORS[state] || (state.startsWith("ERROR") ? "#d33" : "#888"); }
function text(v) { return v === undefined || v === null ? "" : String(v); }
function table(id, head, rows) {
  const t = document.getElementById(id);
  t.textContent = "";
  const tr = t.insertRow();
  for (const h of head) { const th = document.createElement("th"); th.textContent = h; tr.appendChild(th); }
  for (const row of rows) {
    const r = t.insertRow();
    for (const cell of row) { r.insertCell().textContent = text(cell); }
  }
  if (!rows.length) { t.insertRow().insertCell().textContent = "none"; }
}
const SVG = "http://www.w3.org/2000/svg";
function svg(parent, tag, attrs, content) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (content !== undefined) e.textContent = content;
  parent.appendChild(e);
  return e;
}
function bars(id, counts) {
  const s = document.getElementById(id);
  s.textContent = "";
  const states = Object.keys(counts).sort();
  const max = Math.max(1, ...states.map(k => counts[k]));
  const w = 460, h = 200, bw = Math.max(8, Math.min(60, (w - 20) / Math.max(1, states.length) - 6));
  states.forEach((k, i) => {
    const bh = (h - 50) * counts[k] / max, x = 10 + i * (bw + 6);
    svg(s, "rect", {x: x, y: h - 30 - bh, width: bw, height: bh, fill: color(k)});
    svg(s, "text", {x: x, y: h - 33 - bh, "font-size": 11}, counts[k]);
    svg(s, "text", {x: x, y: h - 15, "font-size": 9}, k.slice(0, 8));
  });
}
function lines(id, minutes, series) {
  const s = document.getElementById(id);
  s.textContent = "";
  const w = 460, h = 200, left = 30;
  svg(s, "line", {x1: left, y1: h - 20, x2: w, y2: h - 20, stroke: "#999"});
  if (!minutes.length) { svg(s, "text", {x: left + 10, y: h / 2}, "no history yet"); return; }
  const t0 = minutes[0].time, t1 = Math.max(t0 + 60, minutes[minutes.length - 1].time);
  let max = 1;
  for (const m of minutes) for (const [k] of series) max = Math.max(max, m[k] || 0);
  svg(s, "text", {x: 2, y: 15, "font-size": 10}, max);
  series.forEach(([k, c], i) => {
    const pts = minutes.map(m => [left + (w - left - 5) * (m.time - t0) / (t1 - t0),
                                  h - 20 - (h - 40) * (m[k] || 0) / max].join(",")).join(" ");
    svg(s, "polyline", {points: pts, fill: "none", stroke: c, "stroke-width": 2});
    svg(s, "text", {x: left + 10 + i * 110, y: 12, "font-size": 11, fill: c}, k);
  });
}
function ago(t, now) { const s = Math.max(0, now - t); return s < 120 ? Math.round(s) + "s ago" : Math.round(s / 60) + "m ago"; }
function render(st) {
  document.getElementById("who").textContent = st.user + (st.admin ? " (admin: everything)" : " (your jobs)");
  const by = st.jobs.by_state;
  document.getElementById("running-count").textContent = by.RUNNING || 0;
  document.getElementById("waiting-count").textContent = by.WAITING || 0;
  document.getElementById("done-count").textContent = by.DONE || 0;
  document.getElementById("agents-count").textContent = st.agents.length;
  document.getElementById("ces-count").textContent = st.sites.length;
  bars("states-plot", by);
  lines("history-plot", st.history, [["running_jobs", "#2a7"], ["waiting_jobs", "#fa3"], ["busy_agents", "#37c"]]);
  table("sites", ["site", "CE", "slots", "running", "queued", "starting", "waiting", "reported"],
        st.sites.map(c => [c.site, c.ce, c.slots, c.running, c.queued, c.starting, c.waiting, ago(c.reported, st.time)]));
  const rows = [];
  for (const user of Object.keys(st.jobs.by_user).sort())
    for (const state of Object.keys(st.jobs.by_user[user]).sort()) rows.push([user, state, st.jobs.by_user[user][state]]);
  table("jobs", ["user", "state", "jobs"], rows);
  table("agents", ["node", "CE", "job", "cpu s", "rss MB", "reported"],
        st.agents.map(a => [a.node, a.ce, a.job || "idle", a.cpu.toFixed(1), (a.rss / 1048576).toFixed(1), ago(a.reported, st.time)]));
  table("ses", ["SE", "site", "protocols", "used GB", "free GB"],
        st.ses.map(e => [e.name, e.site, e.protocols, e.used === null ? "" : (e.used / 1e9).toFixed(1), e.free === null ? "" : (e.free / 1e9).toFixed(1)]));
  table("transfers", ["state", "transfers"], Object.keys(st.transfers).sort().map(k => [k, st.transfers[k]]));
  table("loops", ["step", "runs", "errors", "in a row", "last (s)", "paused", "last error"],
        st.loops.map(l => [l.name, l.runs, l.errors, l.errors_in_row, l.last_duration.toFixed(3), l.paused ? "yes" : "", l.last_error]));
  table("errors", ["when", "where", "what"], st.errors.map(e => [new Date(e.time * 1000).toISOString().slice(11, 19), e.where, e.text]));
}
function connect() {
  const live = document.getElementById("live");
  const events = new EventSource("/monitor/events");
  events.addEventListener("state", ev => { render(JSON.parse(ev.data)); live.textContent = "live"; live.className = "on"; });
  events.onerror = () => { live.textContent = "reconnecting..."; live.className = "off"; };
}
fetch("/monitor/state.json").then(r => r.json()).then(render).finally(connect);
"""
