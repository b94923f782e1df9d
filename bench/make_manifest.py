"""Generates corpus.json (kept so the manifest can be regenerated/edited in one place)."""
import json

N = ["node", "{bench}/workloads/node_mem.js"]
P = ["python3", "{bench}/workloads/py_mem.py"]
C = ["{out}/c_mem"]
MB = 1024 * 1024
W = []


def w(name, label, cmd, duration_s, budget_mb, leak_start_s, notes, env=None):
    d = {"name": name, "label": label, "command": cmd, "duration_s": duration_s,
         "budget_bytes": int(budget_mb * MB), "leak_start_s": leak_start_s, "notes": notes}
    if env:
        d["env"] = env
    W.append(d)


def node(flags, name, *args):
    return ["node"] + flags + [N[1], name] + list(args)


# ---------------- healthy ----------------
w("node-gc-sawtooth", "no-leak",
  node([], "node-gc-sawtooth", "base_mb=30", "garbage_mb_s=3",
       "churn_mb_s=3", "churn_life_s=6", "replace_mb=60", "replace_every_s=15"),
  1380, 600, None,
  "Steady garbage: short-lived (3 MB/s), medium-lived records kept 6 s (3 MB/s), and a 60 MB "
  "table rebuilt every 15 s whose old copy dies in old space, so heap and RSS saw by tens of MB. "
  "Retained set constant (30 MB base + one 60 MB table).")
w("node-lru-warmup", "no-leak",
  node([], "node-lru-warmup", "lru_cap=10000", "lru_entry_kb=12", "lru_new_per_s=35",
       "lru_hit_per_s=20", "garbage_mb_s=0.5"),
  1500, 500, None,
  "Map-based LRU capped at 10000 entries of ~12 KB; 35 new keys/s fill it in ~5 min "
  "(~120 MB), then it plateaus while evicting.")
w("py-cache-warmup", "no-leak",
  P + ["py-cache-warmup", "cache_keys=8000", "cache_entry_kb=12", "cache_req_s=50", "churn_kb_s=200"],
  1500, 400, None,
  "Dict cache over a finite keyspace (8000 keys x ~12 KB), 50 uniform requests/s: fill "
  "follows 1-exp(-t/160s), decelerating and levelling off at ~100 MB within ~8 min.")
w("node-one-time-step", "no-leak",
  node([], "node-one-time-step", "step_at_s=120", "step_mb=250", "garbage_mb_s=1", "base_mb=20"),
  1500, 900, None,
  "At t=120 s loads a 250 MB table once (in ~10 s), then flat with steady garbage.")
w("node-periodic-clear", "no-leak",
  node([], "node-periodic-clear", "periodic_mb=60", "periodic_s=210", "garbage_mb_s=0.5", "base_mb=20"),
  1500, 400, None,
  "A Map accumulates ~60 MB over 3.5 min and is cleared, repeatedly.")
w("py-periodic-clear", "no-leak",
  P + ["py-periodic-clear", "periodic_mb=50", "periodic_s=120", "churn_kb_s=200"],
  1500, 200, None,
  "A list and a dict grow to ~50 MB over 2 min and are cleared, repeatedly.")
w("node-spiky-transient", "no-leak",
  node([], "node-spiky-transient", "base_mb=40", "garbage_mb_s=1", "churn_mb_s=2",
       "churn_life_s=5", "spike_min_mb=50",
       "spike_max_mb=200", "spike_every_min_s=30", "spike_every_max_s=120",
       "spike_hold_min_s=2", "spike_hold_max_s=8"),
  1500, 900, None,
  "Random 50-200 MB temporaries (V8 arrays or Buffers) every 30-120 s, held 2-8 s, then dropped; "
  "2 MB/s of medium-lived churn keeps major GCs coming so dropped spikes are actually reclaimed.")
