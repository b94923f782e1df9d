// plimsoll-browser.js: the memory monitor of a web page, an ES module with no dependencies.
// It samples the page's memory, DOM size and long tasks and posts them to plimsoll's
// POST /api/v1/ingest, where each page load (an instance) runs through the same levels and
// leak detector as a process. It never throws into the page, backs off while the server is
// away, and measures its own cost per sample (export().cost: mean, median, p95, max in ms).
//
//   import { startMemoryMonitor } from "http://127.0.0.1:9464/agent/plimsoll-browser.js";
//   const monitor = startMemoryMonitor({ endpoint: "http://127.0.0.1:9464", token: "…",
//                                        target: "web", intervalMs: 10000 });
//   monitor.export();  // the samples so far, for analysis; monitor.stop() ends it
//
// Memory: performance.measureUserAgentSpecificMemory() where the page is cross-origin isolated
// (the whole page, the standard figure; it resolves lazily, so a sample carries the latest
// finished measurement, and none is sent before the first), else
// performance.memory.usedJSHeapSize (Chromium; precise only with
// --enable-precise-memory-info, otherwise rounded). Without either, samples are kept for
// export() but not sent (the server needs a memory figure).

const MIN_INTERVAL_MS = 100;
const MAX_PENDING = 600; // unsent samples kept; the oldest go first
const MAX_BATCH = 100; // samples per request (a keepalive body must stay under 64 KiB)
const MAX_EXPORT = 10000; // samples kept for export()
const MAX_BACKOFF_MS = 5 * 60 * 1000;
const MAX_COSTS = 1000; // the latest per-sample costs, for the median and the 95th percentile

/** Starts monitoring; returns `{ stop(), export() }`. Never throws. */
export function startMemoryMonitor(options) {
  try {
    return start(options || {});
  } catch (error) {
    return inert(error);
  }
}

function inert(error) {
  const message = String((error && error.message) || error);
  return {
    stop() {},
    export() {
      return { instance: null, target: null, samples: [], cost: null, stats: { error: message } };
    }
  };
}

