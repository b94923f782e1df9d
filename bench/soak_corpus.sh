#!/usr/bin/env bash
# Runs `plimsoll soak` for real on every workload of the recorded corpus (bench/corpus.json:
# the same commands the traces were recorded from), all in parallel and niced, Node ones with
# the agent and forced GCs (the soak's defaults), and prints one table: workload, label, exit
# code, verdict, reason, suspects named, when the steady state first looked like a leak.
# The bar: every leak exits 1, every healthy workload exits 0, suspects named for every Node leak.
#
#   bench/soak_corpus.sh                              # ~11 min: 10m soaks after a 1m warm-up
#   bench/soak_corpus.sh --only c-leak --only py-slow-leak
#   PLIMSOLL=target/debug/plimsoll bench/soak_corpus.sh   # a binary already built (else: release build)
#   bench/soak_corpus.sh --duration 90s --warmup 10s --time-scale 0.1   # smoke run of the script
#   bench/soak_corpus.sh --record bench/soak_traces/run6   # also keep what each detector was fed
#
# Everything it writes goes to bench/out/soak/ (git-ignored): per workload the verdict JSON,
# stderr, and the data dir (samples, heap snapshots), which is deleted at the end unless --keep.
# --record DIR writes, per workload, DIR/<name>.csv from its store: the seconds since the soak
# started, RSS, and the heap right after each forced GC (on the sample that first carried it,
# empty elsewhere), which is what the soak's detector was fed; `score_corpus --soak 10m
# --traces DIR --forced-gc` replays them (bench/README.md, "Recorded soaks").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

duration=10m
warmup=1m
extra=()
only=()
keep=0
record=
while [ $# -gt 0 ]; do
    case "$1" in
        --duration|--warmup|--time-scale|--only|--record)
            [ $# -ge 2 ] || { echo "soak_corpus.sh: $1 needs a value (see --help)" >&2; exit 2; } ;;
    esac
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --time-scale) extra+=(--time-scale "$2"); shift 2 ;;
        --only) only+=("$2"); shift 2 ;;
        --keep) keep=1; shift ;;
        --record) record="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "soak_corpus.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

# Where the recordings go is checked before ten minutes of soaks, not after.
if [ -n "$record" ]; then
    mkdir -p "$record" && [ -w "$record" ] || { echo "soak_corpus.sh: cannot write to --record '$record'" >&2; exit 2; }
fi

for tool in python3 node gcc; do
    command -v "$tool" >/dev/null 2>&1 || { echo "soak_corpus.sh: $tool not found" >&2; exit 2; }
done

if [ -z "${PLIMSOLL:-}" ]; then
    cargo build --release -p plimsoll --bin plimsoll
    PLIMSOLL="$root/target/release/plimsoll"
fi
PLIMSOLL=$(cd "$(dirname "$PLIMSOLL")" && pwd)/$(basename "$PLIMSOLL")
[ -x "$PLIMSOLL" ] || { echo "soak_corpus.sh: no plimsoll binary at '$PLIMSOLL'" >&2; exit 2; }

out="$root/bench/out/soak"
rm -rf "$out"
mkdir -p "$out"
gcc -O2 -Wall -o "$root/bench/out/c_mem" "$root/bench/workloads/c_mem.c"

# One line per workload: name, label, then the command (tab-separated, {bench}/{out} filled in).
python3 - "$root/bench/corpus.json" "${only[@]}" >"$out/plan.tsv" <<'PY'
import json, os, sys
manifest, only = sys.argv[1], set(sys.argv[2:])
bench = os.path.dirname(os.path.abspath(manifest))
known = set()
for entry in json.load(open(manifest)):
    known.add(entry["name"])
    if only and entry["name"] not in only:
        continue
    command = [a.replace("{bench}", bench).replace("{out}", os.path.join(bench, "out"))
               for a in entry["command"]]
    print("\t".join([entry["name"], entry["label"]] + command))
missing = only - known
if missing:
    sys.exit("soak_corpus.sh: no workload named %s in %s" % (", ".join(sorted(missing)), manifest))
PY

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup INT TERM

echo "soak --duration $duration --warmup $warmup ${extra[*]:-} on $(wc -l <"$out/plan.tsv") workloads in parallel ($(date -u +%H:%M:%S) UTC)"
while IFS=$'\t' read -r -a fields; do
    name="${fields[0]}"
    command=("${fields[@]:2}")
    (
        set +e
        nice -n 10 "$PLIMSOLL" soak --duration "$duration" --warmup "$warmup" "${extra[@]}" \
            --json --name "$name" --data-dir "$out/$name.data" -- "${command[@]}" \
            >"$out/$name.json" 2>"$out/$name.stderr" </dev/null
        echo $? >"$out/$name.exit"
    ) &
    pids+=("$!")
