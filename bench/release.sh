#!/usr/bin/env bash
# The shipped binary (profile.dist: LTO, stripped): its build time, size, and the start-up
# time and peak RSS of `plimsoll --version`, against `true` (what starting any process costs
# here) and `node --version` measured in the same run, with ratios.
# Usage: bench/release.sh [RUNS]   (default 200 starts of each)
#   BASELINE_BINARY=PATH adds a column: another build of plimsoll (e.g. target/release/plimsoll,
#   the profile without LTO) measured in the same run, with the ratios against it.
# Other settings through cargo's variables, in their own target dir, e.g.
#   CARGO_PROFILE_DIST_CODEGEN_UNITS=1 CARGO_TARGET_DIR=/tmp/cgu1 bench/release.sh
# The build time is that of this run: from scratch only in a fresh target dir.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-200}"
case "$runs" in '' | *[!0-9]*) echo "bench/release.sh: RUNS must be a number, not '$runs'" >&2; exit 2 ;; esac

started=$(date +%s%N)
cargo build --profile dist --locked -p plimsoll
build_s=$(( ($(date +%s%N) - started) / 1000000000 ))
binary="${CARGO_TARGET_DIR:-target}/dist/plimsoll"

# Mean wall time of one start of each command, in microseconds, over $runs rounds; each round
# starts every command once, in turn, so that a load that comes and goes on a shared machine
# weighs on all of them alike. Timed with bash's own $EPOCHREALTIME (no process for the clock).
# Commands are given as strings split on spaces.
mean_starts_us() {
  local -a totals=() cmd
  local i j t0
  for ((j = 1; j <= $#; j++)); do read -ra cmd <<<"${!j}"; "${cmd[@]}" >/dev/null; totals[j]=0; done
  for ((i = 0; i < runs; i++)); do
    for ((j = 1; j <= $#; j++)); do
      read -ra cmd <<<"${!j}"
      t0=${EPOCHREALTIME/./}
      "${cmd[@]}" >/dev/null
      totals[j]=$((totals[j] + ${EPOCHREALTIME/./} - t0))
    done
  done
  for ((j = 1; j <= $#; j++)); do printf '%s ' $((totals[j] / runs)); done
}
peak_kib() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

size=$(stat -c %s "$binary")
baseline="${BASELINE_BINARY:-}"
if [ -n "$baseline" ] && [ ! -x "$baseline" ]; then
  echo "bench/release.sh: BASELINE_BINARY '$baseline' is not executable" >&2
  exit 2
fi
node_cmd=()
command -v node >/dev/null 2>&1 && node_cmd=("node --version")
read -r plimsoll_us true_us b_us node_us <<<"$(mean_starts_us "$binary --version" /bin/true \
  ${baseline:+"$baseline --version"} "${node_cmd[@]}")"
if [ -z "$baseline" ]; then node_us="$b_us"; fi
printf 'release binary: %s (%s bytes, %.1f MiB); build %s s; %s rounds\n\n' \
  "$binary" "$size" "$(awk -v s="$size" 'BEGIN { print s / 1048576 }')" "$build_s" "$runs"
if [ -n "$baseline" ]; then
  b_size=$(stat -c %s "$baseline")
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
if [ -n "${node_us:-}" ]; then
  printf '\nnode --version: %s µs mean; plimsoll/node %s\n' "$node_us" "$(ratio "$plimsoll_us" "$node_us")"
fi