function randomId() {
  const bytes = new Uint8Array(8);
  if (globalThis.crypto && crypto.getRandomValues) crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// What one sample costs the page, in milliseconds of its main thread: mean, median and 95th
// percentile of the latest samples, and the worst.
function costFigures(cost) {
  const sorted = cost.recent.slice().sort((a, b) => a - b);
  const at = (q) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0;
  return {
    samples: cost.samples,
    mean_ms: cost.samples ? cost.totalMs / cost.samples : 0,
    median_ms: at(0.5),
    p95_ms: at(0.95),
    max_ms: cost.maxMs
  };
}

function ingestUrl(endpoint) {
  const base = String(endpoint || "").replace(/\/+$/, "");
  return /\/api\/v1\/ingest$/.test(base) ? base : base + "/api/v1/ingest";
}

function start(options) {
  const target = String(options.target || "web");
  const token = String(options.token || "");
  const url = ingestUrl(options.endpoint);
  const intervalMs = Math.max(MIN_INTERVAL_MS, Number(options.intervalMs) || 10000);
  const flushMs = Math.max(intervalMs, Number(options.flushMs) || Math.max(5 * intervalMs, 1000));
  const instance = randomId();
  const isolated = globalThis.crossOriginIsolated === true &&
    typeof performance.measureUserAgentSpecificMemory === "function";

  const samples = []; // for export()
  const pending = []; // not yet sent
  const stats = { sent: 0, dropped: 0, failed: 0, refused: 0, lastError: null };
  const cost = { samples: 0, totalMs: 0, maxMs: 0, recent: [] };
  let longTasks = 0;
  let longTaskMs = 0;
  let uaBytes = null; // the latest finished measureUserAgentSpecificMemory()
  let measuring = false;
  let inFlight = false;
  let backoffMs = 0;
  let nextSendAt = 0;
  let stopped = false;
  const all = document.getElementsByTagName("*"); // live: its length is cached until the DOM changes

  let observer = null;
  try {
    observer = new PerformanceObserver((list) => {
      try {
        for (const entry of list.getEntries()) {
          longTasks += 1;
          longTaskMs += entry.duration;
        }
      } catch (_) { /* never into the page */ }
    });
    observer.observe({ type: "longtask", buffered: true });
  } catch (_) {
    observer = null; // no long task timing here
  }

  function measureWhole() {
    if (!isolated || measuring) return;
    measuring = true;
    try {
      performance.measureUserAgentSpecificMemory().then((result) => {
        uaBytes = result.bytes;
      }, () => {}).then(() => {
        measuring = false;
      });
    } catch (_) {
      measuring = false; // refused at once (e.g. a SecurityError): try again next sample
    }
  }

  function sample() {
    if (stopped) return;
    try {
      const t0 = performance.now();
      measureWhole();
      const memory = performance.memory;
      // One figure per instance, never a mix: the whole page's once measured, when isolated.
      const heapUsed = isolated ? uaBytes : memory ? memory.usedJSHeapSize : null;
      const s = {
        t_unix_ms: Date.now(),
        heap_used_bytes: heapUsed,
        heap_total_bytes: memory ? memory.totalJSHeapSize : null,
        dom_nodes: all.length,
        long_tasks: longTasks,
        long_task_ms: Math.round(longTaskMs * 10) / 10
      };
      longTasks = 0;
      longTaskMs = 0;
      if (samples.length >= MAX_EXPORT) samples.shift();
      samples.push(s);
      if (s.heap_used_bytes !== null) {
        if (pending.length >= MAX_PENDING) {
          pending.shift();
          stats.dropped += 1;
        }
        pending.push(s);
      }
      const ms = performance.now() - t0;
      cost.samples += 1;
      cost.totalMs += ms;
      if (ms > cost.maxMs) cost.maxMs = ms;
      if (cost.recent.length >= MAX_COSTS) cost.recent.shift();
      cost.recent.push(ms);
    } catch (error) {
      stats.lastError = String((error && error.message) || error);
    }
  }

  function send(batch) {
    const body = JSON.stringify({ target: target, instance: instance, samples: batch });
    return fetch(url, {
      method: "POST",
      keepalive: true,
      mode: "cors",
      credentials: "omit",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
      body: body
    });
  }

  function flush(force) {
    if (stopped && !force) return;
    try {
      const now = Date.now();
      if (pending.length === 0 || inFlight || (!force && now < nextSendAt)) return;
      const batch = pending.slice(0, MAX_BATCH);
      inFlight = true;
      send(batch).then((response) => {
        if (response.ok) {
          pending.splice(0, batch.length);
          stats.sent += batch.length;
          backoffMs = 0;
        } else if (response.status === 429 || response.status >= 500) {
          backOff("HTTP " + response.status);
        } else {
          // The server will never take this batch (a bad token, a bad sample): drop it.
          pending.splice(0, batch.length);
          stats.refused += batch.length;
          stats.lastError = "HTTP " + response.status;
          backOff("HTTP " + response.status);
        }
      }, (error) => {
        backOff(String((error && error.message) || error));
      }).then(() => {
        inFlight = false;
      });
    } catch (error) {
      inFlight = false;
      backOff(String((error && error.message) || error));
    }
  }

  // Doubling from the flush period up to 5 minutes, with jitter, while the server is away.
  function backOff(why) {
    stats.failed += 1;
    stats.lastError = why;
    backoffMs = Math.min(MAX_BACKOFF_MS, backoffMs ? backoffMs * 2 : flushMs);
    nextSendAt = Date.now() + backoffMs * (0.75 + Math.random() * 0.5);
  }

  function onHide() {
    try {
      sample();
      inFlight = false; // a keepalive request outlives the page: send the rest now
      flush(true);
    } catch (_) { /* never into the page */ }
  }
  function onVisibility() {
    if (document.visibilityState === "hidden") onHide();
  }

  const sampler = setInterval(sample, intervalMs);
  const flusher = setInterval(() => flush(false), flushMs);
  addEventListener("pagehide", onHide);
  document.addEventListener("visibilitychange", onVisibility);
  sample();

  return {
    stop() {
      try {
        if (stopped) return;
        clearInterval(sampler);
        clearInterval(flusher);
        removeEventListener("pagehide", onHide);
        document.removeEventListener("visibilitychange", onVisibility);
        if (observer) observer.disconnect();
        flush(true);
        stopped = true;
      } catch (_) { /* never into the page */ }
    },
    export() {
      return {
        instance: instance,
        target: target,
        samples: samples.slice(),
        cost: costFigures(cost),
        stats: {
          sent: stats.sent,
          pending: pending.length,
          dropped: stats.dropped,
          refused: stats.refused,
          failed: stats.failed,
          last_error: stats.lastError,
          source: isolated ? "measureUserAgentSpecificMemory" : performance.memory ? "performance.memory" : "none"
        }
      };
    }
  };
}
