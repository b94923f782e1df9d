#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration, the small synthetic suite), with every
# feature on (plimsoll-guard's jemalloc, pprof and redis tests need them).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --workspace --all-features --locked --no-fail-fast "$@"
cargo test --workspace --all-features --locked --doc
