#!/usr/bin/env bash
# Measures plimsoll-guard's BoundedCache against a bare moka::sync::Cache with the same weigher,
# capacity, TTL, keys and values, in the same run (rounds interleaved), against the bar "at most
# 10 % more time per get and insert". About 2 minutes with the defaults; extra arguments go to
# the bench_cache example (--rounds N, --ops N per case and round).
set -euo pipefail
cd "$(dirname "$0")/.."

# `cargo run` rather than ./target/release/...: it honours CARGO_TARGET_DIR.
exec cargo run --release -p plimsoll-guard --example bench_cache -- "$@"
