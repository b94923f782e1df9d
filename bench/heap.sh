#!/usr/bin/env bash
# Benchmarks `plimsoll heap summary` against memlab on one generated snapshot (default
# 350 MB; first argument: size in MB), and the parser against raw page-cache reads.
# Everything it makes goes to bench/out/ (git-ignored): the snapshot, and memlab installed
# from the npm registry into bench/out/memlab.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mb="${1:-350}"
out=bench/out/heap
snapshot="$out/big-${size_mb}.heapsnapshot"
mkdir -p "$out"

cargo build --release -p plimsoll -p plimsoll-bench --bin plimsoll --bin bench_heap

if [ ! -s "$snapshot" ]; then
    echo "== writing a ~${size_mb} MB snapshot with node =="
    node --max-old-space-size=16000 - "$size_mb" "$snapshot" <<'JS'
// Writes a heap snapshot of roughly the requested size (MB, first argument) to the path in
// the second argument: a heap of many small linked objects, strings, arrays and closures.
const v8 = require('v8');
const targetMb = Number(process.argv[2] || 300);
const out = process.argv[3] || 'big.heapsnapshot';
// About 110 bytes of snapshot per retained item below (measured); items are held in chunks.
const items = Math.ceil(targetMb * 1e6 / 110 / 4);
const keep = [];
class Order { constructor(i, prev) { this.id = i; this.prev = prev; this.tags = ['t' + (i % 1000)]; this.note = 'order-' + i; } }
let prev = null;
for (let i = 0; i < items; i++) {
  prev = new Order(i, i % 64 === 0 ? null : prev);
  keep.push(prev);
  if (i % 8 === 0) keep.push(() => prev.id);
}
// Reading `keep` after the loop keeps it alive until the snapshot is written.
console.error(`items ${keep.length}`);
v8.writeHeapSnapshot(out);
console.log(out);
JS
fi

memlab=bench/out/memlab/node_modules/memlab/bin/memlab
if [ ! -e "$memlab" ]; then
    echo "== installing memlab into bench/out/memlab =="
    PUPPETEER_SKIP_DOWNLOAD=1 npm install --silent --prefix bench/out/memlab memlab
fi

echo "== heap summary: plimsoll vs memlab (bench_heap) =="
./target/release/bench_heap --file "$snapshot" --memlab "$memlab"
