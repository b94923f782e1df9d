// The report: draws the inlined data (script#plimsoll-data) with uPlot: memory against the
// budget and its marks, the runtime heap, the events as vertical markers, the verdict, the
// events list, heap suspects and the settings. No network.
// State for tests: body[data-points] is the number of points drawn over all charts,
// body[data-errors] the JS errors (JSON, collected by the page's first script).
"use strict";

(function () {
  var MIB = 1024 * 1024;
  var data = JSON.parse(document.getElementById("plimsoll-data").textContent);
  var root = document.getElementById("report");
  var drawn = {}; // chart id -> points drawn

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var key in attrs || {}) node.setAttribute(key, attrs[key]);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function bytes(b) {
    if (b === null || b === undefined) return "–";
    var sign = b < 0 ? "-" : "";
    b = Math.abs(b);
    if (b >= 1024 * MIB) return sign + (b / 1024 / MIB).toFixed(2) + " GiB";
    if (b >= MIB) return sign + (b / MIB).toFixed(1) + " MiB";
    if (b >= 1024) return sign + (b / 1024).toFixed(1) + " KiB";
    return sign + Math.round(b) + " B";
  }

  function axisBytes(b) {
    if (b >= 1024 * MIB) return (b / 1024 / MIB).toFixed(1) + " GiB";
    if (b >= 10 * MIB) return Math.round(b / MIB) + " MiB";
    return (b / MIB).toFixed(1) + " MiB";
  }

  function seconds(s) {
    if (s === null || s === undefined) return "–";
    s = Math.max(0, Math.round(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
    return Math.floor(s / 3600) + "h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
  }

  var t = data.samples.t;
  var t0 = t.length ? t[0] : data.generated_unix_ms / 1000;

  function clock(tSec) {
    return new Date(tSec * 1000).toLocaleTimeString() + " (+" + seconds(tSec - t0) + ")";
  }

  function anyValue(values) {
    for (var i = 0; i < values.length; i++) if (values[i] !== null) return true;
    return false;
  }

  function setPoints() {
    var total = 0;
    for (var id in drawn) total += drawn[id];
    document.body.dataset.points = String(total);
  }

  var EVENT_COLORS = {
    "leak-confirmed": "#c62828", "budget-breach": "#c62828", "gave-up": "#c62828",
    "leak-suspected": "#ef6c00", "level-changed": "#f9a825", "exited": "#6d4c41",
    "restarted": "#6d4c41", "started": "#90a4ae", "leak-cleared": "#2e7d32",
    "snapshot-written": "#5e35b1"
  };

  // Vertical lines at the events, and the end of the warm-up, drawn under the series.
  function markersPlugin() {
    return {
      hooks: {
        drawClear: [function (u) {
          var ctx = u.ctx;
          ctx.save();
          ctx.lineWidth = 1 * devicePixelRatio;
          var marks = data.events.map(function (e) { return { t: e.t, color: EVENT_COLORS[e.kind] || "#999", dash: [] }; });
          if (data.warmup_end !== null && data.warmup_end !== undefined) marks.push({ t: data.warmup_end, color: "#546e7a", dash: [2, 3] });
          marks.forEach(function (m) {
            var x = Math.round(u.valToPos(m.t, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
            ctx.strokeStyle = m.color;
            ctx.setLineDash(m.dash.map(function (d) { return d * devicePixelRatio; }));
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          });
          ctx.restore();
        }],
        draw: [function (u) {
          // Points drawn: every non-null value of every shown series within the x range.
          var count = 0;
          for (var s = 1; s < u.series.length; s++) {
            if (!u.series[s].show) continue;
            var values = u.data[s];
            for (var i = 0; i < values.length; i++) if (values[i] !== null && values[i] !== undefined) count++;
          }
          drawn[u.root.id] = count;
          setPoints();
        }]
      }
    };
  }

  function chart(id, title, series, columns) {
    var card = el("section", { "class": "card" });
    card.appendChild(el("h2", null, title));
    var holder = el("div", { id: id });
    card.appendChild(holder);
    root.appendChild(card);
    var width = Math.max(600, (card.clientWidth || 900) - 32);
    var opts = {
      id: id,
      width: width,
      height: 320,
      plugins: [markersPlugin()],
      cursor: { drag: { x: true, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { values: function (u, ticks) { return ticks.map(axisBytes); }, size: 70 }],
      series: [{ value: function (u, v) { return v === null ? "–" : clock(v); } }].concat(series.map(function (s) {
        return { label: s.label, stroke: s.color, width: s.width || 1.5, dash: s.dash, spanGaps: s.spanGaps || false,
                 value: function (u, v) { return bytes(v); } };
      }))
    };
    var u = new uPlot(opts, [t].concat(columns), holder);
    holder.id = id;
    u.root.id = id + "-plot";
    return u;
  }

  function line(values, ratio) {
    return values.map(function (b) { return b === null ? null : b * ratio; });
  }

  // Verdict.
  (function verdict() {
    var v = data.verdict || {};
    var card = el("section", { "class": "card" });
    card.appendChild(el("h2", null, "Verdict"));
    var cls, text;
    var failed = v.verdict === "leak" || (v.failures && v.failures.length > 0);
    if (failed) { cls = "fail"; text = v.verdict === "leak" ? "LEAK" : "FAILED"; }
    else if (v.verdict === "no-leak") { cls = "pass"; text = "no leak"; }
    else { cls = "unknown"; text = "inconclusive"; }
    card.appendChild(el("span", { "class": "verdict " + cls, id: "verdict" }, text));
    if (v.failures && v.failures.length) {
      var list = el("ul", { "class": "failures" });
      v.failures.forEach(function (f) { list.appendChild(el("li", null, f)); });
      card.appendChild(list);
    }
    var facts = el("dl", { "class": "facts" });
    function fact(label, value) { facts.appendChild(el("dt", null, label)); facts.appendChild(el("dd", null, value)); }
    fact("leak verdict", v.verdict + (v.confidence !== undefined ? " (confidence " + Math.round(v.confidence * 100) + " %)" : ""));
    fact("growth of the retained floor", bytes(v.growth_bytes_per_s * 60) + "/min (" + (v.signal || "rss") + ")");
    fact("time to budget", v.time_to_budget_s === null || v.time_to_budget_s === undefined ? (v.budget_bytes ? "not on course to reach it" : "no budget") : seconds(v.time_to_budget_s));
    if (v.suspected_after_s !== null && v.suspected_after_s !== undefined) fact("leak suspected after", seconds(v.suspected_after_s));
    if (v.detected_after_s !== null && v.detected_after_s !== undefined) fact("leak confirmed after", seconds(v.detected_after_s));
    fact("observed", v.samples + " samples over " + seconds(v.duration_s));
    if (v.needs_more_s !== null && v.needs_more_s !== undefined) fact("a verdict needs", seconds(v.needs_more_s) + " more of observation");
    if (v.budget_bytes) fact("budget", bytes(v.budget_bytes));
    if (v.peak_rss_bytes) fact("peak RSS", bytes(v.peak_rss_bytes));
    if (v.budget_exceeded !== undefined) fact("budget exceeded", v.budget_exceeded ? "yes, after " + seconds(v.budget_exceeded_after_s) : "no");
    if (v.load_failed !== undefined) fact("load command", v.load_failed ? "failed: " + v.load_error : "ok");
    if (v.restarts) fact("restarts", String(v.restarts));
    if (v.heap_channel) fact("heap channel", v.heap_channel === "forced-gc" ? "heap used right after a forced full GC" : "heap used after the app's own major GCs");
    if (v.forced_gc) {
      var g = v.forced_gc, p = g.pause_ms || {}, h = g.heap_after_gc_bytes || {};
      fact("forced GC", "every " + seconds(g.every_s) + ": " + g.count + " GCs" + (g.failed ? " (" + g.failed + " failed)" : ""));
      if (g.pause_ms) fact("forced GC pause", p.median + " ms median, " + p.p95 + " ms p95, " + p.max + " ms max; " + (g.paused_fraction * 100).toFixed(3) + " % of the time");
      if (h.last !== null && h.last !== undefined) fact("live heap after GC", (h.first_steady !== null && h.first_steady !== undefined ? bytes(h.first_steady) + " → " : "") + bytes(h.last));
    }
    if (v.suspects_missing) fact("suspects", "not named: " + v.suspects_missing);
    card.appendChild(facts);
    if (v.suspects && v.suspects.length) {
      card.appendChild(el("h3", null, "Leak suspects (born between the first two snapshots, alive in the third)"));
      var named = el("table", { id: "suspects" });
      var top = el("tr");
      ["constructor", "new objects", "bytes", "retainer path"].forEach(function (h) { top.appendChild(el("th", null, h)); });
      named.appendChild(top);
      v.suspects.forEach(function (s) {
        var row = el("tr");
        row.appendChild(el("td", null, String(s["constructor"])));
        row.appendChild(el("td", { "class": "num" }, "+" + s.count_growth));
        row.appendChild(el("td", { "class": "num" }, bytes(s.bytes_growth)));
        row.appendChild(el("td", null, s.retainer_path || ""));
        named.appendChild(row);
      });
      card.appendChild(named);
    }
    root.appendChild(card);
  })();

  // Charts.
  var budget = data.samples.budget;
  var memSeries = [{ label: "RSS", color: "#1565c0", width: 2 }];
  var memColumns = [data.samples.rss];
  if (anyValue(data.samples.heap)) { memSeries.push({ label: "heap used", color: "#2e7d32" }); memColumns.push(data.samples.heap); }
  if (anyValue(data.samples.heap_gc)) { memSeries.push({ label: "heap after GC", color: "#ad1457", spanGaps: true }); memColumns.push(data.samples.heap_gc); }
  if (anyValue(budget)) {
    memSeries.push({ label: "budget", color: "#c62828", dash: [8, 4] });
    memColumns.push(budget);
    memSeries.push({ label: "critical " + Math.round(data.levels.critical * 100) + " %", color: "#ef6c00", dash: [4, 4], width: 1 });
    memColumns.push(line(budget, data.levels.critical));
    memSeries.push({ label: "warn " + Math.round(data.levels.warn * 100) + " %", color: "#f9a825", dash: [4, 4], width: 1 });
    memColumns.push(line(budget, data.levels.warn));
  }
  chart("chart-memory", "Memory of the process tree" + (anyValue(budget) ? " against the budget" : ""), memSeries, memColumns);
  if (anyValue(data.samples.heap)) {
    chart("chart-heap", "Runtime heap (the heap after GC is what a leak keeps)",
      [{ label: "heap used", color: "#2e7d32" }, { label: "heap after GC", color: "#ad1457", spanGaps: true, width: 2 }],
      [data.samples.heap, data.samples.heap_gc]);
  }
  var note = el("p", { "class": "muted" }, "Vertical lines: events (red: breach or leak confirmed, orange: leak suspected, yellow: level changed, brown: exit or restart" +
    (data.warmup_end ? "; dotted: end of the warm-up" : "") + "). " + data.sample_count + " samples" +
    (data.sample_count > t.length ? ", shown as " + t.length + " points (each the highest RSS of its stretch)" : "") + ". Drag to zoom, double-click to reset.");
  root.appendChild(note);

  // Events.
  (function events() {
    var card = el("section", { "class": "card" });
    card.appendChild(el("h2", null, "Events (" + data.events.length + ")"));
    if (!data.events.length) {
      card.appendChild(el("p", { "class": "muted" }, "No events."));
    } else {
      var table = el("table");
      var head = el("tr");
      ["time", "event", "details"].forEach(function (h) { head.appendChild(el("th", null, h)); });
      table.appendChild(head);
      data.events.forEach(function (e) {
        var row = el("tr", { "class": "ev-" + e.kind });
        row.appendChild(el("td", null, clock(e.t)));
        row.appendChild(el("td", null, e.kind));
        row.appendChild(el("td", null, e.text));
        table.appendChild(row);
      });
      card.appendChild(table);
    }
    root.appendChild(card);
  })();

  // Heap suspects, when snapshots allowed a diff.
  if (data.suspects) {
    (function suspects() {
      var s = data.suspects;
      var card = el("section", { "class": "card" });
      card.appendChild(el("h2", null, "Heap suspects (objects allocated between the first two snapshots and still alive in the third)"));
      card.appendChild(el("p", { "class": "muted" }, (s.suspects || 0) + " suspects, " + bytes(s.suspect_retained_size_bytes) + " retained. Snapshots: " + (s.files || []).join(", ")));
      var table = el("table");
      var head = el("tr");
      ["class", "count", "retained", "example retainer path"].forEach(function (h) { head.appendChild(el("th", null, h)); });
      table.appendChild(head);
      (s.by_class || []).forEach(function (g) {
        var row = el("tr");
        row.appendChild(el("td", null, g["class"]));
        row.appendChild(el("td", { "class": "num" }, String(g.count)));
        row.appendChild(el("td", { "class": "num" }, bytes(g.retained_size_bytes)));
        row.appendChild(el("td", null, g.example ? g.example.retainer_path : (g.retainer_path || "")));
        table.appendChild(row);
      });
      card.appendChild(table);
      root.appendChild(card);
    })();
  }

  // Settings.
  (function settings() {
    var card = el("section", { "class": "card" });
    card.appendChild(el("h2", null, "Settings"));
    var facts = el("dl", { "class": "facts" });
    data.settings.forEach(function (pair) { facts.appendChild(el("dt", null, pair[0])); facts.appendChild(el("dd", null, pair[1])); });
    facts.appendChild(el("dt", null, "report written"));
    facts.appendChild(el("dd", null, new Date(data.generated_unix_ms).toLocaleString()));
    card.appendChild(facts);
    root.appendChild(card);
  })();
  document.body.dataset.errors = JSON.stringify(window.plimsollErrors || []);
})();
