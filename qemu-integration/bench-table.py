#!/usr/bin/env python3
"""Markdown table of bench.sh's bench.json: per guest size and QEMU, the
median cpr-exec pause through cprx-qmp, its phases, the same update driven
by hand, the restart baseline, and each QEMU's pause against the first
QEMU given (its "stock" reference) at that size.

    bench-table.py BENCH_JSON [--plot DIR]

--plot: DIR/qemu-pause.{dat,gp,svg,png} (gnuplot), median pause by guest
size per QEMU, and the restart baseline."""
import json
import os
import statistics
import subprocess
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


def plot(d):
    dat = os.path.join(d, "qemu-pause.dat")
    with open(dat, "w") as f:
        f.write("# size_mib " + " ".join(f'"{l}"' for l in labels) + ' "restart"\n')
        for size in sizes:
            meds = [med(pick(size, l, "cpr-exec")) for l in labels]
            rs = pick(size, labels[0], "restart")
            base = rs[0]["pause_ms"] if rs else float("nan")
            f.write(f"{size} " + " ".join(f"{m:.2f}" for m in meds) + f" {base:.1f}\n")
    lines = [f"'{dat}' using 1:{i + 2} with linespoints lw 2 pt 7 title '{l} cpr-exec'"
             for i, l in enumerate(labels)]
    lines.append(f"'{dat}' using 1:{len(labels) + 2} with linespoints dt 2 pt 5 "
                 f"title '{labels[0]} migrate to file + restart'")
    gp = os.path.join(d, "qemu-pause.gp")
    with open(gp, "w") as f:
        for term, ext in (("svg size 800,480", "svg"), ("pngcairo size 800,480", "png")):
            f.write(f"set terminal {term}\nset output '{os.path.join(d, 'qemu-pause.' + ext)}'\n"
                    "set title 'QEMU live update: guest pause (median), -accel tcg'\n"
                    "set logscale xy 2\nset xlabel 'guest RAM (MiB), half dirtied'\n"
                    "set ylabel 'pause (ms)'\nset key below\nset grid\n"
                    f"set xrange [{sizes[0] / 1.4}:{sizes[-1] * 1.4}]\n"
                    f"set xtics ({', '.join(str(x) for x in sizes)})\n"
                    "plot " + ", ".join(lines) + "\n")
    subprocess.run(["gnuplot", gp], check=True)


if "--plot" in sys.argv:
    plot(sys.argv[sys.argv.index("--plot") + 1])
