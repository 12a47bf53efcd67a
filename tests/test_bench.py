#!/usr/bin/env python3
"""cprx-bench end to end (TAP): a tiny sweep, then its outputs checked for
form and internal consistency.  --vm: the same in the VM tier's guest.

Environment: CPRX_BENCH (the binary), CPRX_VMM (cprx-vmm for the host run).
"""
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

BENCH = os.environ.get("CPRX_BENCH", "build/bench/cprx-bench")
KINDS = ("cprx", "floor", "naive", "copy")
results = []


def tap(ok, name, why=""):
    results.append(ok)
    skip = ok and isinstance(why, str) and why.startswith("SKIP")
    print("%s %d - %s%s" % ("ok" if ok else "not ok", len(results), name,
                            (" # " + why) if skip else ""))
    if not ok and why:
        for line in str(why).splitlines():
            print("# " + line)
    sys.stdout.flush()


def skip_all(why):
    print("1..0 # SKIP " + why)
    sys.exit(0)


def run(args, timeout):
    p = subprocess.run([BENCH] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def close(a, b, tol=2e-3):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def num(s):
    return None if s == "" else float(s)


def check_outputs(out, reps, kinds, backends=None):
    """The checks shared by the host and the VM run."""
    names = ["samples.csv", "summary.csv", "results.json", "table.md"]
    missing = [n for n in names if not os.path.getsize(os.path.join(out, n))]
    tap(not missing, "output files written", "missing: %s" % missing)
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    m = res.get("machine", {})
    tap(all(m.get(k) for k in ("kernel", "cpu", "cores", "mem_bytes")),
        "machine recorded (kernel, CPU, cores, memory)", m)
    cells = [c for c in res["cells"] if not c.get("skipped")]
    got = sorted({c["kind"] for c in cells})
    tap(set(kinds) <= set(got), "cprx and baselines present: %s" % ",".join(kinds),
        "got %s" % got)
    if backends:
        bes = {c["backend"] for c in cells if c["kind"] == "cprx"}
        tap(set(backends) <= bes, "backends %s measured" % ",".join(backends),
            "got %s" % sorted(bes))
    short = [(c["config"], c["size"], c["n"]) for c in cells if c["n"] != reps and
             c["kind"] != "copy"]
    tap(not short, "every cell has --reps x --rounds samples", short)

    bad = []
    for c in cells:
        for s in c["samples"]:
            seg = s["segments_ms"]
            if any(v is None for v in seg.values()):
                bad.append((c["config"], c["size"], "missing segment", seg))
                continue
            total = sum(seg.values())
            if abs(total - s["pause_ms"]) > 0.10 * s["pause_ms"]:
                bad.append((c["config"], c["size"], total, s["pause_ms"]))
    tap(not bad, "breakdown sums to within 10% of the pause, every sample", bad[:5])

    bad = []
    for c in cells:
        p = sorted(s["pause_ms"] for s in c["samples"])
        n = len(p)
        med = p[n // 2] if n % 2 else (p[n // 2 - 1] + p[n // 2]) / 2
        if not (close(med, c["median_ms"]) and close(p[0], c["min_ms"]) and
                close(p[-1], c["max_ms"])):
            bad.append((c["config"], c["size"], med, c["median_ms"]))
    tap(not bad, "median, min, max agree with the samples", bad[:5])

    srows = rows(os.path.join(out, "samples.csv"))
    jsamp = [(c["config"], c["size"], i + 1, s["pause_ms"])
             for c in cells for i, s in enumerate(c["samples"])]
    csamp = [(r["config"], r["size"], int(r["rep"]), float(r["pause_ms"]))
             for r in srows]
    same = len(jsamp) == len(csamp) and all(
        a[:3] == b[:3] and close(a[3], b[3]) for a, b in zip(jsamp, csamp))
    tap(same, "samples.csv and results.json agree (%d samples)" % len(csamp),
        "json %d rows, csv %d rows" % (len(jsamp), len(csamp)))

    sums = {(r["config"], r["size"]): r for r in rows(os.path.join(out, "summary.csv"))}
    bad = []
    for c in res["cells"]:
        r = sums.get((c["config"], c["size"]))
        if not r or int(r["n"]) != c["n"] or not close(num(r["median_ms"]), c["median_ms"]):
            bad.append((c["config"], c["size"]))
    tap(not bad and len(sums) == len(res["cells"]),
        "summary.csv and results.json agree", bad[:5])

    floors = {(c["size"], c["pages"], c["vcpus"]): c["median_ms"]
              for c in cells if c["kind"] == "floor"}
    bad = []
    for c in cells:
        f = floors.get((c["size"], c["pages"], c["vcpus"]))
        if c["kind"] == "cprx" and f and not close(c["x_floor"], c["median_ms"] / f, 1e-2):
            bad.append((c["config"], c["size"], c["x_floor"]))
    tap(not bad, "ratios to the floor match the medians", bad[:5])
    return res


def host():
    if not os.access(BENCH, os.X_OK):
        skip_all("no cprx-bench at %s" % BENCH)
    out = tempfile.mkdtemp(prefix="cprx-bench-test.")
    try:
        code, so, se = run(["--sizes", "16M,32M,64T", "--reps", "2", "--rounds", "2",
                            "--run-ms", "20",
                            "--out", out], 300)
        tap(code == 0, "a tiny sweep with every baseline runs", se[-2000:])
        if code:
            return
        tap("floor 4k 2vcpu" in so and "copy 4k 2vcpu" in so and "pause ms" in so,
            "terminal table lists the configurations", so[-1500:])
        res = check_outputs(out, 4, KINDS)
        notes = " ".join(res["notes"])
        tap("64T" in notes and "available" in notes,
            "a size that does not fit is skipped, and said so", notes)
        if shutil.which("gnuplot"):
            plots = ["pause.png", "pause.svg", "breakdown.png", "breakdown.svg"]
            bad = [p for p in plots if not os.path.exists(os.path.join(out, p)) or
                   os.path.getsize(os.path.join(out, p)) < 1000]
            png = open(os.path.join(out, "pause.png"), "rb").read(8)
            tap(not bad and png.startswith(b"\x89PNG"), "gnuplot PNG and SVG plots", bad)
        else:
            tap(True, "gnuplot PNG and SVG plots", "SKIP gnuplot not installed")
        code, so, se = run(["--sizes", "1Q"], 30)
        tap(code == 1 and "--sizes" in se, "a bad size is refused by name", se)
        # --guard-timeline needs cprx-guard trace: when that cannot run (here
        # no cprx-guard at all; another guard may be loaded on this machine),
        # it fails before the sweep and says what it needs
        env = dict(os.environ, CPRX_GUARD=os.path.join(out, "no-cprx-guard"))
        p = subprocess.run([BENCH, "--guard-timeline", "--sizes", "16M", "--out", out],
                           env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        tap(p.returncode == 1 and "--guard-timeline" in p.stderr and
            "loaded guard" in p.stderr,
            "--guard-timeline without a loaded guard fails and says why", p.stderr[-800:])
        # --qemu runs qemu-integration/bench.sh (suite qemu measures with it);
        # here only its refusals, which must come before any guest boots.
        code, so, se = run(["--qemu", "--sizes", "64M"], 30)
        tap(code == 1 and "64M" in se and "128M" in se,
            "--qemu: a guest size under 128M is refused by name", se)
        env = dict(os.environ, CPRX_CACHE=os.path.join(out, "no-cache"))
        p = subprocess.run([BENCH, "--qemu", "--out", out], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        tap(p.returncode == 1 and "qemu-chroot.sh" in p.stderr and
            "qemu-build.sh --cprx" in p.stderr,
            "--qemu without the QEMU chroot names the scripts that build it", p.stderr)
        code, so, se = run(["--backends", "kmod", "--baselines", "none",
                            "--sizes", "16M", "--reps", "1", "--out", out], 120)
        kmod = os.path.exists("/dev/cprx")
        tap(code == 0 if kmod else code == 1 and "no /dev/cprx" in se,
            "kmod without /dev/cprx "
            "is skipped, and said so", so[-800:] + se[-800:])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def vm():
    root = os.environ.get("MESON_SOURCE_ROOT", os.getcwd())
    build = os.environ.get("MESON_BUILD_ROOT", os.path.join(root, "build"))
    ko = os.path.join(build, "kmod-bookworm", "cprx.ko")
    if not os.path.exists(ko):
        skip_all("no %s (tests/vm/kbuild.sh bookworm . build/kmod-bookworm)" % ko)
    if not shutil.which("qemu-system-x86_64"):
        skip_all("no qemu-system-x86_64")
    out = tempfile.mkdtemp(prefix="cprx-bench-vm.", dir="/tmp")
    try:
        code, so, se = run(["--vm", "--sizes", "16M", "--reps", "2", "--run-ms", "20",
                            "--baselines", "floor", "--no-plots", "--out", out], 900)
        if code and "no such kernel" in se.lower():
            skip_all("VM tier kernel unavailable")
        tap(code == 0, "--vm: the sweep runs in the guest", (so + se)[-3000:])
        if code:
            return
        res = check_outputs(out, 2, ("cprx", "floor"), backends=("kmod", "cloexec"))
        tap("Linux 6.1" in res["machine"]["kernel"],
            "--vm: results come from the guest's kernel", res["machine"]["kernel"])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main():
    (vm if "--vm" in sys.argv[1:] else host)()
    print("1..%d" % len(results))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
