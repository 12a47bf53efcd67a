#!/usr/bin/env python3
"""Markdown table of bench.sh's bench.json: per guest size and QEMU, the
median cpr-exec pause through cprx-qmp, its phases, the same update driven
by hand, the restart baseline, and each QEMU's pause against the first
QEMU given (its "stock" reference) at that size."""
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1])]
labels = list(dict.fromkeys(r["qemu"] for r in rows))
sizes = sorted({r["size_mib"] for r in rows})


def pick(size, label, mode):
    return [r for r in rows if r["size_mib"] == size and r["qemu"] == label
            and r["mode"] == mode and "pause_ms" in r]


def med(rs):
    return statistics.median(r["pause_ms"] for r in rs) if rs else float("nan")


print("-accel tcg, half of guest RAM dirtied and touched again before each update; "
      "medians, all samples in brackets")
print()
print("| guest RAM | QEMU | cpr-exec pause (cprx-qmp) | stop→exec | exec→resume "
      "| by hand | cprx-qmp / by hand | vs " + labels[0] + " | migrate to file + restart |")
print("|---|---|---|---|---|---|---|---|---|")
for size in sizes:
    ref = med(pick(size, labels[0], "cpr-exec"))
    for label in labels:
        cpr = pick(size, label, "cpr-exec")
        if not cpr:
            continue
        m = med(cpr)
        mid = min(cpr, key=lambda r: abs(r["pause_ms"] - m))
        hand = med(pick(size, label, "by-hand"))
        rs = pick(size, label, "restart")
        base = f"{rs[0]['pause_ms']:.0f} ms" if rs else "–"
        runs = ", ".join(f"{r['pause_ms']:.0f}" for r in cpr)
        print(f"| {size} MiB | {label} | {m:.1f} ms ({runs}) "
              f"| {mid['phases']['stop_to_exec_ms']:.1f} ms "
              f"| {mid['phases']['exec_to_resume_ms']:.1f} ms "
              f"| {hand:.1f} ms | {m / hand:.2f} | {m / ref:.2f}x | {base} |")
