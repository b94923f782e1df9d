#!/usr/bin/env bash
# Measures the Node.js agent's overhead against the bar in bench/README.md ("Node agent
# overhead"): the same small Node HTTP server under two `plimsoll run`s side by side, one with the
# agent and one with --no-agent, driven in turn by a closed-loop keep-alive load generator over
# loopback. About 2.5 minutes with the defaults; extra arguments go to bench_agent (e.g.
# --seconds 30, --rounds 5, --connections 64, --keep; --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1; then
    echo "node not found: the agent benchmark needs Node.js" >&2
    exit 2
fi

cargo build --release -p plimsoll -p plimsoll-bench --bin plimsoll --bin bench_agent

exec ./target/release/bench_agent "$@"
