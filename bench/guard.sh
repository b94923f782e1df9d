#!/usr/bin/env bash
# The bars of plimsoll-guard, each against a baseline measured in the same run:
#  1. BoundedCache against a bare moka::sync::Cache with the same weigher, capacity, TTL, keys
#     and values (rounds interleaved): at most 10 % more time per get and insert. About 2
#     minutes; CACHE_ARGS go to the bench_cache example (--rounds N, --ops N).
#  2. The monitor at 1 Hz against the same process idle: at most 0.1 % of a core. Two windows
#     of MONITOR_WINDOW seconds (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== bounded cache vs bare moka =="
# `cargo run` rather than ./target/release/...: it honours CARGO_TARGET_DIR.
# shellcheck disable=SC2086
cargo run -q --release -p plimsoll-guard --example bench_cache -- ${CACHE_ARGS:-}
echo
echo "== monitor cost at 1 Hz =="
cargo run -q --release -p plimsoll-guard --example bench_monitor -- "${MONITOR_WINDOW:-30}"
