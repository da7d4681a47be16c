"""The report's inline stylesheet and script (the report must open with no network).

The script only enhances: tooltips that follow the mouse, legend buttons that show/hide a
series, sortable tables, and opening the trace waterfall a `#trace-<id>` link points at (the
`<details>` open without it too). When it has run it sets `data-render="report-ok"` on `<body>`
if every chart the generator promised (`data-charts`) is in the page, so a headless browser
can check the page rendered without errors; an uncaught error sets `report-error: <message>`
instead.
"""

from __future__ import annotations

__all__ = ["REPORT_CSS", "REPORT_JS", "SERIES_COLORS"]

SERIES_COLORS = {
    "p50": "#4c78a8",
    "p95": "#f58518",
    "p99": "#e45756",
    "input": "#4c78a8",
    "output": "#72b7b2",
    "errors": "#e45756",
    "cost": "#54a24b",
}

REPORT_CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --card:#ffffff; --bg:#f4f6f9;
        --accent:#4c78a8; --alert:#c2410c; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
             Arial, sans-serif; }
header { background:#1f2a44; color:#fff; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:22px; font-weight:600; letter-spacing:.2px; }
header .sub { color:#c7d2e4; font-size:13px; }
header .sub code { color:#fff; }
main { padding:20px 32px 32px; max-width:1500px; margin:0 auto; }
section { margin-top:26px; }
h2 { font-size:17px; margin:0 0 2px; font-weight:600; }
.desc { color:var(--muted); margin:0 0 12px; font-size:13px; }
.note { background:#fff7ed; border:1px solid #fed7aa; color:#9a3412; padding:8px 12px;
        border-radius:6px; margin-top:14px; font-size:13px; }
.kpis { display:grid; grid-template-columns:repeat(auto-fit, minmax(170px, 1fr)); gap:12px;
        margin-top:4px; }
.kpi { background:var(--card); border:1px solid var(--line); border-radius:8px;
       padding:12px 14px; }
.kpi .label { color:var(--muted); font-size:12px; text-transform:uppercase;
              letter-spacing:.5px; }
.kpi .value { font-size:24px; font-weight:600; margin-top:2px; }
.kpi .detail { color:var(--muted); font-size:12px; }
.kpi.alert .value { color:var(--alert); }
.grid { display:grid; gap:14px;
        grid-template-columns:repeat(auto-fill, minmax(min(420px, 100%), 1fr)); }
.two { display:grid; gap:14px;
       grid-template-columns:repeat(auto-fit, minmax(min(520px, 100%), 1fr)); }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px;
        padding:12px 14px 8px; min-width:0; }
.card h3 { margin:0; font-size:14px; font-weight:600; }
.card .meta { color:var(--muted); font-size:12px; margin-bottom:4px; }
.empty { color:var(--muted); font-style:italic; padding:18px 4px; }
.legend { display:flex; flex-wrap:wrap; gap:8px; align-items:center; margin:0 0 10px; }
.legend button { font:inherit; font-size:12px; border:1px solid var(--line); background:#fff;
                 border-radius:999px; padding:2px 10px 2px 8px; cursor:pointer; color:var(--ink); }
.legend button.off { opacity:.4; text-decoration:line-through; }
.legend .swatch { display:inline-block; width:10px; height:10px; border-radius:2px;
                  margin-right:6px; vertical-align:-1px; }
.legend .swatch.dashed { height:3px; width:14px; vertical-align:3px; border-radius:0;
                         background:repeating-linear-gradient(90deg, var(--c) 0 5px,
                                                              transparent 5px 8px) !important; }
.legend .hint { color:var(--muted); font-size:12px; }
svg.chart { display:block; overflow:visible; }
svg .grid { stroke:var(--line); stroke-width:1; }
svg .baseline { stroke:#9ca3af; stroke-width:1; }
svg .axis { fill:var(--muted); font-size:11px; }
svg .bar-label { fill:var(--ink); font-size:12px; }
svg .bar-label.alert { fill:var(--alert); font-weight:600; }
svg .bar-note { fill:var(--muted); font-size:11px; }
svg .hidden { display:none; }
svg circle:hover, svg rect:hover { opacity:.75; }
table { width:100%; border-collapse:collapse; background:var(--card); font-size:13px;
        border:1px solid var(--line); border-radius:8px; overflow:hidden; }
th, td { padding:7px 10px; border-bottom:1px solid var(--line); text-align:left;
         white-space:nowrap; }
th { background:#f9fafb; color:#374151; font-weight:600; font-size:12px; user-select:none; }
th[data-type] { cursor:pointer; }
th[data-type]::after { content:" ↕"; color:#c0c4cc; }
th.asc::after { content:" ↑"; color:var(--ink); }
th.desc::after { content:" ↓"; color:var(--ink); }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td.id { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12px;
        color:var(--muted); }
td.err { color:var(--alert); font-weight:600; }
tr:last-child td { border-bottom:none; }
.card table { border:none; border-radius:0; }
.card, .table-wrap { overflow-x:auto; }
td.msg { white-space:normal; color:var(--muted); min-width:200px; font-size:12px; }
td.msg .etype { color:var(--ink); font-size:13px; font-weight:600; }
.durbar { display:inline-block; height:8px; border-radius:4px; background:#f58518;
          margin-right:8px; vertical-align:0; opacity:.8; }
.durcell { display:flex; align-items:center; justify-content:flex-end; gap:0; }
td.id a { color:inherit; }
details.waterfall { background:var(--card); border:1px solid var(--line); border-radius:8px;
                    margin:0 0 8px; }
details.waterfall > summary { cursor:pointer; padding:8px 12px; font-size:13px; }
details.waterfall > summary code { color:var(--muted); font-size:11px; margin-left:6px; }
details.waterfall[open] > summary { border-bottom:1px solid var(--line); }
.wf { padding:4px 12px 10px; font-size:12px; }
.wf-row { display:grid; grid-template-columns:minmax(0, 34fr) minmax(0, 40fr) minmax(0, 26fr);
          gap:10px; align-items:center; min-height:22px; border-bottom:1px dashed #f0f1f3; }
.wf-header { color:var(--muted); font-weight:600; min-height:26px; }
.wf-name { white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.wf-agent { color:var(--muted); }
.wf-orphan { color:var(--alert); }
.wf-kind { display:inline-block; min-width:38px; font-size:10px; text-transform:uppercase;
           color:#fff; border-radius:3px; padding:0 4px; text-align:center; }
.wf-track { position:relative; height:12px; background:#f6f7f9; border-radius:2px; }
.wf-axis { background:none; height:18px; }
.wf-tick { position:absolute; top:0; transform:translateX(-50%); font-size:10px;
           color:var(--muted); white-space:nowrap; }
.wf-bar { position:absolute; top:0; height:12px; min-width:1px; border-radius:2px; }
.k-agent { background:#4c78a8; } .k-chain { background:#9d755d; }
.k-llm { background:#54a24b; } .k-tool { background:#b279a2; }
.wf-bar.err { outline:2px solid #e45756; outline-offset:-2px; }
.wf-meta { white-space:nowrap; overflow:hidden; text-overflow:ellipsis; color:var(--muted); }
.wf-dur { color:var(--ink); font-weight:600; }
.wf-cost { color:#2f7d32; font-weight:600; }
.wf-err { color:var(--alert); font-weight:600; }
footer { color:var(--muted); font-size:12px; margin-top:28px; border-top:1px solid var(--line);
         padding-top:10px; }
#tooltip { position:fixed; pointer-events:none; background:#111827; color:#fff; font-size:12px;
           padding:5px 8px; border-radius:4px; max-width:360px; z-index:10;
           box-shadow:0 2px 6px rgba(0,0,0,.25); }
"""

REPORT_JS = """
(function () {
  "use strict";
  var body = document.body;
  window.addEventListener("error", function (event) {
    body.setAttribute("data-render", "report-error: " + event.message);
  });
  var tip = document.getElementById("tooltip");
  document.addEventListener("mouseover", function (event) {
    var target = event.target.closest ? event.target.closest("[data-tip]") : null;
    if (!target) { tip.hidden = true; return; }
    tip.textContent = target.getAttribute("data-tip");
    tip.hidden = false;
  });
  document.addEventListener("mousemove", function (event) {
    if (tip.hidden) { return; }
    var x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    tip.style.left = x + "px";
    tip.style.top = (event.clientY + 16) + "px";
  });
  document.querySelectorAll("button[data-toggle]").forEach(function (button) {
    button.addEventListener("click", function () {
      var scope = document.getElementById(button.getAttribute("data-scope"));
      var key = button.getAttribute("data-toggle");
      var off = button.classList.toggle("off");
      button.setAttribute("aria-pressed", off ? "false" : "true");
      scope.querySelectorAll('[data-series="' + key + '"]').forEach(function (el) {
        el.classList.toggle("hidden", off);
      });
    });
  });
  function cellValue(row, index, type) {
    var cell = row.cells[index];
    var raw = cell.getAttribute("data-sort") || cell.textContent;
    return type === "num" ? parseFloat(raw) || 0 : raw.toLowerCase();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.querySelectorAll("th");
    headers.forEach(function (th, index) {
      var type = th.getAttribute("data-type");
      if (!type) { return; }
      th.addEventListener("click", function () {
        var ascending = !th.classList.contains("asc");
        headers.forEach(function (other) { other.classList.remove("asc", "desc"); });
        th.classList.add(ascending ? "asc" : "desc");
        var rows = Array.prototype.slice.call(table.tBodies[0].rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, index, type), y = cellValue(b, index, type);
          var order = x < y ? -1 : x > y ? 1 : 0;
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
      });
    });
  });
  function openFromHash() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var target = id ? document.getElementById(id) : null;
    if (target && target.tagName === "DETAILS") {
      target.open = true;
      target.scrollIntoView({block: "start"});
    }
  }
  window.addEventListener("hashchange", openFromHash);
  openFromHash();
  var expected = parseInt(body.getAttribute("data-charts"), 10);
  var drawn = document.querySelectorAll("svg.chart").length;
  if (!body.hasAttribute("data-render")) {
    body.setAttribute("data-render", drawn === expected
      ? "report-ok" : "report-error: " + drawn + " of " + expected + " charts");
  }
})();
"""
