#!/usr/bin/env python3
"""cprx-qmp against a QMP server that answers with the wrong shapes (TAP).

cprx-qmp runs as root and talks to QEMUs whose guests may own them, or to
whatever process got to a socket's path first.  Whatever comes back on
QMP, it must say which command was answered wrongly, never crash or trip
a json-glib assertion, and never update on an answer it did not
understand (`status` reports, exit 0, with the error in place of the
answer).  This test serves QMP itself: a greeting, then for one command
at a time an answer of a wrong shape (the others answered as QEMU 11
would), and runs `cprx-qmp status` and `cprx-qmp update --preflight-only`
against it.

Test Case: every command cprx-qmp sends, every wrong shape
Test Case: greetings of the wrong shape
Test Case: a reply that is not JSON, or is not an object
Test Case: QEMU's strings reach the operator's terminal without control characters
Test Case: a flood of events or an endless message does not grow cprx-qmp's memory
Test Case: a QEMU that answers slowly holds the preflight up to --timeout, no longer

Environment: CPRX_QMP (the binary).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import passed, skip, tap  # noqa: E402
import threading
import time

QMP = os.environ.get("CPRX_QMP", "build/qemu-integration/cprx-qmp")

# What QEMU 11 answers to what cprx-qmp asks before it stops a guest.
GOOD = {
    "query-status": {"status": "running", "running": True},
    "query-memdev": [{"id": "ram0", "size": 268435456, "share": True,
                      "merge": True, "dump": True, "prealloc": False,
                      "policy": "default", "host-nodes": []}],
    "query-migrate-capabilities": [{"capability": "x-ignore-shared",
                                    "state": False}],
    "query-migrate-parameters": {"mode": "normal"},
    "query-migrate": {},
    "qom-list-types": [{"name": "device", "abstract": True}],
    "qom-list": [{"name": "type", "type": "string"}],
    "qom-list-get": [{"properties": [{"name": "type", "type": "string",
                                      "value": "device"}]}],
    "qom-get": "ram0",
    "human-monitor-command": "",
}
WRONG = [None, 7, "x", [], {}, [7], [None], [{}], [[]],
         {"status": 5}, {"status": None},
         [{"id": 3, "size": "big", "share": "yes", "properties": 4,
           "name": [], "type": {}, "capability": 1, "state": "on"}]]
GREETINGS = [{}, [], "x", 7, {"QMP": 5}, {"QMP": {"version": "x"}},
             {"QMP": {"version": {"qemu": {"major": "a", "minor": [],
                                           "micro": None}}}}]




class Server(threading.Thread):
    """A QMP server on @path: @greeting, then @bad for @cmd (raw text
    when @raw), GOOD for the rest."""

    def __init__(self, path, greeting, cmd=None, bad=None, raw=None):
        super().__init__(daemon=True)
        self.greeting, self.cmd, self.bad, self.raw = greeting, cmd, bad, raw
        self.asked = set()
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(8)

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        f = c.makefile("rw")
        try:
            f.write(json.dumps(self.greeting) + "\n")
            f.flush()
            for line in f:
                cmd = json.loads(line).get("execute")
                self.asked.add(cmd)
                if cmd == self.cmd and self.raw is not None:
                    f.write(self.raw + "\n")
                elif cmd == self.cmd:
                    f.write(json.dumps({"return": self.bad}) + "\n")
                else:
                    f.write(json.dumps({"return": GOOD.get(cmd, {})}) + "\n")
                f.flush()
        except (OSError, ValueError):
            pass
        c.close()

    def close(self):
        self.sock.close()


def greeting_ok():
    return {"QMP": {"version": {"qemu": {"major": 11, "minor": 1, "micro": 3},
                                "package": ""}, "capabilities": []}}


def run_qmp(sock, verb):
    args = [QMP, verb, "-s", sock, "--json", "--timeout", "5"]
    if verb == "update":
        args += ["--preflight-only", "--no-trial", "-b", "/bin/true"]
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def sane(rc, out, err):
    """None when cprx-qmp ended as it should, else why not."""
    if rc < 0:
        return "killed by signal %d" % -rc
    if rc not in (0, 1, 2):
        return "exit %d (only 0, 1 or 2 may come before any stop)" % rc
    for bad in ("CRITICAL", "WARNING **", "runtime error", "Sanitizer"):
        if bad in err:
            return "stderr has %r" % bad
    return None


# A QEMU's string that would rewrite the operator's screen: move up,
# erase the line, and write a line of its own.
FORGE = "\x1b[1A\x1b[2K\rupdate ok: pid 1 kept\nupdate ok: forged\u202e\x9b2K"


def forged(out, err):
    """Why the text output is not safe for a terminal, or None."""
    for name, text in (("stdout", out), ("stderr", err)):
        for c in ("\x1b", "\r", "\x9b", "\u202e"):
            if c in text:
                return "%s has %r" % (name, c)
        if any(l.startswith("update ok") for l in text.splitlines()):
            return "%s has a line starting 'update ok'" % name
    return None


def text_run(args):
    p = subprocess.run([QMP] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def escapes(d):
    """QEMU's error messages, device ids and status, and a command line's
    socket path, printed as text."""
    sock = os.path.join(d, "qmp.sock")
    mem = [{"id": "ram0" + FORGE, "size": 1, "share": False}]
    err = json.dumps({"error": {"class": "GenericError", "desc": FORGE}})
    for name, verb, cmd, bad, raw in (
            ("a memory backend's id", "update", "query-memdev", mem, None),
            ("an error's desc", "update", "query-migrate-parameters", None, err),
            ("the guest's status", "status", "query-status", {"status": FORGE}, None)):
        s = Server(sock, greeting_ok(), cmd, bad, raw)
        s.start()
        args = [verb, "-s", sock, "--timeout", "5"]
        if verb == "update":
            args += ["--preflight-only", "--no-trial", "-b", "/bin/true"]
        rc, out, e = text_run(args)
        s.close()
        os.unlink(sock)
        why = forged(out, e)
        tap(why is None, "%s: %s printed without control characters" % (verb, name),
            "%s\nexit %d\n%r\n%r" % (why, rc, out[-600:], e[-600:]))
    # any process named qemu-system-*, its QMP socket path of its choosing
    decoy = os.path.join(d, "qemu-system-x86_64")
    shutil.copy(os.path.realpath(sys.executable), decoy)
    dp = subprocess.Popen([decoy, "-c", "import time; time.sleep(60)", "-qmp",
                           "unix:%s/q%s.sock,server=on" % (d, FORGE)])
    rc, out, e = text_run(["update", "--all", "--under", d, "--preflight-only",
                           "--no-trial", "--no-rescue", "--timeout", "5"])
    dp.kill()
    dp.wait()
    os.unlink(decoy)
    why = forged(out, e)
    tap(why is None and str(dp.pid) in out,
        "update --all: a command line's socket path printed without control characters",
        "%s\nexit %d\n%r\n%r" % (why, rc, out[-600:], e[-600:]))


class Flood(threading.Thread):
    """A QMP server on @path that, with "events", answers query-status
    only after 3 s of events; with "line", greets with a message that
    never ends (200 MiB without a newline); with "slow", answers each
    command after 1.5 s."""

    def __init__(self, path, what):
        super().__init__(daemon=True)
        self.what = what
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(1)

    def run(self):
        c, _ = self.sock.accept()
        try:
            if self.what == "line":
                chunk = b"[" * (1 << 20)
                for _ in range(200):
                    c.sendall(chunk)
                return
            f = c.makefile("rwb")
            f.write(json.dumps(greeting_ok()).encode() + b"\n")
            f.flush()
            ev = (json.dumps({"event": "RTC_CHANGE", "data": {"offset": 1},
                              "timestamp": {"seconds": 1, "microseconds": 2}})
                  + "\n").encode() * 1000
            for line in f:
                cmd = json.loads(line).get("execute")
                if self.what == "slow" and cmd != "qmp_capabilities":
                    time.sleep(1.5)
                end = time.time() + 3
                while cmd == "query-status" and time.time() < end:
                    f.write(ev)
                    f.flush()
                f.write(json.dumps({"return": GOOD.get(cmd, {})}).encode() + b"\n")
                f.flush()
        except (OSError, ValueError):
            pass
        finally:
            c.close()


def max_rss_mib(args):
    """cprx-qmp's exit status and its peak memory (MiB)."""
    p = subprocess.Popen([QMP] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, ru.ru_maxrss / 1024, p.stderr.read().decode(errors="replace")


def sanitized():
    """Whether cprx-qmp is an ASan build: its quarantine and shadow, not
    what it keeps, are most of its footprint then."""
    with open(QMP, "rb") as f:
        return b"__asan_init" in f.read()


def floods(d):
    sock = os.path.join(d, "flood.sock")
    asan = sanitized()
    for what, limit in (("events", 64), ("line", 48)):
        s = Flood(sock, what)
        s.start()
        rc, mib, err = max_rss_mib(["status", "-s", sock, "--json", "--timeout", "5"])
        s.sock.close()
        os.unlink(sock)
        name = "a QMP peer that sends %s" % (
            "a flood of events" if what == "events" else "an endless message")
        if asan:
            tap(rc in (0, 1), "%s: cprx-qmp ends on its own (exit %d)" % (name, rc),
                err[-400:])
            skip("an ASan build's footprint is its allocator's (%.0f MiB); the "
                 "plain build's is judged" % mib, name + ": peak memory")
            continue
        tap(rc in (0, 1), "%s: cprx-qmp ends on its own (exit %d)" % (name, rc),
            err[-400:])
        tap(mib < limit, "%s: peak memory, %.0f MiB (under %d)" % (name, mib, limit),
            "exit %d, %.0f MiB\n%s" % (rc, mib, err[-400:]))


def slow(d):
    """Every command within its own timeout, the preflight's many of them
    not within --timeout: update --all waits on this VM's update."""
    sock = os.path.join(d, "slow.sock")
    s = Flood(sock, "slow")
    s.start()
    t0 = time.time()
    rc, out, err = text_run(["update", "-s", sock, "--preflight-only", "--no-trial",
                             "-b", "/bin/true", "--timeout", "3"])
    took = time.time() - t0
    s.sock.close()
    os.unlink(sock)
    tap(rc == 2 and took < 6, "a QEMU that answers each command in 1.5 s: the preflight "
        "refused in %.1f s (--timeout 3)" % took,
        "exit %d after %.1f s\n%s%s" % (rc, took, out[-600:], err[-300:]))


def main():
    if not os.access(QMP, os.X_OK):
        print("1..0 # SKIP no cprx-qmp at %s (json-glib missing?)" % QMP)
        return 0
    cases = []
    for cmd in sorted(GOOD):
        for bad in WRONG:
            cases.append(("%s -> %s" % (cmd, json.dumps(bad)),
                          greeting_ok(), cmd, bad, None))
    for g in GREETINGS:
        cases.append(("greeting %s" % json.dumps(g), g, None, None, None))
    for raw in ("not json", "[1, 2]", '"x"', "7", '{"return": {}, "error": 5}',
                '{"error": "x"}', '{"error": {"desc": 5}}'):
        cases.append(("query-status -> raw %s" % raw, greeting_ok(),
                      "query-status", None, raw))
    print("1..%d" % (2 * len(cases) + 10))
    d = tempfile.mkdtemp(prefix="cprx-qmp-hostile.")
    sock = os.path.join(d, "qmp.sock")
    wrong_named = 0
    for name, greeting, cmd, bad, raw in cases:
        for verb in ("status", "update"):
            s = Server(sock, greeting, cmd, bad, raw)
            s.start()
            rc, out, err = run_qmp(sock, verb)
            s.close()
            os.unlink(sock)
            why = sane(rc, out, err)
            # An answer of the wrong type altogether must stop cprx-qmp,
            # with the command named; a wrong field inside, at least not
            # crash it (qom-get's value may be of any type).
            shape = cmd in s.asked and raw is None and cmd != "qom-get" and \
                type(bad) is not type(GOOD[cmd])
            if why is None and shape and cmd not in out + err:
                why = "the wrong answer to %s was not named" % cmd
            if why is None and shape and verb == "update" and rc == 0:
                why = "the update went on after a wrong answer to %s" % cmd
            if why is None and shape:
                wrong_named += 1
            tap(why is None, "%s: %s" % (verb, name),
                "%s\nexit %d\n%s%s" % (why, rc, out[-400:], err[-800:]))
    tap(wrong_named > 0, "a wrong answer is named by its command (%d times)"
        % wrong_named)
    escapes(d)
    floods(d)
    slow(d)
    os.rmdir(d)
    return 0 if passed() else 1


if __name__ == "__main__":
    sys.exit(main())
