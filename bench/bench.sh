#!/usr/bin/env bash
# Runs the benchmarks in release; each prints a table with ratios against a baseline measured
# in the same run. Extra arguments go to bench_analyze (e.g. --samples 2000000).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p plimsoll-bench --bin bench_analyze
echo "== detector throughput and memory (bench_analyze) =="
./target/release/bench_analyze "$@"
