#!/usr/bin/env bash
# Fuzzes every target in fuzz/ for SECONDS each (default 60), one after the other on one core,
# then prints a table: target, executions, crashes. Exits 1 when a target crashed or hung (the
# input is in fuzz/artifacts/<target>/; fix it and keep it under fuzz/regressions/<target>/).
# Needs the nightly toolchain and cargo-fuzz (`cargo install --locked cargo-fuzz`).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]; FUZZ_RUNS=N also stops each after N executions;
# FUZZ_SANITIZER=none builds without AddressSanitizer (much faster to build: our crates deny
# unsafe code, so coverage-guided search and Rust's own checks find what matters).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-60}"
[ $# -gt 0 ] && shift
sanitizer=(--sanitizer "${FUZZ_SANITIZER:-address}")
cargo +nightly fuzz build "${sanitizer[@]}"
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi

# New inputs go to a scratch corpus under target/; the committed seeds in corpus/ stay as they are.
mkdir -p target/fuzz-logs
rows=()
failed=0
for target in "${targets[@]}"; do
  mkdir -p "target/fuzz-corpus/$target" "artifacts/$target"
  log="target/fuzz-logs/$target.log"
  stamp="target/fuzz-logs/$target.start"
  touch "$stamp"
  limits=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)
  [ -n "${FUZZ_RUNS:-}" ] && limits+=(-runs="$FUZZ_RUNS")
  start=$SECONDS
  cargo +nightly fuzz run "${sanitizer[@]}" "$target" "target/fuzz-corpus/$target" "corpus/$target" -- \
    "${limits[@]}" >"$log" 2>&1 || true
  executions=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  crashes=$(find "artifacts/$target" -type f -newer "$stamp" | wc -l)
  rows+=("$(printf '%-14s %12s %8s %6ss' "$target" "$executions" "$crashes" "$((SECONDS - start))")")
  if [ "$crashes" -gt 0 ] || [ "$executions" = "?" ]; then
    failed=1
    echo "fuzz: $target failed, the end of $PWD/$log:" >&2
    tail -n 30 "$log" >&2
  fi
done

printf '%-14s %12s %8s %7s\n' target executions crashes time
printf '%s\n' "${rows[@]}"
exit "$failed"