w("c-steady-trim", "no-leak",
  C + ["c-steady-trim", "live_slots=2000", "max_block_kb=64", "churn_per_tick=100",
       "trim_every_s=60", "spike_mb=100", "spike_every_s=90", "spike_hold_s=5"],
  1500, 400, None,
  "malloc/free churn of random sizes (16 B-64 KB) over a constant 2000-slot live set (~64 MB), "
  "malloc_trim every 60 s, 50-100 MB transient spike every ~90 s held 5 s.")
w("c-steady-fragmented", "no-leak",
  C + ["c-steady-fragmented", "live_slots=4000", "max_block_kb=32", "churn_per_tick=200"],
  1500, 200, None,
  "malloc/free churn of random sizes (16 B-32 KB) over a constant ~64 MB live set, never trimmed: "
  "RSS rises while fragmentation settles, then flat.")

# ---------------- leaks ----------------
w("node-fast-leak", "leak",
  node(["--max-old-space-size=3072"], "node-fast-leak", "leak_mb_min=120", "leak_cap_mb=1400",
       "garbage_mb_s=1"),
  600, 2048, 0,
  "Retains ~2 MB/s of records (string + number array) in a global array; exits at 1.4 GB "
  "leaked (not reached in 10 min).")
w("node-slow-leak-sawtooth", "leak",
  node([], "node-slow-leak-sawtooth", "base_mb=40", "garbage_mb_s=3",
       "churn_mb_s=3", "churn_life_s=6", "replace_mb=60", "replace_every_s=15", "leak_mb_min=1.5"),
  1380, 400, 0,
  "1.5 MB/min retained leak hidden under a 50+ MB GC sawtooth (same garbage mix as "
  "node-gc-sawtooth: a 60 MB table rebuilt every 15 s plus churn).")
w("node-offheap-leak", "leak",
  node([], "node-offheap-leak", "base_mb=30", "garbage_mb_s=1", "leak_kind=buffer",
       "leak_mb_min=2", "leak_start_s=120"),
  1500, 250, 120,
  "From t=120 s retains 64 KB Buffers (off-heap, filled) at 2 MB/min; the V8 heap stays flat.")
w("node-noisy-leak", "leak",
  node([], "node-noisy-leak", "base_mb=30", "garbage_mb_s=2", "churn_mb_s=2", "churn_life_s=4",
       "leak_mb_min=2", "spike_min_mb=20", "spike_max_mb=100", "spike_every_min_s=20",
       "spike_every_max_s=90", "spike_hold_min_s=2", "spike_hold_max_s=10"),
  1500, 400, 0,
  "2 MB/min retained leak with churn and random 20-100 MB transient spikes.")
w("py-slow-leak", "leak",
  P + ["py-slow-leak", "base_mb=20", "churn_kb_s=300", "leak_mb_min=1", "leak_kind=list"],
  1500, 200, 0,
  "Appends records to a global list at ~1 MB/min, with short-lived churn.")
w("py-dict-cache-leak", "leak",
  P + ["py-dict-cache-leak", "base_mb=10", "churn_kb_s=200", "leak_mb_min=3", "leak_kind=dict"],
  1500, 300, 0,
  "Request cache dict keyed by unique request URLs, never evicted: ~3 MB/min.")
w("c-leak", "leak",
  C + ["c-leak", "live_slots=1000", "max_block_kb=64", "churn_per_tick=50", "leak_mb_min=2"],
  1500, 300, 0,
  "malloc'd blocks (512 B-16 KB, memset) never freed at ~2 MB/min, plus churn over a ~32 MB live set.")
w("c-fast-leak", "leak",
  C + ["c-fast-leak", "live_slots=500", "max_block_kb=64", "churn_per_tick=20", "leak_mb_min=60",
       "leak_cap_mb=1000"],
  900, 1536, 0,
  "Leaks ~1 MB/s of memset blocks; exits at 1000 MB leaked (not reached in 15 min).")

with open(__file__.rsplit("/", 1)[0] + "/corpus.json" if "/" in __file__ else "corpus.json", "w") as f:
    json.dump(W, f, indent=2)
    f.write("\n")
print(len(W), "workloads")
