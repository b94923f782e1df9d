#!/usr/bin/env bash
# Measures what the Node.js side of Plimsoll costs a hot Node HTTP server, each time against a
# reference measured in the same run (bench/README.md, "Node agent overhead"): first the agent
# (`plimsoll run` with the agent and with --no-agent, side by side), then the soak's forced GCs
# (`plimsoll soak` forcing a full GC every 15 s and with --no-forced-gc: throughput ratio and
# pause per GC). A closed-loop keep-alive load generator over loopback drives one server at a
# time. About 5 minutes with the defaults; extra arguments go to both runs of bench_agent (e.g.
# --seconds 30, --rounds 5, --connections 64, --keep; --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1; then
    echo "node not found: the agent benchmark needs Node.js" >&2
    exit 2
fi

cargo build --release -p plimsoll -p plimsoll-bench --bin plimsoll --bin bench_agent

./target/release/bench_agent --compare agent "$@"
echo
exec ./target/release/bench_agent --compare forced-gc "$@"
