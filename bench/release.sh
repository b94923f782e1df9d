#!/usr/bin/env bash
# The release binary (profile.release: LTO, stripped): its build time, size, and the start-up
# time and peak RSS of `plimsoll --version`, against `true` (what starting any process costs
# here) and `node --version` measured in the same run, with ratios.
# Usage: bench/release.sh [RUNS]   (default 200 starts of each)
#   BASELINE_BINARY=PATH adds a column: another build of plimsoll (e.g. one without LTO, built
#   with the variables below) measured in the same run, with the ratios against it.
# Other settings through cargo's variables, in their own target dir, e.g.
#   CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_TARGET_DIR=/tmp/cgu1 bench/release.sh
#   CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_STRIP=none CARGO_TARGET_DIR=/tmp/plain bench/release.sh
# The build time is that of this run: from scratch only in a fresh target dir.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-200}"
case "$runs" in '' | *[!0-9]*) echo "bench/release.sh: RUNS must be a number, not '$runs'" >&2; exit 2 ;; esac

started=$(date +%s%N)
cargo build --release --locked -p plimsoll
build_s=$(( ($(date +%s%N) - started) / 1000000000 ))
binary="${CARGO_TARGET_DIR:-target}/release/plimsoll"

# Mean wall time of one start, in microseconds, over $runs starts (the loop's own fork and exec
# are in every figure alike, so the ratios compare like with like).
per_start_us() {
  local t0 t1 i
  "$@" >/dev/null # warm the page cache
  t0=$(date +%s%N)
  for ((i = 0; i < runs; i++)); do "$@" >/dev/null; done
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / runs / 1000 ))
}
peak_kib() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

size=$(stat -c %s "$binary")
plimsoll_us=$(per_start_us "$binary" --version)
true_us=$(per_start_us /bin/true)
printf 'release binary: %s (%s bytes, %.1f MiB); build %s s; %s starts each\n\n' \
  "$binary" "$size" "$(awk -v s="$size" 'BEGIN { print s / 1048576 }')" "$build_s" "$runs"
baseline="${BASELINE_BINARY:-}"
if [ -n "$baseline" ]; then
  [ -x "$baseline" ] || { echo "bench/release.sh: BASELINE_BINARY '$baseline' is not executable" >&2; exit 2; }
  b_size=$(stat -c %s "$baseline")
  b_us=$(per_start_us "$baseline" --version)
  printf 'baseline: %s\n\n' "$baseline"
  printf '| figure | plimsoll --version | baseline | ratio | true | ratio |\n|---|---|---|---|---|---|\n'
  printf '| size | %s bytes | %s bytes | %s | | |\n' "$size" "$b_size" "$(ratio "$size" "$b_size")"
  printf '| start-up, mean | %s µs | %s µs | %s | %s µs | %s |\n' "$plimsoll_us" "$b_us" \
    "$(ratio "$plimsoll_us" "$b_us")" "$true_us" "$(ratio "$plimsoll_us" "$true_us")"
  if [ -x /usr/bin/time ]; then
    p=$(peak_kib "$binary" --version)
    b=$(peak_kib "$baseline" --version)
    t=$(peak_kib /bin/true)
    printf '| peak RSS | %s KiB | %s KiB | %s | %s KiB | %s |\n' "$p" "$b" "$(ratio "$p" "$b")" "$t" "$(ratio "$p" "$t")"
  fi
else
  printf '| figure | plimsoll --version | true | ratio |\n|---|---|---|---|\n'
  printf '| start-up, mean | %s µs | %s µs | %s |\n' "$plimsoll_us" "$true_us" "$(ratio "$plimsoll_us" "$true_us")"
  if [ -x /usr/bin/time ]; then
    p=$(peak_kib "$binary" --version)
    t=$(peak_kib /bin/true)
    printf '| peak RSS | %s KiB | %s KiB | %s |\n' "$p" "$t" "$(ratio "$p" "$t")"
  fi
fi
if command -v node >/dev/null 2>&1; then
  node_us=$(per_start_us node --version)
  printf '\nnode --version: %s µs mean; plimsoll/node %s\n' "$node_us" "$(ratio "$plimsoll_us" "$node_us")"
fi
