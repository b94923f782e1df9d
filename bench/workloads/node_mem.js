'use strict';
// Plimsoll bench workload for Node.js (plain JS, no dependencies).
//
// Usage: node [v8 flags] node_mem.js NAME key=value ...
// Every behaviour is a component switched on by its options; a workload is a mix of them.
//   base_mb=N                 retain N MB once at start (constant live set)
//   garbage_mb_s=R            short-lived garbage, R MB/s (dies young)
//   churn_mb_s=R churn_life_s=L   medium-lived objects (R MB/s, kept L s, then dropped):
//                             they get promoted, so old space saws up to the next major GC
//   leak_mb_min=R             retain R MB/min forever (leak_kind=heap|buffer, leak_start_s=S,
//                             leak_cap_mb=C: exit(0) once C MB have been leaked)
//   lru_cap=N lru_entry_kb=K lru_new_per_s=X lru_hit_per_s=Y   bounded Map LRU
//   step_at_s=S step_mb=M     load an M MB table once at S seconds, keep it
//   periodic_mb=M periodic_s=P   Map grows to M MB over P s, then is cleared (repeats)
//   spike_min_mb, spike_max_mb, spike_every_min_s, spike_every_max_s, spike_hold_min_s,
//   spike_hold_max_s          transient big allocations (heap arrays or Buffers), then dropped
//   replace_mb=M replace_every_s=S   keep one M MB table, rebuilt from scratch every S s
//                             (the previous copy becomes garbage in old space)
//   seed=N                    RNG seed
// Stats: if PLIMSOLL_BENCH_STATS is set, appends one JSON line per second with V8 heap used
// and heap used right after the last major GC.
const v8 = require('v8');
const fs = require('fs');
const { PerformanceObserver, constants } = require('perf_hooks');

const NAME = process.argv[2] || 'node';
const opts = {};
for (const a of process.argv.slice(3)) {
  const i = a.indexOf('=');
  if (i > 0) opts[a.slice(0, i)] = a.slice(i + 1);
}
const num = (k, d) => (k in opts ? Number(opts[k]) : d);
const str = (k, d) => (k in opts ? String(opts[k]) : d);
const MB = 1024 * 1024;
const KB = 1024;
const t0 = Date.now();
const elapsed = () => (Date.now() - t0) / 1000;

