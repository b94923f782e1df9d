// Plimsoll's Node.js agent: preloaded by `plimsoll run` through NODE_OPTIONS=--require, it
// reports heap figures (and the heap used after each major GC) over a private unix socket and
// answers commands (heap snapshot, gc, clear caches). It must never crash or slow the app: every
// error is caught and reported, timers are unref'd, writes are bounded, and without the socket
// it does nothing at all.
'use strict';

(function plimsollAgent() {
  const socketPath = process.env.PLIMSOLL_AGENT_SOCKET;
  if (!socketPath) return;

  let net, v8, perfHooks;
  try {
    net = require('net');
    v8 = require('v8');
    perfHooks = require('perf_hooks');
  } catch (_) {
    return;
  }

  const intervalMs = Math.max(100, Number(process.env.PLIMSOLL_AGENT_INTERVAL_MS) || 1000);
  // Bytes of unsent lines after which new lines are dropped (and counted).
  const MAX_PENDING_BYTES = 256 * 1024;
  const CLEAR_CACHES_EVENT = 'plimsoll:clear-caches';

  let socket = null;
  let connected = false;
  let dropped = 0;
  let errors = 0;
  let afterGc = null; // heap used right after the last major GC, bytes
  let gcSource = null; // "observer" once the GC observer is set up

  function report(kind, error) {
    errors += 1;
    send({ type: 'error', pid: process.pid, where: kind, message: String(error && error.message || error) });
  }

  function send(message) {
    if (!connected || socket === null) {
      dropped += 1;
      return;
    }
    try {
      if (socket.writableLength > MAX_PENDING_BYTES) {
        dropped += 1;
        return;
      }
      socket.write(JSON.stringify(message) + '\n');
    } catch (_) {
      dropped += 1;
    }
  }

  // Heap used after each major GC: a PerformanceObserver on major 'gc' entries reads the heap
  // right after the collection. (v8.GCProfiler gives exact figures, but only on stop(); rotated
  // every interval on a busy server it leaked native memory, ~4.5 MiB/s at 130 GCs/s, and cost
  // throughput, so the agent does not use it.)
  try {
    const major = perfHooks.constants.NODE_PERFORMANCE_GC_MAJOR;
    const observer = new perfHooks.PerformanceObserver((list) => {
      try {
        for (const entry of list.getEntries()) {
          const kind = entry.detail ? entry.detail.kind : entry.kind;
          if (kind === major) afterGc = v8.getHeapStatistics().used_heap_size;
        }
      } catch (error) {
        report('gc-observer', error);
      }
    });
    observer.observe({ entryTypes: ['gc'] });
    gcSource = 'observer';
  } catch (error) {
    report('gc-observer', error);
  }

  function figures() {
    const usage = process.memoryUsage();
    const heap = v8.getHeapStatistics();
    return {
      type: 'figures',
      pid: process.pid,
      t_unix_ms: Date.now(),
      rss_bytes: usage.rss,
      heap_used_bytes: usage.heapUsed,
      heap_total_bytes: usage.heapTotal,
      external_bytes: usage.external,
      array_buffers_bytes: usage.arrayBuffers,
      heap_limit_bytes: heap.heap_size_limit,
      heap_used_after_gc_bytes: afterGc,
      gc_source: gcSource,
      dropped,
      errors,
    };
  }

  let gcFunction = null;
  function fullGc() {
    if (gcFunction === null) {
      if (typeof global.gc === 'function') {
        gcFunction = global.gc;
      } else {
        // The documented way to reach gc() without --expose-gc on the command line.
        v8.setFlagsFromString('--expose-gc');
        gcFunction = require('vm').runInNewContext('gc');
      }
    }
    const before = process.memoryUsage().heapUsed;
    // The pause the app sees: gc() runs on the app's own thread, start to end.
    const started = process.hrtime.bigint();
    gcFunction();
    const after = v8.getHeapStatistics().used_heap_size;
    // V8 frees the backing stores of dead ArrayBuffers and Buffers on a background sweeper
    // after a full GC, and the next GC of any kind waits for it: a young-generation GC (about
    // a millisecond) makes `external` exact. Without it a reading held megabytes of dead
    // Buffers, more at some GCs than at others (bench/README.md, "Recorded soaks").
    try {
      gcFunction({ type: 'minor' });
    } catch (_) {}
    const pauseNs = Number(process.hrtime.bigint() - started);
    afterGc = after;
    // What the live ArrayBuffers and Buffers hold outside the heap, after the same GC: an
    // off-heap leak of Buffers shows here when RSS hides it (freed pages reused).
    const external = process.memoryUsage().external;
    return {
      heap_used_before_bytes: before,
      heap_used_after_bytes: after,
      external_after_bytes: external,
      pause_ms: pauseNs / 1e6,
    };
  }

  function handle(command) {
    const reply = { type: 'reply', pid: process.pid, id: command.id };
    try {
      if (command.cmd === 'gc') {
        Object.assign(reply, { ok: true }, fullGc());
      } else if (command.cmd === 'snapshot') {
        const path = v8.writeHeapSnapshot(command.path);
        let bytes = null;
        try {
          bytes = require('fs').statSync(path).size;
        } catch (_) {}
        Object.assign(reply, { ok: true, path, bytes });
      } else if (command.cmd === 'clear-caches') {
        const listeners = process.listenerCount(CLEAR_CACHES_EVENT);
        process.emit(CLEAR_CACHES_EVENT);
        Object.assign(reply, { ok: true, listeners });
      } else {
        Object.assign(reply, { ok: false, error: 'unknown command ' + JSON.stringify(command.cmd) });
      }
    } catch (error) {
      Object.assign(reply, { ok: false, error: String(error && error.message || error) });
    }
    send(reply);
  }

  function connect() {
    try {
      socket = net.createConnection(socketPath);
    } catch (_) {
      return;
    }
    socket.unref();
    socket.setEncoding('utf8');
    let buffered = '';
    socket.on('connect', () => {
      connected = true;
      let constrained = null;
      try {
        if (typeof process.constrainedMemory === 'function') constrained = process.constrainedMemory() || null;
      } catch (_) {}
      send({
        type: 'hello',
        pid: process.pid,
        ppid: process.ppid,
        node: process.version,
        heap_limit_bytes: v8.getHeapStatistics().heap_size_limit,
        constrained_memory_bytes: constrained,
        gc_source: gcSource,
      });
      send(figures());
    });
    socket.on('data', (chunk) => {
      buffered += chunk;
      if (buffered.length > 1024 * 1024) buffered = '';
      let newline;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.trim() === '') continue;
        let command;
        try {
          command = JSON.parse(line);
        } catch (error) {
          report('command', error);
          continue;
        }
        handle(command);
      }
    });
    // A supervisor that goes away is not the app's problem: stop reporting, quietly.
    socket.on('error', () => {
      connected = false;
    });
    socket.on('close', () => {
      connected = false;
      socket = null;
    });
  }

  try {
    connect();
    const timer = setInterval(() => {
      try {
        if (connected) send(figures());
      } catch (error) {
        report('figures', error);
      }
    }, intervalMs);
    timer.unref();
  } catch (_) {
    // Nothing the agent does may take the app down.
  }
})();
