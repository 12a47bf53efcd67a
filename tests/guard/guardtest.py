#!/usr/bin/env python3
"""Checks for the guard's tests (vm-guard.sh, host-trace.sh).

  guardtest.py timeline FILE --pid P --outcome O --phases a,b,c
               [--verdict V] [--reason TEXT] [--wait SEC]
      FILE holds `cprx-guard trace --json` lines: waits for a timeline of
      process P with that outcome, and checks its phases are exactly those,
      in that order, with non-decreasing kernel timestamps.
  guardtest.py update FILE [key=value ...] [--error-contains TEXT]
      FILE holds cprx-vmm's JSON lines: checks its first "update" event.
  guardtest.py overhead BEFORE AFTER
      Two `cprx-guard status --json` snapshots: per-exec cost of the exec
      path programs (check + commit), ns, from kernel.bpf_stats_enabled.
  guardtest.py programs FILE [--status STATUS] [--want a,b] [--not ID,ID]
               [--count N]
      FILE holds `cprx-guard status --json`: checks the programs it lists
      are exactly the ids of STATUS's prog lines, N of them, each name of
      --want once, none of the ids of --not.
  guardtest.py decoy NAME[:TYPE] ...
      Loads a do-nothing BPF program called NAME of TYPE (socket_filter,
      the default, or raw_tracepoint) for each, by x86-64 bpf(2), prints
      their ids, one a line, and holds them until killed: programs named
      like the guard's that are not the guard's.
  guardtest.py exec32 [--cgroup DIR] PATH
      Joins cgroup DIR (v2), then execve(PATH) through int 0x80, the ia32
      entry, as a 64-bit process: an exec numbered otherwise than
      x86-64's.  Returns only if it failed (exit 1); without an ia32 entry
      the kernel kills it (SIGSEGV).

Prints what it found; exit 0 when the check holds, 1 otherwise.
"""
import argparse
import ctypes
import json
import os
import signal
import struct
import sys
import time


