#!/usr/bin/env bash
# The cost of `plimsoll watch --containers` at node scale (README, "How the supervisor does"):
# N memory cgroups (default 500) laid out like Docker's (docker/<64-hex id>), each with a
# `sleep`, watched at 1 Hz for SECONDS (default 60) after discovery; the CPU (% of a core) and
# RSS of plimsoll, and its CPU per cgroup sample, against a plain C reader of the same files
# (bench/cgroup_reader.c) run beside it in the same window. Needs root and a v1 memory
# hierarchy, or a v2 one with the memory controller. Every cgroup and process it made is removed
# on exit, failure or Ctrl-C included. Usage: bench/cgroups.sh [N] [SECONDS] (PLIMSOLL=PATH: that binary)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-500}"
seconds="${2:-60}"

if [ "$(id -u)" != 0 ]; then
    echo "bench/cgroups.sh: needs root to make cgroups" >&2
    exit 2
fi
# The mount point of the v1 memory hierarchy, else of v2 (mountinfo: fields after " - " are
# the file system type, its source and its super options).
mount_of() {
    awk -v want="$1" '{
        for (i = 1; i <= NF; i++) if ($i == "-") { fs = $(i + 1); opts = $(i + 3) }
        if (want == "v1" && fs == "cgroup" && opts ~ /(^|,)memory(,|$)/) { print $5; exit }
        if (want == "v2" && fs == "cgroup2") { print $5; exit }
    }' /proc/self/mountinfo
}
version=v1
top="$(mount_of v1)"
if [ -z "$top" ]; then
    version=v2
    top="$(mount_of v2)"
    if [ -z "$top" ] || ! grep -qw memory "$top/cgroup.controllers"; then
        echo "bench/cgroups.sh: no v1 memory hierarchy and no v2 one with the memory controller" >&2
        exit 2
    fi
fi

# PLIMSOLL=PATH measures that binary instead of a fresh release build.
plimsoll="${PLIMSOLL:-}"
if [ -z "$plimsoll" ]; then
    cargo build --release -q -p plimsoll --bin plimsoll
    plimsoll="$PWD/target/release/plimsoll"
fi
work="$(mktemp -d)"
root="$top/plimsoll-bench-$$"
sleepers=()
watcher=""
reader=""
cleanup() {
    set +e # every step, whatever the one before did
    for pid in $watcher $reader "${sleepers[@]}"; do kill "$pid" 2>/dev/null; done
    wait 2>/dev/null
    if [ -d "$root" ]; then
        for dir in "$root"/docker/*/; do rmdir "$dir" 2>/dev/null || true; done
        rmdir "$root/docker" "$root" 2>/dev/null || echo "bench/cgroups.sh: could not remove $root" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gcc -O2 -o "$work/cgroup_reader" bench/cgroup_reader.c
mkdir -p "$root/docker"
if [ "$version" = v2 ]; then
    echo +memory >"$root/cgroup.subtree_control"
    echo +memory >"$root/docker/cgroup.subtree_control"
fi
echo "making $n $version memory cgroups under $root, each with a sleep..."
: >"$work/dirs"
for i in $(seq 1 "$n"); do
    dir="$root/docker/$(printf '%064x' "$i")"
    mkdir "$dir"
    sleep 100000 >/dev/null 2>&1 &
    sleepers+=("$!")
    echo "$!" >"$dir/cgroup.procs"
    echo "$dir" >>"$work/dirs"
done

"$plimsoll" watch --containers --cgroup-root "$root" --interval 1s --listen 127.0.0.1:0 \
    --data-dir "$work/data" 2>"$work/plimsoll.log" &
watcher=$!
for _ in $(seq 1 300); do
    addr="$(cat "$work/data/run/http.addr" 2>/dev/null || true)"
    watched="$( [ -n "$addr" ] && curl -sf "http://$addr/metrics" | awk '$1 == "plimsoll_targets" { print $2 }' || true)"
    [ "${watched:-0}" -ge "$n" ] && break
    sleep 0.1
done
if [ "${watched:-0}" -lt "$n" ]; then
    echo "bench/cgroups.sh: plimsoll watches ${watched:-0} of $n cgroups after 30 s" >&2
    tail -5 "$work/plimsoll.log" >&2
    exit 1
fi
sleep 3 # past the first samples and the store's first commits

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
"$work/cgroup_reader" "$version" "$((seconds + 30))" "$work/dirs" >/dev/null &
reader=$!
store0=$(du -sk "$work/data" | cut -f1)
start_ns=$(date +%s%N)
p0=$(ticks "$watcher")
r0=$(ticks "$reader")
echo "measuring for $seconds s..."
sleep "$seconds"
p1=$(ticks "$watcher")
r1=$(ticks "$reader")
elapsed_ns=$(( $(date +%s%N) - start_ns ))
p_rss=$(kib "$watcher" VmRSS)
p_hwm=$(kib "$watcher" VmHWM)
r_rss=$(kib "$reader" VmRSS)
watched_end="$(curl -sf "http://$addr/metrics" | awk '$1 == "plimsoll_targets" { print $2 }')"
hz=$(getconf CLK_TCK)
store1=$(du -sk "$work/data" | cut -f1)

awk -v n="$n" -v s="$elapsed_ns" -v hz="$hz" -v p="$((p1 - p0))" -v r="$((r1 - r0))" \
    -v prss="$p_rss" -v phwm="$p_hwm" -v rrss="$r_rss" -v v="$version" -v w="$watched_end" \
    -v store="$((store1 - store0))" 'BEGIN {
    secs = s / 1e9; samples = n * secs
    pcpu = p / hz / secs * 100; rcpu = r / hz / secs * 100
    printf "\n%d %s cgroups at 1 Hz for %.0f s (plimsoll watching %d)\n\n", n, v, secs, w
    printf "| reader | CPU, %% of a core | RSS | CPU per cgroup sample | ratio |\n|---|---|---|---|---|\n"
    printf "| plimsoll watch --containers | %.2f %% | %.1f MiB (peak %.1f) | %.1f µs | %.1f× |\n", pcpu, prss / 1024, phwm / 1024, p / hz / samples * 1e6, (r > 0 ? p / r : 0)
    printf "| plain C reader of the same files | %.2f %% | %.1f MiB | %.1f µs | 1× |\n", rcpu, rrss / 1024, r / hz / samples * 1e6
    printf "\nthe store (SQLite, samples of every target every second) grew %.1f MiB in %.0f s\n", store / 1024, secs
    printf "\nbars: ≤ 5 %% of a core: %s; ≤ 64 MiB RSS: %s\n", (pcpu <= 5 ? "met" : "MISSED"), (prss / 1024 <= 64 ? "met" : "MISSED")
}'
