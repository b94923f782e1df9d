"""Plimsoll bench workload for Python 3 (stdlib only).

Usage: python3 py_mem.py NAME key=value ...
Components (each on when its option is given):
  base_mb=N                       retain N MB at start
  churn_kb_s=R                    short-lived garbage (dicts, lists, bytes), R KB/s
  leak_mb_min=R leak_kind=list|dict leak_start_s=S
                                  retain R MB/min forever: records appended to a global list,
                                  or a request cache dict that never evicts
  cache_keys=N cache_entry_kb=K cache_req_s=X
                                  cache filled by requests whose keys are drawn uniformly from a
                                  finite keyspace of N keys: fill decelerates and levels off
  periodic_mb=M periodic_s=P      list+dict grow to M MB over P s, then are cleared (repeats)
  seed=N
"""
import random
import signal
import sys
import time
import zlib

NAME = sys.argv[1] if len(sys.argv) > 1 else "py"
OPTS = dict(a.split("=", 1) for a in sys.argv[2:] if "=" in a)


def num(k, d):
    return float(OPTS[k]) if k in OPTS else d


KB = 1024
MB = 1024 * 1024
rng = random.Random(int(num("seed", zlib.crc32(NAME.encode()))))
counter = 0


def payload(nbytes):
    """bytes object of nbytes, fully written."""
    global counter
    counter += 1
    unit = b"%015d|" % counter
    return (unit * (nbytes // 16 + 1))[:nbytes]


def record(nbytes):
    """A dict record: some small objects plus a bytes payload, ~nbytes total."""
    global counter
    counter += 1
    return {
        "id": counter,
        "name": "rec-%d" % counter,
        "tags": [counter, counter * 2, "t%d" % (counter % 97)],
        "data": payload(max(64, nbytes - 400)),
    }


keep = {}
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

base_mb = num("base_mb", 0)
if base_mb > 0:
    keep["base"] = [record(64 * KB) for _ in range(int(base_mb * 16))]

churn = num("churn_kb_s", 0) * KB
leak_rate = num("leak_mb_min", 0) * MB / 60.0
leak_kind = OPTS.get("leak_kind", "list")
leak_start = num("leak_start_s", 0)
leaked_list = []
leaked_dict = {}
keep["leaked"] = (leaked_list, leaked_dict)

cache_keys = int(num("cache_keys", 0))
cache_entry = num("cache_entry_kb", 10) * KB
cache_req = num("cache_req_s", 50)
cache = {}
keep["cache"] = cache

periodic_mb = num("periodic_mb", 0)
periodic_s = num("periodic_s", 120)
periodic_list = []
periodic_dict = {}

TICK = 0.1
t0 = time.monotonic()
next_t = t0
leak_debt = 0.0
req_debt = 0.0
per_debt = 0.0
phase_start = t0
req_id = 0
hits = misses = 0

while True:
    now = time.monotonic()
    el = now - t0

    if churn > 0:
        left = churn * TICK
        tmp = []
        while left > 0:
            sz = int(min(left, rng.randint(256, 16 * KB)))
            tmp.append(record(sz) if rng.random() < 0.5 else [payload(sz // 4) for _ in range(4)])
            left -= sz
        # do a little "work" with it, then drop it
        _ = sum(len(x) for x in tmp)
        del tmp

    if leak_rate > 0 and el >= leak_start:
        leak_debt += leak_rate * TICK
        while leak_debt >= 256:
            sz = int(min(leak_debt, rng.randint(1 * KB, 8 * KB)))
            if leak_kind == "dict":
                req_id += 1
                leaked_dict["GET /api/item/%d?session=%x" % (req_id, rng.getrandbits(48))] = record(sz)
            else:
                leaked_list.append(record(sz))
            leak_debt -= sz

    if cache_keys > 0:
        req_debt += cache_req * TICK
        while req_debt >= 1:
            req_debt -= 1
            k = rng.randrange(cache_keys)
            v = cache.get(k)
            if v is None:
                misses += 1
                cache[k] = record(int(cache_entry * rng.uniform(0.8, 1.2)))
            else:
                hits += 1

    if periodic_mb > 0:
        if now - phase_start >= periodic_s:
            periodic_list.clear()
            periodic_dict.clear()
            phase_start = now
            per_debt = 0.0
        else:
            per_debt += periodic_mb * MB / periodic_s * TICK
            while per_debt >= 256:
                sz = int(min(per_debt, rng.randint(2 * KB, 24 * KB)))
                if rng.random() < 0.5:
                    periodic_list.append(record(sz))
                else:
                    periodic_dict[len(periodic_dict) + len(periodic_list) * 7919] = record(sz)
                per_debt -= sz

    next_t += TICK
    delay = next_t - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    else:
        next_t = time.monotonic()
