#!/usr/bin/env python3
"""Per-trace statistics for bench/traces/*.csv (Python stdlib only).

    python3 bench/trace_stats.py [--traces-dir DIR] [--window-s 600] [--markdown]

Prints, per trace in the manifest: label, duration, samples, start/end/min/max RSS (MB) and the
least-squares RSS slope in MB/min over the whole trace and over the last --window-s seconds,
plus the slope of heap_used_after_gc over the same window where present.
A partial trace (<name>.csv.partial, still being recorded) is used in preference to <name>.csv.
"""
import argparse
import csv
import json
import os

BENCH = os.path.dirname(os.path.abspath(__file__))
MB = 1024 * 1024


def slope(ts, ys):
    n = len(ts)
    if n < 2:
        return float("nan")
    mt, my = sum(ts) / n, sum(ys) / n
    den = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / den if den else float("nan")


def load(path):
    t, rss, after = [], [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            if not row.get("rss_bytes"):
                continue
            t.append(float(row["t_s"]))
            rss.append(int(row["rss_bytes"]))
            a = row.get("heap_used_after_gc_bytes")
            after.append(int(a) if a else None)
    return t, rss, after


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces-dir", default=os.path.join(BENCH, "traces"))
    ap.add_argument("--manifest", default=os.path.join(BENCH, "corpus.json"))
    ap.add_argument("--window-s", type=float, default=600)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    specs = json.load(open(a.manifest))
    hdr = ["trace", "label", "dur_s", "rows", "rss_start", "rss_end", "rss_min", "rss_max",
           "slope_all", "slope_last", "heapgc_slope_last"]
    if a.markdown:
        print("| " + " | ".join(hdr) + " |")
        print("|" + "---|" * len(hdr))
    else:
        print("%-24s %-7s %6s %5s %9s %9s %9s %9s %9s %10s %11s" % tuple(hdr))
    for s in specs:
        p = os.path.join(a.traces_dir, s["name"] + ".csv")
        if os.path.exists(p + ".partial"):  # a recording in progress supersedes the old trace
            p += ".partial"
        if not os.path.exists(p):
            print("%-24s missing" % s["name"])
            continue
        t, rss, after = load(p)
        if not t:
            print("%-24s empty" % s["name"])
            continue
        cut = t[-1] - a.window_s
        idx = [i for i, x in enumerate(t) if x >= cut]
        sl_all = slope(t, rss) * 60 / MB
        sl_last = slope([t[i] for i in idx], [rss[i] for i in idx]) * 60 / MB
        gi = [i for i in idx if after[i] is not None]
        sl_gc = slope([t[i] for i in gi], [after[i] for i in gi]) * 60 / MB if len(gi) > 10 else None
        vals = [s["name"] + ("" if p.endswith(".csv") else "*"), s["label"], "%.0f" % t[-1], str(len(t)),
                "%.1f" % (rss[0] / MB), "%.1f" % (rss[-1] / MB), "%.1f" % (min(rss) / MB),
                "%.1f" % (max(rss) / MB), "%+.2f" % sl_all, "%+.2f" % sl_last,
                "" if sl_gc is None else "%+.2f" % sl_gc]
        if a.markdown:
            print("| " + " | ".join(vals) + " |")
        else:
            print("%-24s %-7s %6s %5s %9s %9s %9s %9s %9s %10s %11s" % tuple(vals))
    print("(RSS in MB, slopes in MB/min by least squares; 'last' = final %.0f s; * = partial trace)" % a.window_s)


if __name__ == "__main__":
    main()
