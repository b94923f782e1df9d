#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration, the small synthetic suite).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --workspace --locked --no-fail-fast "$@"
cargo test --workspace --locked --doc
