#!/usr/bin/env bash
# The demo: builds plimsoll, gives verdicts on two recorded traces (a leak and a healthy cache
# warm-up), breaks down the memory of a live process, then supervises a leaking Python service
# under a 64 MiB budget: it is restarted gracefully at each breach until the crash-loop limit;
# and the same for a Rust service guarded in-process by plimsoll-guard (its own /health,
# /metrics, admission gate and caches), which takes its budget from plimsoll run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh demo

cargo build --release --locked -p plimsoll
cargo build --release --locked -p plimsoll-guard --example guarded_service
plimsoll=target/release/plimsoll
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  say() { printf '\n== %s\n' "$*"; }
fi

say "plimsoll analyze: a Node service leaking 2 MB/min under GC noise and big transient spikes"
"$plimsoll" analyze --budget 512MiB bench/traces/node-noisy-leak.csv || true

say "plimsoll analyze: an LRU cache warming up to 120 MB, then steady (healthy)"
"$plimsoll" analyze bench/traces/node-lru-warmup.csv || true

say "plimsoll check: the memory of this shell's process tree"
"$plimsoll" check $$

say "plimsoll run: a Python service leaking 4 MB/s, budget 64 MiB, at most 2 restarts a minute"
data_dir=$(mktemp -d)
trap 'rm -rf "$data_dir"' EXIT
status=0
"$plimsoll" run --budget 64MiB --interval 500ms --max-restarts 2 --grace 2s \
  --data-dir "$data_dir" --name leaky-api --events - --listen 127.0.0.1:0 \
  -- python3 bench/workloads/py_mem.py leaky-api base_mb=10 churn_kb_s=200 leak_mb_min=240 \
  || status=$?
echo "plimsoll run ended with the service's own exit status: $status"

say "plimsoll run + plimsoll-guard: a Rust service leaking 8 MiB/s, budget 96 MiB, 1 restart"
status=0
"$plimsoll" run --budget 96MiB --interval 500ms --max-restarts 1 --grace 2s \
  --data-dir "$data_dir" --name guarded --events - --listen off \
  -- target/release/examples/guarded_service --listen 127.0.0.1:0 --leak-kib-per-s 8192 \
  || status=$?
echo "plimsoll run ended with the service's own exit status: $status"
