#!/usr/bin/env bash
# Measures `plimsoll serve` under ingest abuse (bench/README.md, "Ingest"): its RSS idle (the
# baseline, measured in the same run), with 10,000 live browser instances of one target (each
# with SAMPLES samples through its own leak detector), after 10 MB bodies, invalid JSON and
# instances over the cap; and what /metrics, /health and /api/v1/targets cost then. Loopback
# only, bounded in requests and time (about a minute). Usage: bench/ingest.sh [INSTANCES]
# [SAMPLES]; PLIMSOLL_BIN=path skips the release build.
set -euo pipefail
if [ -n "${PLIMSOLL_BIN:-}" ]; then PLIMSOLL_BIN="$(realpath "$PLIMSOLL_BIN")"; fi
cd "$(dirname "$0")/.."

instances="${1:-10000}"
samples="${2:-100}"
if [ -z "${PLIMSOLL_BIN:-}" ]; then
    cargo build --release -p plimsoll --bin plimsoll
    PLIMSOLL_BIN=target/release/plimsoll
fi
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
echo "bench-token" >"$work/token"
"$PLIMSOLL_BIN" serve --listen 127.0.0.1:0 --data-dir "$work/data" --ingest-token-file "$work/token" \
    --max-instances "$instances" --time-scale 0.01 2>"$work/serve.log" &
pid=$!
for _ in $(seq 100); do [ -s "$work/data/run/http.addr" ] && break; sleep 0.1; done
addr="$(cat "$work/data/run/http.addr")"

python3 - "$addr" "$pid" "$instances" "$samples" <<'EOF'
import http.client, json, sys, threading, time

addr, pid, instances, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
host, port = addr.rsplit(":", 1)
headers = {"Authorization": "Bearer bench-token", "Content-Type": "application/json"}

def rss_mib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")

def post_all(bodies, threads=4):
    """POSTs every body over keep-alive connections; counts answers by status."""
    counts, lock = {}, threading.Lock()
    def work(part):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        for body in part:
            try:
                conn.request("POST", "/api/v1/ingest", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
            except (ConnectionError, http.client.HTTPException):
                status = "closed"
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
            with lock:
                counts[status] = counts.get(status, 0) + 1
    parts = [bodies[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=work, args=(p,)) for p in parts]
    [w.start() for w in workers]
    [w.join() for w in workers]
    return counts

def batch(instance, n, now_ms):
    rows = ",".join(
        '{"t_unix_ms":%d,"heap_used_bytes":%d,"dom_nodes":900,"long_tasks":0,"long_task_ms":0}'
        % (now_ms - (n - i) * 50, 30_000_000 + i * 4096) for i in range(n))
    return '{"target":"crowd","instance":"i%d","samples":[%s]}' % (instance, rows)

def get(path):
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    start = time.monotonic()
    conn.request("GET", path)
    body = conn.getresponse().read()
    return len(body), (time.monotonic() - start) * 1000

rows = []
time.sleep(1)
idle = rss_mib()
rows.append(("idle (baseline)", idle, "-", "-"))

now = int(time.time() * 1000)
bodies = [batch(i, samples, now) for i in range(instances)]
start = time.monotonic()
counts = post_all(bodies)
took = time.monotonic() - start
rows.append((f"{instances} instances x {samples} samples", rss_mib(), counts, f"{took:.1f}"))
del bodies

start = time.monotonic()
abuse = [b" " * (10 << 20)] * 20 + [b"{not json"] * 1000 + \
    [batch(instances + i, 1, now).encode() for i in range(1000)]
counts = post_all(abuse)
took = time.monotonic() - start
rows.append(("+ 20 x 10 MB, 1000 invalid, 1000 over the cap", rss_mib(), counts, f"{took:.1f}"))

print(f"\nplimsoll serve, {instances} live instances of one target, detector time scale 0.01\n")
print(f"| {'phase':<48} | {'RSS MiB':>8} | {'x idle':>6} | {'s':>5} | answers")
print(f"|{'-'*50}|{'-'*10}|{'-'*8}|{'-'*7}|---------")
for phase, rss, counts, took in rows:
    print(f"| {phase:<48} | {rss:8.1f} | {rss / idle:6.1f} | {took:>5} | {counts}")
print()
for path in ["/metrics", "/health", "/api/v1/targets"]:
    size, ms = get(path)
    print(f"GET {path:<16} {size / 1024:9.1f} KiB in {ms:7.1f} ms")
print(f"\nRSS per live instance: {(rows[1][1] - idle) * 1024 / instances:.1f} KiB")
EOF
if grep -q panicked "$work/serve.log"; then
    echo "serve panicked:" >&2
    cat "$work/serve.log" >&2
    exit 1
fi