done <"$out/plan.tsv"
wait "${pids[@]}" || true
trap - INT TERM

status=0
python3 - "$out" <<'PY' || status=$?
import json, os, sys
out = sys.argv[1]
rows, bad = [], []
for line in open(os.path.join(out, "plan.tsv")):
    name, label = line.split("\t")[:2]
    code = open(os.path.join(out, name + ".exit")).read().strip()
    try:
        verdict = json.load(open(os.path.join(out, name + ".json")))
    except (OSError, ValueError):
        verdict = {}
    node = "node" in line.split("\t")[2]
    suspects = verdict.get("suspects") or []
    if suspects:
        top = suspects[0]
        named = "%s (+%s objects, %.1f MB)" % (top.get("constructor"), top.get("count_growth"),
                                                (top.get("bytes_growth") or 0) / 1e6)
    elif node and label == "leak":
        named = "none: " + (verdict.get("suspects_missing") or "not named")
    else:
        named = "-"
    seen = verdict.get("leak_seen_after_s")
    gc = verdict.get("forced_gc") or {}
    pauses = gc.get("pause_ms") or {}
    pause = ("%.0f/%.0f ms" % (pauses["median"], pauses["max"]) if pauses else "-")
    reason = verdict.get("reason") or open(os.path.join(out, name + ".stderr")).read().strip()[-120:]
    rows.append([name, label, code, verdict.get("verdict", "?"),
                 "%.0f s" % seen if seen is not None else "-", named, pause, reason])
    want = "1" if label == "leak" else "0"
    if code != want or (node and label == "leak" and not suspects):
        bad.append(name)
head = ["workload", "label", "exit", "verdict", "leak seen", "suspects named", "GC pause med/max", "reason"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for row in rows:
    print("| " + " | ".join(str(c) for c in row) + " |")
leaks = [r for r in rows if r[1] == "leak"]
healthy = [r for r in rows if r[1] == "no-leak"]
print("\nleaks exit 1: %d/%d   healthy exit 0: %d/%d   Node leaks named: %d/%d" % (
    sum(r[2] == "1" for r in leaks), len(leaks),
    sum(r[2] == "0" for r in healthy), len(healthy),
    sum(not r[5].startswith("none") for r in leaks if r[5] != "-"),
    sum(r[5] != "-" for r in leaks)))
if bad:
    print("missed the bar: " + ", ".join(bad))
sys.exit(1 if bad else 0)
PY
if [ -n "$record" ]; then
    mkdir -p "$record"
    python3 - "$out" "$record" <<'PY'
import os, sqlite3, sys
out, record = sys.argv[1], sys.argv[2]
for line in open(os.path.join(out, "plan.tsv")):
    name = line.split("\t")[0]
    db = os.path.join(out, name + ".data", "plimsoll.db")
    if not os.path.exists(db):
        print("soak_corpus.sh: no store for %s, not recorded" % name, file=sys.stderr)
        continue
    conn = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    start = conn.execute("SELECT MIN(t_unix_ms) FROM events WHERE kind = 'started'").fetchone()[0]
    rows = conn.execute(
        "SELECT t_unix_ms, rss_bytes, heap_used_after_gc_bytes FROM samples ORDER BY t_unix_ms").fetchall()
    if start is None and rows:
        start = rows[0][0]
    with open(os.path.join(record, name + ".csv"), "w") as f:
        f.write("t_s,rss_bytes,pss_bytes,heap_used_bytes,heap_used_after_gc_bytes\n")
        # A new forced-GC reading is a new value; one equal to the last (an exact heap that did
        # not move by a byte) is taken once 20 s have passed since the last one (the forced GCs
        # come every 15 s ± 30 %).
        previous, previous_t = None, None
        for t, rss, heap in rows:
            due = previous_t is None or t - previous_t >= 20000
            fresh = heap if heap is not None and (heap != previous or due) else None
            if fresh is not None:
                previous, previous_t = heap, t
            f.write("%.3f,%d,,,%s\n" % ((t - start) / 1000.0, rss, "" if fresh is None else fresh))
    print("recorded %s (%d samples)" % (os.path.join(record, name + ".csv"), len(rows)))
PY
fi
if [ "$keep" -eq 0 ]; then
    rm -rf "$out"/*.data
fi
exit "$status"
