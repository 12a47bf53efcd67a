#!/usr/bin/env python3
"""Pause of cprx-vmm live updates over RAM sizes, deferred teardown on/off.

Each configuration is one cprx-vmm process doing --runs updates in a row, so
every sample is a real update of a populated guest.  Configurations are
interleaved per size so that both teardown modes see the same machine load.
Prints a Markdown table (median, min, max in ms) and the machine it ran on.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(s):
    return int(s[:-1]) * UNITS[s[-1].upper()] if s[-1].isalpha() else int(s)


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return "Linux %s, %s, %d cores, %.0f GiB" % (
        platform.release(), cpu, os.cpu_count(), mem / (1 << 30))


def run(vmm, size, teardown, runs, pages, backend):
    cmd = [vmm, "--ram", size, "--updates", str(runs), "--run-ms", "100",
           "--pages", pages, "--teardown", teardown, "--backend", backend,
           "--json"]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    samples = []
    for line in out.stdout.splitlines():
        ev = json.loads(line)
        if ev.get("event") == "update" and ev.get("ok"):
            samples.append(ev)
    if out.returncode != 0 or len(samples) != runs:
        sys.exit("cprx-vmm failed (%d): %s\n%s" % (out.returncode,
                 " ".join(cmd), out.stderr[-2000:]))
    return samples


def fmt(samples, key=None):
    vals = [s["pause_ms"] if key is None else s["phases_ms"][key] for s in samples]
    return "%.2f (%.2f–%.2f)" % (statistics.median(vals), min(vals), max(vals))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vmm", default="build/tools/cprx-vmm")
    ap.add_argument("--sizes", default="256M,1G,4G,16G")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--pages", default="4k")
    ap.add_argument("--teardowns", default="deferred,inline")
    ap.add_argument("--backends", default="cloexec",
                    help="comma list: cloexec, kmod (needs /dev/cprx)")
    args = ap.parse_args()

    rows = {}
    for size in args.sizes.split(","):
        need = parse_size(size) + (512 << 20)
        if need > mem_available():
            print("skipping %s: needs %.1f GiB, %.1f GiB available" % (
                size, need / (1 << 30), mem_available() / (1 << 30)))
            continue
        for be in args.backends.split(","):
            for td in args.teardowns.split(","):
                print("running %s %s %s ..." % (size, be, td), file=sys.stderr)
                rows[(size, be, td)] = run(args.vmm, size, td, args.runs,
                                           args.pages, be)

    print("Machine: %s" % machine())
    print("Command: bench/pause.py --sizes %s --runs %d --pages %s "
          "--teardowns %s --backends %s\n" % (args.sizes, args.runs,
          args.pages, args.teardowns, args.backends))
    phases = ("stop", "save", "exec", "reclaim", "remap", "resume")
    print("| RAM | backend | teardown | pause ms: median (min–max) | %s |" %
          " | ".join(phases))
    print("|---|---|---|---|" + "---|" * len(phases))
    for (size, be, td), samples in rows.items():
        print("| %s | %s | %s | %s | %s |" % (size, be, td, fmt(samples), " | ".join(
            "%.2f" % statistics.median(s["phases_ms"][p] for s in samples)
            for p in phases)))
    print("\nPhase columns are medians in ms.")
    for be in args.backends.split(","):
        sizes = [s for s in args.sizes.split(",") if (s, be, "deferred") in rows]
        if len(sizes) >= 2:
            lo = statistics.median(s["pause_ms"] for s in rows[(sizes[0], be, "deferred")])
            hi = statistics.median(s["pause_ms"] for s in rows[(sizes[-1], be, "deferred")])
            print("\n%s, deferred teardown: pause(%s) / pause(%s) = %.2f" % (
                be, sizes[-1], sizes[0], hi / lo))


if __name__ == "__main__":
    main()
