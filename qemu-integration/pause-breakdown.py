#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The pause of a cpr-exec update, split by QEMU's own trace events.

  pause-breakdown.py QEMU_LOG REPORT.json... [--json]

QEMU_LOG is the stderr of a QEMU started with -msg timestamp=on and the
trace events below (pause-breakdown.sh starts it so), through every update
of the REPORTs, cprx-qmp's JSON reports in order. Each update's stages run
from QMP's STOP event to its RESUME event:

  stop -> exec          the old QEMU saves its state and execs
                        (cpr_exec_cprx_exec)
  exec -> trace start   the kernel's exec, the dynamic loader, QEMU's
                        constructors and option parsing, up to its first
                        event (cpr_exec_cprx_incoming, in cpr_state_load)
  machine + accel       machine_init_phase machine-created, accel-created
  backends              late-backends-created: guest RAM reclaimed
  board init            machine-initialized: CPUs, memory, board devices
  devices + reset       machine-ready: the command line's devices realized
  state load            vmstate_downtime_checkpoint dst-precopy-loadvm-completed
  resume                to QMP's RESUME (QEMU traces dst-precopy-bh-vm-started
                        only after it emits RESUME)

Prints a table of each stage's median, min and max over the updates (or
JSON), and exits 1 when an update lacks one of the events.
"""
import datetime
import json
import statistics
import sys

# (stage, the event that ends it, its argument or None)
STAGES = [
    ("stop -> exec", "cpr_exec_cprx_exec", None),
    ("exec -> trace start (ld.so, constructors, options)", "cpr_exec_cprx_incoming", None),
    ("machine + accelerator", "machine_init_phase", "accel-created"),
    ("backends (guest RAM reclaimed)", "machine_init_phase", "late-backends-created"),
    ("board init (CPUs, memory, board devices)", "machine_init_phase", "machine-initialized"),
    ("devices realized + reset", "machine_init_phase", "machine-ready"),
    ("state load", "vmstate_downtime_checkpoint", "dst-precopy-loadvm-completed"),
]


def usec(stamp):
    """ISO 8601 UTC as QEMU's -msg timestamp=on prints it, to epoch usec."""
    stamp = stamp.rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in stamp else "%Y-%m-%dT%H:%M:%S"
    t = datetime.datetime.strptime(stamp, fmt).replace(tzinfo=datetime.timezone.utc)
    return int(t.timestamp()) * 1000000 + t.microsecond


def events(path):
    """(usec, name, first argument) of each timestamped trace line."""
    out = []
    with open(path, "rb") as f:
        for raw in f:
            parts = raw.decode("utf-8", "replace").replace("\0", "").split()
            if len(parts) < 2 or not parts[0][:4].isdigit() or "T" not in parts[0]:
                continue
            try:
                out.append((usec(parts[0]), parts[1], parts[2] if len(parts) > 2 else ""))
            except ValueError:
                continue
    return out


def split(evs, report):
    """One update's stage lengths in ms, from its STOP and RESUME."""
    t0, t1 = report.get("stop_usec"), report.get("resume_usec")
    if t0 is None or t1 is None:
        raise ValueError("the report has no STOP and RESUME timestamps "
                         "(stop_usec, resume_usec): was the update ok?")
    mine = [e for e in evs if t0 <= e[0] <= t1]
    out, prev = {}, t0
    for stage, name, arg in STAGES:
        hit = [e for e in mine if e[1] == name and (arg is None or e[2] == arg) and e[0] >= prev]
        if not hit:
            raise ValueError("no %s%s between STOP and RESUME" % (name, " " + arg if arg else ""))
        out[stage] = (hit[0][0] - prev) / 1000.0
        prev = hit[0][0]
    out["resume (to the RESUME event)"] = (t1 - prev) / 1000.0
    out["total (STOP -> RESUME)"] = (t1 - t0) / 1000.0
    return out


def main(argv):
    as_json = "--json" in argv
    args = [a for a in argv if a != "--json"]
    if len(args) < 2:
        sys.exit(__doc__)
    evs = events(args[0])
    runs = []
    for path in args[1:]:
        try:
            runs.append(split(evs, json.load(open(path))))
        except ValueError as e:
            print("pause-breakdown: %s: %s" % (path, e), file=sys.stderr)
            return 1
    stages = list(runs[0])
    rows = [(s, statistics.median(r[s] for r in runs), min(r[s] for r in runs),
             max(r[s] for r in runs)) for s in stages]
    if as_json:
        print(json.dumps({"updates": len(runs), "runs": runs,
                          "median_ms": {s: m for s, m, _, _ in rows}}))
        return 0
    print("| stage (%d updates) | median ms | min | max |" % len(runs))
    print("|---|---:|---:|---:|")
    for s, m, lo, hi in rows:
        print("| %s | %.2f | %.2f | %.2f |" % (s, m, lo, hi))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
