#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration, the small synthetic suite), with every
# feature on (plimsoll-guard's jemalloc, pprof and redis tests need them).
set -euo pipefail
cd "$(dirname "$0")/.."
# What the tests need (Node.js, Chromium, Prometheus's promtool, redis-server, make, nextest):
# installed when missing, or named with the command to run (exit 2) when it cannot be.
scripts/deps.sh test
cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
cargo test --workspace --all-features --locked --doc
