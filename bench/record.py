#!/usr/bin/env python3
"""Record labeled memory traces of the bench workloads (Python stdlib only, Linux).

Reads the manifest bench/corpus.json (the source of truth for names, labels, budgets), starts
each workload in its own process group, samples it at 1 Hz and writes bench/traces/<name>.csv:

    t_s,rss_bytes,pss_bytes,heap_used_bytes,heap_used_after_gc_bytes

t_s is seconds since the workload started (time.monotonic). rss/pss are summed over the process
tree (the process and all its descendants, found through the ppid field of /proc/*/stat); pss is
empty when smaps_rollup can't be read. The heap columns are filled for workloads that write one
JSON line per second to the file named by $PLIMSOLL_BENCH_STATS (the Node workloads do).

Usage:
    python3 bench/record.py --parallel                 # record everything at once
    python3 bench/record.py --only node-fast-leak      # (re)record one workload (repeatable)
    python3 bench/record.py --parallel --duration-scale 0.02 --traces-dir bench/out/smoke
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(BENCH, "out")
PAGE = os.sysconf("SC_PAGE_SIZE")
COLUMNS = ["t_s", "rss_bytes", "pss_bytes", "heap_used_bytes", "heap_used_after_gc_bytes"]


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def load_manifest(path):
    with open(path) as f:
        specs = json.load(f)
    names = set()
    for s in specs:
        for k in ("name", "label", "command", "duration_s", "budget_bytes", "leak_start_s", "notes"):
            if k not in s:
                raise SystemExit("manifest entry %r lacks %r" % (s.get("name"), k))
        if s["label"] not in ("leak", "no-leak"):
            raise SystemExit("bad label for %s" % s["name"])
        if s["name"] in names:
            raise SystemExit("duplicate name %s" % s["name"])
        names.add(s["name"])
    return specs


def build():
    os.makedirs(OUT, exist_ok=True)
    src = os.path.join(BENCH, "workloads", "c_mem.c")
    exe = os.path.join(OUT, "c_mem")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        subprocess.check_call(["gcc", "-O2", "-Wall", "-o", exe, src])


def proc_children():
    """Map ppid -> [pid] for every live process."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                data = f.read()
        except OSError:
            continue
        # the comm field may contain spaces/parens: split after the last ')'
        rest = data[data.rfind(b")") + 2:].split()
        if len(rest) < 2:
            continue
        kids.setdefault(int(rest[1]), []).append(int(d))
    return kids


def tree(root, kids):
    out, stack = [], [root]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(kids.get(p, ()))
    return out


def rss_of(pid):
    try:
        with open("/proc/%d/statm" % pid) as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return None


def pss_of(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        return None
    return None


def last_json_line(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 4096))
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except ValueError:
            continue  # a partially written last line
    return None


class Run:
    def __init__(self, spec, traces_dir, scale):
        self.spec = spec
        self.name = spec["name"]
        self.duration = max(5.0, spec["duration_s"] * scale)
        self.final = os.path.join(traces_dir, self.name + ".csv")
        self.tmp = self.final + ".partial"
        self.stats = os.path.join(OUT, "stats", self.name + ".jsonl")
        self.rows = 0
        self.done = False

    def start(self):
        os.makedirs(os.path.dirname(self.stats), exist_ok=True)
        if os.path.exists(self.stats):
            os.remove(self.stats)
        cmd = [a.replace("{bench}", BENCH).replace("{out}", OUT) for a in self.spec["command"]]
        env = dict(os.environ)
        env.update(self.spec.get("env", {}))
        env["PLIMSOLL_BENCH_STATS"] = self.stats
        self.errlog = open(os.path.join(OUT, self.name + ".stderr"), "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.errlog,
                                     start_new_session=True)
        self.t0 = time.monotonic()
        self.out = open(self.tmp, "w")
        self.out.write(",".join(COLUMNS) + "\n")
        log("started %s pid=%d for %.0f s" % (self.name, self.proc.pid, self.duration))

    def sample(self, kids, now):
        if self.done:
            return
        if self.proc.poll() is not None:
            log("%s exited early with code %s after %.0f s" % (self.name, self.proc.returncode, now - self.t0))
            self.finish()
            return
        pids = tree(self.proc.pid, kids)
        rss = pss = 0
        pss_ok = True
        for p in pids:
            r = rss_of(p)
            if r is None:
                continue
            rss += r
            q = pss_of(p)
            if q is None:
                pss_ok = False
            else:
                pss += q
        heap = after = ""
        st = last_json_line(self.stats)
        if st:
            if st.get("heap_used") is not None:
                heap = str(int(st["heap_used"]))
            if st.get("heap_used_after_gc") is not None:
                after = str(int(st["heap_used_after_gc"]))
        self.out.write("%.3f,%d,%s,%s,%s\n" % (now - self.t0, rss, pss if pss_ok else "", heap, after))
        self.rows += 1
        if self.rows % 10 == 0:
            self.out.flush()
        if now - self.t0 >= self.duration:
            self.finish()

    def finish(self):
        if self.done:
            return
        self.done = True
        self.kill()
        self.out.close()
        self.errlog.close()
        os.replace(self.tmp, self.final)
        log("finished %s: %d rows -> %s" % (self.name, self.rows, os.path.relpath(self.final)))

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def record(runs):
    for r in runs:
        r.start()
    try:
        while not all(r.done for r in runs):
            now = time.monotonic()
            kids = proc_children()
            for r in runs:
                if not r.done:
                    r.sample(kids, time.monotonic())
            # next tick: 1 s after the previous one (runs started within ms of each other)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
    finally:
        for r in runs:
            if not r.done:
                r.finish()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default=os.path.join(BENCH, "corpus.json"))
    ap.add_argument("--traces-dir", default=os.path.join(BENCH, "traces"))
    ap.add_argument("--parallel", action="store_true", help="run all selected workloads at once")
    ap.add_argument("--only", action="append", metavar="NAME", help="record only NAME (repeatable)")
    ap.add_argument("--duration-scale", type=float, default=1.0, help="multiply every duration (smoke runs)")
    a = ap.parse_args()

    specs = load_manifest(a.manifest)
    if a.only:
        unknown = set(a.only) - {s["name"] for s in specs}
        if unknown:
            raise SystemExit("unknown workload(s): %s" % ", ".join(sorted(unknown)))
        specs = [s for s in specs if s["name"] in a.only]
    build()
    os.makedirs(a.traces_dir, exist_ok=True)
    runs = [Run(s, a.traces_dir, a.duration_scale) for s in specs]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # finally-block kills the workloads
    if a.parallel:
        record(runs)
    else:
        for r in runs:
            record([r])
    log("all done")


if __name__ == "__main__":
    main()