def read_json_lines(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except FileNotFoundError:
        pass
    return out


def show(tl):
    return "%s[%s] %s: %s" % (tl.get("comm"), tl.get("pid"), tl.get("outcome"),
                               " -> ".join("%s@%.3f" % (p["phase"], p["t_ms"])
                                           for p in tl.get("phases", [])))


def cmd_timeline(a):
    want = a.phases.split(",")
    deadline = time.time() + a.wait
    seen = []
    while True:
        seen = [t for t in read_json_lines(a.file) if t.get("pid") == a.pid]
        match = [t for t in seen if t.get("outcome") == a.outcome]
        if match or time.time() >= deadline:
            break
        time.sleep(0.2)
    if not match:
        print("no '%s' timeline for pid %d; seen: %s" %
              (a.outcome, a.pid, "; ".join(show(t) for t in seen) or "none"))
        return 1
    tl = match[-1]
    got = [p["phase"] for p in tl["phases"]]
    ts = [p["t_ms"] for p in tl["phases"]]
    problems = []
    if got != want:
        problems.append("phases %s, want %s" % (",".join(got), ",".join(want)))
    if ts != sorted(ts):
        problems.append("timestamps not in order: %s" % ts)
    if a.verdict and tl.get("verdict") != a.verdict:
        problems.append("verdict %s, want %s" % (tl.get("verdict"), a.verdict))
    if a.reason and a.reason not in tl.get("reason", ""):
        problems.append("reason '%s', want '%s'" % (tl.get("reason"), a.reason))
    print(show(tl) + ("" if not problems else " -- " + "; ".join(problems)))
    return 1 if problems else 0


def cmd_update(a):
    ups = [e for e in read_json_lines(a.file) if e.get("event") == "update"]
    if not ups:
        print("no update event in %s" % a.file)
        return 1
    u = ups[0]
    problems = []
    for kv in a.expect:
        k, v = kv.split("=", 1)
        got = u.get(k)
        if isinstance(got, bool):
            got = "true" if got else "false"
        if str(got) != v:
            problems.append("%s=%s, want %s" % (k, got, v))
    if a.error_contains and a.error_contains not in u.get("error", ""):
        problems.append("error does not name '%s'" % a.error_contains)
    print("update: ok=%s stage=%s errno=%s verify=%s error=%s" %
          (u.get("ok"), u.get("stage"), u.get("errno"), u.get("verify"),
           u.get("error", "")) + ("" if not problems else " -- " + "; ".join(problems)))
    return 1 if problems else 0


def progs(path):
    with open(path) as f:
        return {p["name"]: p for p in json.load(f)["programs"]}


def cmd_overhead(a):
    b, e = progs(a.before), progs(a.after)
    check = "cg_bprm_check" if "cg_bprm_check" in e else "cg_sys_enter"
    execs = e["cg_exec"]["run_cnt"] - b["cg_exec"]["run_cnt"]
    if execs <= 0:
        print("no exec was seen")
        return 1
    ns = 0
    parts = []
    for name in ("cg_bprm_check", "cg_bench_check", "cg_exec"):
        if name in e:
            d = e[name]["run_time_ns"] - b[name]["run_time_ns"]
            c = e[name]["run_cnt"] - b[name]["run_cnt"]
            ns += d
            parts.append("%s %d runs %.0f ns" % (name, c, d / c if c else 0))
    for name in ("cg_file_fcntl", "cg_sys_enter", "cg_sys_exit"):
        if name in e:
            d = e[name]["run_time_ns"] - b[name]["run_time_ns"]
            c = e[name]["run_cnt"] - b[name]["run_cnt"]
            parts.append("%s %d runs %.0f ns each" % (name, c, d / c if c else 0))
    per = ns / execs
    print("%.0f ns per exec over %d execs (%s)" % (per, execs, "; ".join(parts)))
    return 0


def cmd_programs(a):
    with open(a.file) as f:
        listed = json.load(f)["programs"]
    ids = [p["id"] for p in listed]
    names = [p["name"] for p in listed]
    problems = []
    if a.status:
        with open(a.status) as f:
            rec = [int(l.split()[1]) for l in f if l.startswith("prog ")]
        if sorted(ids) != sorted(rec):
            problems.append("ids %s, the status records %s" % (ids, rec))
    if a.count is not None and len(ids) != a.count:
        problems.append("%d programs, want %d" % (len(ids), a.count))
    for name in filter(None, a.want.split(",")):
        if names.count(name) != 1:
            problems.append("%s listed %d times" % (name, names.count(name)))
    for bad in filter(None, a.exclude.split(",")):
        if int(bad) in ids:
            problems.append("id %s (not the guard's) listed" % bad)
    print(" ".join("%s:%s" % (n, i) for n, i in zip(names, ids)) +
          ("" if not problems else " -- " + "; ".join(problems)))
    return 1 if problems else 0


SYS_BPF = 321                   # x86-64
BPF_PROG_LOAD, BPF_OBJ_GET_INFO_BY_FD = 5, 15
PROG_TYPES = {"socket_filter": 1, "raw_tracepoint": 17}


def bpf(cmd, attr):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    r = libc.syscall(ctypes.c_long(SYS_BPF), ctypes.c_long(cmd), buf,
                     ctypes.c_uint(len(attr)))
    if r < 0:
        raise OSError(ctypes.get_errno(), "bpf(%d)" % cmd)
    return r


def load_decoy(name, ptype):
    """A program that returns 0, called @name: its id (the fd stays open)."""
    insns = ctypes.create_string_buffer(struct.pack("<BBhiBBhi", 0xb7, 0, 0, 0,
                                                    0x95, 0, 0, 0), 16)
    lic = ctypes.create_string_buffer(b"GPL")
    attr = bytearray(128)
    struct.pack_into("<IIQQ", attr, 0, PROG_TYPES[ptype], 2,
                     ctypes.addressof(insns), ctypes.addressof(lic))
    attr[48:48 + min(len(name), 15)] = name.encode()[:15]
    fd = bpf(BPF_PROG_LOAD, attr)
    info = ctypes.create_string_buffer(256)
    attr = bytearray(128)
    struct.pack_into("<IIQ", attr, 0, fd, 256, ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return struct.unpack_from("<I", info.raw, 4)[0]


def cmd_decoy(a):
    ids = []
    for spec in a.specs:
        name, _, ptype = spec.partition(":")
        ids.append(load_decoy(name, ptype or "socket_filter"))
    print("\n".join(map(str, ids)), flush=True)
    signal.pause()
    return 0


def cmd_exec32(a):
    if a.cgroup:
        with open(a.cgroup + "/cgroup.procs", "w") as f:
            f.write("0")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long]
    # code and strings below 4 GiB: the ia32 entry takes 32-bit pointers
    page = libc.mmap(None, 4096, 7, 0x22 | 0x40, -1, 0)  # RWX, MAP_32BIT
    if page is None or page >= 1 << 32:
        print("no page below 4 GiB")
        return 1
    path, argv = page + 64, page + 32
    code = (b"\x53"                                 # push rbx
            b"\xb8\x0b\x00\x00\x00"                 # mov eax, 11 (execve)
            b"\xbb" + struct.pack("<I", path) +     # mov ebx, path
            b"\xb9" + struct.pack("<I", argv) +     # mov ecx, argv
            b"\x31\xd2"                             # xor edx, edx
            b"\xcd\x80"                             # int 0x80
            b"\x5b\xc3")                            # pop rbx; ret
    name = a.path.encode() + b"\0"
    ctypes.memmove(page, code, len(code))
    ctypes.memmove(argv, struct.pack("<II", path, 0), 8)
    ctypes.memmove(path, name, len(name))
    r = ctypes.CFUNCTYPE(ctypes.c_int)(page)()
    print("int 0x80 execve(%s): %d (%s)" % (a.path, r, os.strerror(-r)))
    return 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("timeline")
    t.add_argument("file")
    t.add_argument("--pid", type=int, required=True)
    t.add_argument("--outcome", required=True)
    t.add_argument("--phases", required=True)
    t.add_argument("--verdict")
    t.add_argument("--reason")
    t.add_argument("--wait", type=float, default=20)
    u = sub.add_parser("update")
    u.add_argument("file")
    u.add_argument("expect", nargs="*")
    u.add_argument("--error-contains")
    o = sub.add_parser("overhead")
    o.add_argument("before")
    o.add_argument("after")
    p = sub.add_parser("programs")
    p.add_argument("file")
    p.add_argument("--status")
    p.add_argument("--want", default="")
    p.add_argument("--not", dest="exclude", default="")
    p.add_argument("--count", type=int)
    d = sub.add_parser("decoy")
    d.add_argument("specs", nargs="+", metavar="NAME[:TYPE]")
    x = sub.add_parser("exec32")
    x.add_argument("--cgroup")
    x.add_argument("path")
    a = ap.parse_args()
    return {"timeline": cmd_timeline, "update": cmd_update,
            "overhead": cmd_overhead, "programs": cmd_programs,
            "decoy": cmd_decoy, "exec32": cmd_exec32}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
