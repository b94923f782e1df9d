// The dashboard: polls /health, each target's samples and the events every few seconds, and
// draws one uPlot chart per target (RSS, heap, heap after GC, budget, warn and critical marks);
// a remote target (browser pages, `plimsoll serve`) charts its worst instance.
// State for tests and scripts: body[data-points] is the number of points drawn over all
// charts, body[data-targets] the target names shown, body[data-errors] the JS errors (JSON).
"use strict";

(function () {
  var params = new URLSearchParams(location.search);
  var INTERVAL_MS = Math.max(500, Number(params.get("interval_ms")) || 2000);
  var WINDOW_MS = 30 * 60 * 1000; // history shown
  var MAX_POINTS = 3600;
  var MAX_EVENTS = 200;
  var MIB = 1024 * 1024;

  var targets = {}; // name -> { card, chart, data: {t, rss, heap, heapGc, budget}, since, health }
  var eventsSince = Date.now() - 24 * 3600 * 1000;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var key in attrs || {}) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bytes(b) {
    if (b === null || b === undefined) return "–";
    if (b >= 1024 * MIB) return (b / 1024 / MIB).toFixed(2) + " GiB";
    if (b >= MIB) return (b / MIB).toFixed(1) + " MiB";
    if (b >= 1024) return (b / 1024).toFixed(1) + " KiB";
    return b + " B";
  }

  // Axis ticks: short, whole MiB or GiB with one decimal.
  function axisBytes(b) {
    if (b >= 1024 * MIB) return (b / 1024 / MIB).toFixed(1) + " GiB";
    return Math.round(b / MIB) + " MiB";
  }

  function seconds(s) {
    if (s === null || s === undefined) return "–";
    if (s >= 86400) return (s / 86400).toFixed(1) + " d";
    if (s >= 3600) return (s / 3600).toFixed(1) + " h";
    if (s >= 60) return (s / 60).toFixed(1) + " min";
    return s.toFixed(0) + " s";
  }

  // With a read token on the server, open the page as /#token=TOKEN: the fragment is never
  // sent to the server, and every fetch carries the token.
  var readToken = new URLSearchParams(location.hash.slice(1)).get("token");

  function getJson(url) {
    var headers = readToken ? { Authorization: "Bearer " + readToken } : {};
    return fetch(url, { cache: "no-store", headers: headers }).then(function (response) {
      if (!response.ok && response.status !== 503) throw new Error(url + ": HTTP " + response.status);
      return response.json();
    });
  }

  function setStatus(text) {
    document.getElementById("status").textContent = text;
  }

  function publishPoints() {
    var points = 0;
    for (var name in targets) {
      var chart = targets[name].chart;
      if (chart && chart.data && chart.data[0]) points += chart.data[0].length;
    }
    document.body.dataset.points = String(points);
    document.body.dataset.targets = Object.keys(targets).join(",");
  }

  function chartWidth(card) {
    return Math.max(300, card.clientWidth - 20);
  }

  function makeTarget(name) {
    var card = el("article", { "class": "card", "data-target": name });
    var title = el("h2");
    title.appendChild(el("span", { "class": "name" }, name));
    title.appendChild(el("span", { "class": "level" }, "…"));
    card.appendChild(title);
    card.appendChild(el("div", { "class": "facts" }));
    var plot = el("div", { "class": "chart" });
    card.appendChild(plot);
    document.getElementById("targets").appendChild(card);
    var target = {
      card: card,
      plot: plot,
      chart: null,
      data: { t: [], rss: [], heap: [], heapGc: [], budget: [] },
      since: Date.now() - WINDOW_MS,
      health: null
    };
    targets[name] = target;
    return target;
  }

  function fact(label, value, cls) {
    var span = el("span");
    span.appendChild(el("b", {}, label + " "));
    span.appendChild(el("span", cls ? { "class": cls } : {}, value));
    return span;
  }

  function renderFacts(target, h) {
    var level = target.card.querySelector(".level");
    level.textContent = h.level;
    level.className = "level " + h.level;
    var facts = target.card.querySelector(".facts");
    facts.textContent = "";
    if (!h.remote) {
      facts.appendChild(fact("pid", h.pid === null ? "–" : String(h.pid)));
      facts.appendChild(fact("RSS", bytes(h.rss_bytes)));
    }
    if (h.heap_used_bytes !== null) facts.appendChild(fact("heap", bytes(h.heap_used_bytes)));
    facts.appendChild(fact("budget", bytes(h.budget_bytes)));
    var leak = h.leak;
    var verdict = leak ? leak.state : "clear";
    facts.appendChild(fact("leak", verdict, "leak-" + verdict));
    if (leak) {
      facts.appendChild(fact("growth", bytes(leak.growth_bytes_per_s * 60) + "/min"));
      if (leak.time_to_budget_s !== null) facts.appendChild(fact("budget in", seconds(leak.time_to_budget_s)));
    }
    if (h.remote) {
      // A remote target (browser pages): its instances by leak state; the chart is the worst.
      var states = h.remote.leak_states || {};
      facts.appendChild(fact("instances", String(h.remote.instances)));
      facts.appendChild(fact("leaking", String((states.suspected || 0) + (states.confirmed || 0))));
      if (h.remote.dom_nodes) facts.appendChild(fact("DOM nodes (max)", String(h.remote.dom_nodes.max)));
      if (h.remote.chart) facts.appendChild(fact("chart", h.remote.chart));
      return;
    }
    facts.appendChild(fact("restarts", String(h.restarts)));
    facts.appendChild(fact("uptime", seconds(h.uptime_s)));
    if (!h.owned) facts.appendChild(fact("mode", "watched"));
  }

  function seriesData(target) {
    var d = target.data;
    var h = target.health || {};
    var warn = (h.warn_percent || 75) / 100;
    var critical = (h.critical_percent || 85) / 100;
    var warnLine = d.budget.map(function (b) { return b === null ? null : b * warn; });
    var criticalLine = d.budget.map(function (b) { return b === null ? null : b * critical; });
    return [d.t, d.rss, d.heap, d.heapGc, d.budget, criticalLine, warnLine];
  }

  function makeChart(target) {
    var options = {
      width: chartWidth(target.card),
      height: 260,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(max * 1.05, MIB)]; } } },
      axes: [{}, { size: 80, values: function (u, ticks) { return ticks.map(axisBytes); } }],
      series: [
        {},
        { label: "RSS", stroke: "#1565c0", width: 2, value: function (u, v) { return bytes(v); } },
        { label: "heap used", stroke: "#6a1b9a", value: function (u, v) { return bytes(v); } },
        { label: "heap after GC", stroke: "#00897b", value: function (u, v) { return bytes(v); } },
        { label: "budget", stroke: "#c62828", width: 2, value: function (u, v) { return bytes(v); } },
        { label: "critical", stroke: "#e57373", dash: [6, 4], value: function (u, v) { return bytes(v); } },
        { label: "warn", stroke: "#f9a825", dash: [6, 4], value: function (u, v) { return bytes(v); } }
      ],
      hooks: { draw: [publishPoints] }
    };
    target.chart = new uPlot(options, seriesData(target), target.plot);
  }

  function redraw(target) {
    if (!target.chart) makeChart(target);
    else target.chart.setData(seriesData(target));
    publishPoints();
  }

  function append(target, samples) {
    var d = target.data;
    samples.forEach(function (s) {
      d.t.push(s.t_unix_ms / 1000);
      d.rss.push(s.rss_bytes);
      d.heap.push(s.heap_used_bytes);
      d.heapGc.push(s.heap_used_after_gc_bytes);
      d.budget.push(s.budget_bytes);
    });
    var extra = d.t.length - MAX_POINTS;
    if (extra > 0) {
      for (var key in d) d[key].splice(0, extra);
    }
  }

  function pollSamples(name, target) {
    var url = "/api/v1/targets/" + encodeURIComponent(name) + "/samples?since=" + target.since + "&limit=" + MAX_POINTS;
    return getJson(url).then(function (body) {
      if (body.samples && body.samples.length) {
        append(target, body.samples);
        target.since = body.next_since;
      }
      if (target.data.t.length) redraw(target);
    });
  }

  function pollEvents() {
    return getJson("/api/v1/events?since=" + eventsSince + "&limit=" + MAX_EVENTS).then(function (body) {
      var list = document.getElementById("events");
      (body.events || []).forEach(function (e) {
        var item = el("li", { "class": "event " + e.event });
        item.appendChild(el("time", {}, new Date(e.t_unix_ms).toLocaleTimeString()));
        item.appendChild(el("b", {}, e.target + " "));
        item.appendChild(document.createTextNode(describe(e)));
        list.insertBefore(item, list.firstChild);
      });
      while (list.children.length > MAX_EVENTS) list.removeChild(list.lastChild);
      if (body.next_since) eventsSince = body.next_since;
    });
  }

  function describe(e) {
    switch (e.event) {
      case "level-changed": return "level " + e.from + " → " + e.to + " (RSS " + bytes(e.rss_bytes) + ")";
      case "budget-breach": return "budget breach: RSS " + bytes(e.rss_bytes) + " over " + bytes(e.budget_bytes);
      case "restarted": return "restarted after " + e.reason + " (attempt " + e.attempt + ")";
      case "started": return "started, pid " + e.pid;
      case "exited": return "exited" + (e.code !== null && e.code !== undefined ? " with code " + e.code : e.signal ? " by signal " + e.signal : "");
      default:
        if (e.event && e.event.indexOf("leak-") === 0) return e.event + ": " + bytes(e.growth_bytes_per_s * 60) + "/min";
        return e.event;
    }
  }

  function poll() {
    getJson("/health").then(function (health) {
      var overall = document.getElementById("overall");
      overall.textContent = health.status;
      overall.className = "level " + health.status;
      var work = [pollEvents()];
      (health.targets || []).forEach(function (h) {
        var target = targets[h.name] || makeTarget(h.name);
        target.health = h;
        renderFacts(target, h);
        // A remote target's series is that of one instance (TARGET.INSTANCE): the worst one.
        var series = h.remote ? h.remote.chart : h.name;
        if (!series) return;
        if (target.series !== series) {
          target.series = series;
          target.since = Date.now() - WINDOW_MS;
          for (var key in target.data) target.data[key] = [];
        }
        work.push(pollSamples(series, target));
      });
      publishPoints();
      return Promise.all(work);
    }).then(function () {
      setStatus("updated " + new Date().toLocaleTimeString());
    }).catch(function (error) {
      setStatus("cannot reach plimsoll: " + error.message);
    }).then(function () {
      setTimeout(poll, INTERVAL_MS);
    });
  }

  window.addEventListener("resize", function () {
    for (var name in targets) {
      var t = targets[name];
      if (t.chart) t.chart.setSize({ width: chartWidth(t.card), height: 260 });
    }
  });

  poll();
})();
