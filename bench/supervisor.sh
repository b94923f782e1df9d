#!/usr/bin/env bash
# Measures supervision against the bars in bench/README.md ("Supervisor benchmarks"): the cost of
# `plimsoll run` supervising one process at 1 Hz, `plimsoll watch` of 1,000 processes, and budget
# restarts side by side with PM2 (installed from npm into bench/out/pm2 when missing). Each table
# has a baseline measured in the same run. About 4 minutes with the defaults; extra arguments go
# to bench_supervisor (e.g. --seconds 60, --restarts 5, --no-pm2, --keep; --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p plimsoll -p plimsoll-bench --bin plimsoll --bin bench_supervisor

pm2=bench/out/pm2/node_modules/.bin/pm2
if [ ! -x "$pm2" ]; then
    if command -v npm >/dev/null 2>&1; then
        echo "installing PM2 into bench/out/pm2 (npm install --prefix bench/out/pm2 pm2@latest)..."
        mkdir -p bench/out/pm2
        npm install --prefix bench/out/pm2 --no-audit --no-fund pm2@latest >bench/out/pm2-install.log 2>&1 \
            || echo "PM2 could not be installed (see bench/out/pm2-install.log); measuring Plimsoll alone"
    else
        echo "npm not found: measuring Plimsoll alone"
    fi
fi

exec ./target/release/bench_supervisor --pm2 "$pm2" "$@"