let seed = (num('seed', 0) || hashName(NAME)) >>> 0;
function hashName(s) { let h = 2166136261; for (const c of s) h = Math.imul(h ^ c.charCodeAt(0), 16777619); return h; }
function rand() { // mulberry32
  seed = (seed + 0x6D2B79F5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const uniform = (a, b) => a + (b - a) * rand();

// ---- payload builders (all memory written, so it is resident) ----
const CHUNK_DOUBLES = 8192; // 64 KB per chunk: small enough to stay a fast (non-dictionary) array
let counter = 0;
function doubles(n) {
  const a = new Array(n);
  const base = counter++;
  for (let i = 0; i < n; i++) a[i] = base + i * 0.5;
  return a;
}
function heapBlob(bytes) { // ~bytes of V8 heap: double arrays in 64 KB chunks
  let n = Math.max(1, Math.floor(bytes / 8));
  if (n <= CHUNK_DOUBLES) return doubles(n);
  const chunks = [];
  while (n > 0) { const k = Math.min(n, CHUNK_DOUBLES); chunks.push(doubles(k)); n -= k; }
  return chunks;
}
const ALPHA = 'abcdefghijklmnopqrstuvwxyz0123456789';
function heapString(bytes) { // flat one-byte string of ~bytes (made from a Buffer: no cons strings)
  const off = (counter++) % 36;
  return Buffer.alloc(Math.max(1, bytes), ALPHA[off]).toString('latin1');
}
function record(bytes) { // an object with a string part and a numeric part
  const s = Math.floor(bytes / 2);
  return { id: counter++, at: Date.now(), name: heapString(Math.min(s, 256 * KB)), data: heapBlob(bytes - Math.min(s, 256 * KB)) };
}
function offHeap(bytes) {
  const b = Buffer.allocUnsafe(bytes);
  b.fill(counter++ & 0xff);
  return b;
}

const keep = {}; // global roots

// ---- base ----
const baseMb = num('base_mb', 0);
if (baseMb > 0) {
  keep.base = [];
  for (let i = 0; i < baseMb * 4; i++) keep.base.push(record(256 * KB));
}

// ---- short-lived garbage ----
const garbageMbS = num('garbage_mb_s', 0);
if (garbageMbS > 0) {
  const per = garbageMbS * MB / 10; // every 100 ms
  let sink = 0;
  setInterval(() => {
    let left = per;
    while (left > 0) {
      const sz = Math.min(left, 4 * KB + Math.floor(rand() * 60 * KB));
      const r = rand() < 0.5 ? heapBlob(sz) : heapString(sz);
      sink += r.length;
      left -= sz;
    }
    keep.sink = sink;
  }, 100);
}

// ---- medium-lived churn (promoted, then dropped -> old-space sawtooth) ----
const churnMbS = num('churn_mb_s', 0);
if (churnMbS > 0) {
  const life = num('churn_life_s', 5) * 1000;
  const per = churnMbS * MB / 5; // every 200 ms
  const ring = [];
  keep.churn = ring;
  setInterval(() => {
    const now = Date.now();
    let left = per;
    while (left > 0) {
      const sz = Math.min(left, 16 * KB + Math.floor(rand() * 112 * KB));
      ring.push(record(sz));
      left -= sz;
    }
    while (ring.length && now - ring[0].at > life) ring.shift();
  }, 200);
}

// ---- leak ----
const leakMbMin = num('leak_mb_min', 0);
if (leakMbMin > 0) {
  const kind = str('leak_kind', 'heap');
  const start = num('leak_start_s', 0);
  const cap = num('leak_cap_mb', 0) * MB;
  const perSec = leakMbMin * MB / 60;
  const leaked = [];
  keep.leaked = leaked;
  let total = 0;
  let debt = 0;
  const tick = perSec >= 512 * KB ? 200 : 1000;
  setInterval(() => {
    if (elapsed() < start) return;
    debt += perSec * tick / 1000;
    while (debt >= 1) {
      const sz = Math.max(256, Math.min(debt, kind === 'buffer' ? 64 * KB : 48 * KB));
      if (kind === 'buffer') leaked.push(offHeap(Math.floor(sz)));
      else leaked.push(record(Math.floor(sz)));
      debt -= sz; total += sz;
    }
    if (cap > 0 && total >= cap) process.exit(0);
  }, tick);
}

// ---- LRU cache (bounded by entries) ----
const lruCap = num('lru_cap', 0);
if (lruCap > 0) {
  const entry = num('lru_entry_kb', 10) * KB;
  const newPerS = num('lru_new_per_s', 30);
  const hitPerS = num('lru_hit_per_s', 10);
  const lru = new Map();
  keep.lru = lru;
  let nextKey = 0, hits = 0, misses = 0;
  function get(key) {
    const v = lru.get(key);
    if (v !== undefined) { lru.delete(key); lru.set(key, v); hits++; return v; }
    misses++;
    const val = record(entry);
    lru.set(key, val);
    if (lru.size > lruCap) lru.delete(lru.keys().next().value);
    return val;
  }
  let nd = 0, hd = 0;
  setInterval(() => {
    nd += newPerS / 10; hd += hitPerS / 10;
    while (nd >= 1) { get('k' + (nextKey++)); nd--; }
    while (hd >= 1) { if (nextKey > 0) get('k' + Math.max(0, nextKey - 1 - Math.floor(rand() * Math.min(nextKey, lruCap / 2)))); hd--; }
  }, 100);
}

// ---- one-time step ----
const stepMb = num('step_mb', 0);
if (stepMb > 0) {
  const at = num('step_at_s', 120) * 1000;
  setTimeout(() => {
    const table = [];
    keep.table = table;
    const rows = stepMb * 4; // 256 KB rows
    const load = setInterval(() => { // ~25 MB per 200 ms burst
      for (let i = 0; i < 100 && table.length < rows; i++) table.push(record(256 * KB));
      if (table.length >= rows) clearInterval(load);
    }, 200);
  }, at);
}

// ---- periodic clear ----
const periodicMb = num('periodic_mb', 0);
if (periodicMb > 0) {
  const period = num('periodic_s', 180);
  const perTick = periodicMb * MB / period; // every second
  const m = new Map();
  keep.periodic = m;
  let k = 0, phaseStart = elapsed(), debt = 0;
  setInterval(() => {
    if (elapsed() - phaseStart >= period) { m.clear(); phaseStart = elapsed(); debt = 0; return; }
    debt += perTick;
    while (debt >= 1) { const sz = Math.min(debt, 32 * KB); m.set('p' + (k++), record(Math.floor(sz))); debt -= sz; }
  }, 1000);
}

// ---- live-but-replaced table (old copy becomes old-space garbage -> big heap/RSS sawtooth) ----
const replaceMb = num('replace_mb', 0);
if (replaceMb > 0) {
  const every = num('replace_every_s', 15) * 1000;
  let building = null;
  keep.current = null;
  setInterval(() => {
    if (building) return;
    building = [];
    let left = replaceMb * 4; // 256 KB rows
    const fill = setInterval(() => { // ~10 MB per 100 ms burst
      for (let i = 0; i < 40 && left > 0; i++, left--) building.push(record(256 * KB));
      if (left <= 0) { clearInterval(fill); keep.current = building; building = null; }
    }, 100);
  }, every);
}

// ---- transient spikes ----
const spikeMax = num('spike_max_mb', 0);
if (spikeMax > 0) {
  const sMin = num('spike_min_mb', spikeMax / 2);
  const eMin = num('spike_every_min_s', 30), eMax = num('spike_every_max_s', 120);
  const hMin = num('spike_hold_min_s', 2), hMax = num('spike_hold_max_s', 8);
  function schedule() {
    setTimeout(() => {
      const mb = uniform(sMin, spikeMax);
      const heap = rand() < 0.5;
      const parts = [];
      keep.spike = parts;
      let left = Math.floor(mb * MB);
      const fill = setInterval(() => { // build it in ~20 MB bursts
        let burst = 20 * MB;
        while (left > 0 && burst > 0) {
          const sz = Math.min(left, 1 * MB);
          parts.push(heap ? heapBlob(sz) : offHeap(sz));
          left -= sz; burst -= sz;
        }
        if (left <= 0) {
          clearInterval(fill);
          setTimeout(() => { keep.spike = null; parts.length = 0; schedule(); }, uniform(hMin, hMax) * 1000);
        }
      }, 50);
    }, uniform(eMin, eMax) * 1000);
  }
  schedule();
}

// ---- stats ----
const statsPath = process.env.PLIMSOLL_BENCH_STATS;
if (statsPath) {
  let afterGc = null;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = e.detail ? e.detail.kind : e.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) afterGc = v8.getHeapStatistics().used_heap_size;
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  setInterval(() => {
    const h = v8.getHeapStatistics();
    const mu = process.memoryUsage();
    const line = JSON.stringify({
      t: elapsed(), heap_used: h.used_heap_size, heap_total: h.total_heap_size,
      heap_used_after_gc: afterGc, external: mu.external, array_buffers: mu.arrayBuffers,
    }) + '\n';
    try { fs.appendFileSync(statsPath, line); } catch (e) { /* ignore */ }
  }, 1000);
}

setInterval(() => {}, 1 << 30); // keep alive even with no components
process.on('SIGTERM', () => process.exit(0));
