#!/usr/bin/env bash
# Runs the benchmarks in release; each prints a table with ratios against a baseline measured
# in the same run. Extra arguments go to bench_analyze (e.g. --samples 2000000).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p plimsoll -p plimsoll-bench --bin bench_analyze --bin bench_cli --bin plimsoll
echo "== detector throughput and memory (bench_analyze) =="
./target/release/bench_analyze "$@"
echo
echo "== the binary end to end (bench_cli) =="
./target/release/bench_cli
echo
echo "== HTTP: /health and /metrics with 100 targets (bench_http) =="
cargo build --release -p plimsoll-bench --bin bench_http
./target/release/bench_http
