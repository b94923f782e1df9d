#!/usr/bin/env bash
# Scores the leak detector and the baseline rules: on the recorded corpus (bench/corpus.json,
# bench/traces/; also its 15-minute prefixes and its replay as a 10-minute soak) and on the
# synthetic suite (also replayed as 10-minute soaks, and the minimum soak per growth rate).
# Extra arguments go to score_synthetic
# (e.g. --seeds 20). Exits non-zero when either scorer does (score_synthetic: 1 = bar missed).
set -uo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p plimsoll-bench --bin score_corpus --bin score_synthetic || exit 2

status=0
echo "== recorded corpus =="
./target/release/score_corpus || status=$?
echo
echo "== recorded corpus, 15-minute prefixes (honest no-leak), rss + heap after GC =="
./target/release/score_corpus --prefix 15m --signal heap || status=$?
echo
echo "== recorded corpus replayed as soak --duration 10m --warmup 1m, rss + heap after GC =="
./target/release/score_corpus --soak 10m --warmup 1m --signal heap || status=$?
echo
echo "== synthetic suite replayed as soak --duration 10m --warmup 1m =="
./target/release/score_synthetic --soak 600 --warmup 60 || status=$?
echo
echo "== minimum soak per growth rate and trough noise (ARCHITECTURE.md's table) =="
./target/release/score_synthetic --min-soak || status=$?
echo
echo "== synthetic suite =="
./target/release/score_synthetic "$@" || { code=$?; [ "$status" -eq 0 ] && status=$code; }
exit "$status"
