#!/usr/bin/env python3
"""Root's cprx-qmp against a QEMU of another user that lies about itself (TAP).

cprx-qmp runs as root; the QEMU it updates may run as another user, whose
guest may own it.  QEMU's command line and environment are its own memory
to rewrite, its QMP socket's path is its user's to serve, and any local
user can start a process whose binary is named qemu-system-*.  None of
them may get root's cprx-qmp to run a program as root, write through a
link, or act on another process than the one that serves the socket.
The "QEMU" here is a fake QMP server in Python, run as nobody, whose
argv[0] names a probe script that records the uid it runs with.

Test Case: the new binary's -version and the trial instance run as QEMU's user
Test Case: restart runs the restarted QEMU as QEMU's user
Test Case: restart does not open its log through a link
Test Case: update --all updates no socket but the discovered QEMU's own
Test Case: a socket whose listener exited is not taken for the process that has its pid now
Test Case: a link in a root QEMU's user owns leads no file operation out of it
Test Case: the rescue writes no RAM block into a process that exec'd another image

Environment: CPRX_QMP (the binary).  Needs root (SKIP otherwise).
"""
import ctypes
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import passed, skip, tap  # noqa: E402
import time

QMP = os.environ.get("CPRX_QMP", "build/qemu-integration/cprx-qmp")
PY = "/usr/bin/python3"  # one nobody can run

# What both fake QEMUs share: the greeting, and an answer from a table
# (by "command property", then by command), each command logged.
FAKE_COMMON = r'''
import json
GREETING = {"QMP": {"version": {"qemu": {"major": 11, "minor": 1, "micro": 3},
                                "package": ""}, "capabilities": []}}

def answer(line, good, log):
    msg = json.loads(line)
    cmd = msg.get("execute")
    prop = msg.get("arguments", {}).get("property")
    with open(log, "a") as l:
        l.write(cmd + "\n")
    return cmd, json.dumps({"return": good.get("%s %s" % (cmd, prop), good.get(cmd, {}))})
'''

# A fake QEMU 11: answers what cprx-qmp asks, logs each command.
# argv: SOCK LOG [orphan] [exec]; with "orphan" the process that listened
# exits and a child of it serves; with "exec" it closes the connection
# after answering "migrate", as QEMU does when it execs.
SERVER = FAKE_COMMON + r'''
import os, socket, sys, threading
sock, log, flags = sys.argv[1], sys.argv[2], sys.argv[3:]
GOOD = {
    "query-status": {"status": "running", "running": True},
    "query-memdev": [{"id": "ram0", "size": 268435456, "share": True,
                      "merge": True, "dump": True, "prealloc": False,
                      "policy": "default", "host-nodes": []}],
    "query-migrate-parameters": {"mode": "normal", "cpr-exec-command": []},
    "query-migrate": {"status": "completed"},
    "qom-get": "ram0",
    "qom-get aux-ram-share": True,
    "human-monitor-command": "",
}

def serve(c):
    f = c.makefile("rw")
    try:
        f.write(json.dumps(GREETING) + "\n")
        f.flush()
        for line in f:
            cmd, ans = answer(line, GOOD, log)
            f.write(ans + "\n")
            f.flush()
            # quit; migrate, with "exec": the connection closes as QEMU's
            # exec closes it
            if cmd == "quit" or (cmd == "migrate" and "exec" in flags):
                break
    except (OSError, ValueError):
        pass
    c.close()

s = socket.socket(socket.AF_UNIX)
s.bind(sock)
s.listen(8)
if "orphan" in flags and os.fork():
    os._exit(0)
with open(log + ".pid", "w") as f:
    f.write(str(os.getpid()))
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''

# A fake QEMU with RAM to keep, for the rescue: a memfd backend "ram0"
# (on its command line as -object) and a RAM block "pc.bios" holding
# MARK.  It dies once it has answered "migrate"; started again by the
# rescue (-incoming defer), it answers "info ramblock" all but the last
# byte, execs another image, TARGET, which maps memory at the HVA that
# answer named, sends the last byte and looks whether MARK was written
# there.  argv: SOCK LOG TARGET_PY OUT -object memory-backend-memfd,...
# With FAKE_NO_STDIO in its environment it closes its fds 0, 1 and 2
# once a client talks to it.
RESCUE_FAKE = FAKE_COMMON + r'''
import ctypes, mmap, os, socket, sys
sock, log, target_py, out = sys.argv[1:5]
rescued = "defer" in sys.argv
HVA = 0x200000000000
MARK = b"KEPT-BY-ROOT"
HDR = "Block Name PSize Offset Used Total HVA RO\n"

def block(name, size, fill):
    fd = os.memfd_create(name)
    os.ftruncate(fd, size)
    m = mmap.mmap(fd, size)
    m[:len(fill)] = fill
    return fd, m, ctypes.addressof(ctypes.c_char.from_buffer(m))

if not rescued:
    ram = block("ram0", 1 << 20, b"")
    bios = block("pc.bios", 0x10000, MARK * 100)
    RAMBLOCK = HDR + "".join("%s 4 KiB 0x0 0x%x 0x%x 0x%x rw\n" % (n, sz, sz, b[2])
                             for n, sz, b in (("ram0", 1 << 20, ram),
                                              ("pc.bios", 0x10000, bios)))
else:
    RAMBLOCK = HDR + "pc.bios 4 KiB 0x0 0x10000 0x10000 0x%x ro\n" % HVA
GOOD = {
    "query-status": {"status": "running", "running": True},
    "query-memdev": [{"id": "ram0", "size": 1 << 20, "share": True,
                      "merge": True, "dump": True, "prealloc": False,
                      "policy": "default", "host-nodes": []}],
    "query-migrate-parameters": {"mode": "normal", "cpr-exec-command": []},
    "query-migrate-capabilities": [],
    "query-migrate": {"status": "active"},
    "qom-get": "ram0",
    "qom-get aux-ram-share": True,
    "human-monitor-command": RAMBLOCK,
}

def serve(c):
    f = c.makefile("rw")
    f.write(json.dumps(GREETING) + "\n")
    f.flush()
    for line in f:
        if not rescued and os.environ.get("FAKE_NO_STDIO"):
            os.closerange(0, 3)  # a QEMU may close its stdio
        cmd, ans = answer(line, GOOD, log)
        if rescued and cmd == "human-monitor-command":
            f.write(ans)
            f.flush()
            os.set_inheritable(c.fileno(), True)
            os.execv(target_py, [target_py, "-c", TARGET, str(c.fileno()), out, str(HVA)])
        f.write(ans + "\n")
        f.flush()
        if cmd == "migrate":
            os._exit(1)  # the new QEMU died

TARGET = r"""
import ctypes, os, sys, time
fd, out, hva = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
p = libc.mmap(hva, 0x10000, 3, 0x22 | 0x100000, -1, 0)
os.write(fd, b"\n")
time.sleep(2)
got = ctypes.string_at(hva, 12) if p == hva else b"no mapping"
with open(out, "w") as f:
    f.write(repr(got))
"""

if rescued and os.environ.get("FAKE_RECORD"):
    # what the rescued QEMU got from root's cprx-qmp: its fds and limits
    import resource
    fds = {}
    for n in os.listdir("/proc/self/fd"):
        try:
            fds[n] = os.readlink("/proc/self/fd/" + n)
        except OSError:
            pass
    with open(os.environ["FAKE_RECORD"], "w") as f:
        json.dump({"fds": fds, "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)}, f)
if rescued:
    os.unlink(sock)
s = socket.socket(socket.AF_UNIX)
s.bind(sock)
s.listen(8)
with open(log + ".pid", "w") as f:
    f.write(str(os.getpid()))
while True:
    c, _ = s.accept()
    serve(c)
'''

PROBE = """#!/bin/sh
echo "$(id -u) $1" >> %s
if [ "$1" = -version ]; then echo "QEMU emulator version 11.1.3 (probe)"; exit 0; fi
exit 1
"""


def script(path, text):
    """An executable file at @path."""
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def wait_file(path):
    for _ in range(500):
        try:
            with open(path) as f:
                text = f.read()
            if text:
                return text
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise RuntimeError("no %s" % path)


def nobody():
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def start_fake(sock, log, argv0, flags=(), root=None):
    """The fake QEMU as nobody, with @argv0 as its argv[0]; in @root (its
    own mount namespace, /usr bound in) when given, @sock and @log then
    its paths there."""
    uid, gid = nobody()
    args = [argv0, "-c", SERVER, sock, log] + list(flags)
    if root is None:
        p = subprocess.Popen(args, executable=PY, user=uid, group=gid, extra_groups=[])
    else:
        p = subprocess.Popen(args, executable=PY, preexec_fn=lambda: enter(root, uid, gid))
        log = root + log
    # its pid file comes after listen(): the socket's path alone comes at
    # bind(), and a connection then is refused
    wait_file(log + ".pid")
    return p


def enter(root, uid, gid):
    """In the child: a mount namespace of its own, /usr bound into @root,
    chroot there, then nobody."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000) or \
            libc.mount(None, b"/", None, 0x4000 | 0x40000, None) or \
            libc.mount(b"/usr", (root + "/usr").encode(), None, 0x1000, None):
        os._exit(126)
    os.chroot(root)
    os.chdir("/")
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def stop(p):
    if p.poll() is None:
        p.kill()
    p.wait()


def run(*args, timeout=60):
    p = subprocess.run([QMP] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def probe_lines(out):
    try:
        with open(out) as f:
            return [l.split() for l in f if l.strip()]
    except FileNotFoundError:
        return []


def case_preflight(d, probe, out):
    sock = os.path.join(d, "run", "pre.sock")
    p = start_fake(sock, os.path.join(d, "run", "pre.log"), probe)
    rc, o, e = run("update", "-s", sock, "--preflight-only", "--no-rescue",
                   "--json", "--timeout", "10")
    stop(p)
    lines = probe_lines(out)
    ran = [l for l in lines if len(l) > 1]
    uid = str(nobody()[0])
    tap(any(l[1] == "-version" for l in ran),
        "the preflight ran the new binary named by QEMU's argv[0]",
        "exit %d\n%s%s\nprobe: %s" % (rc, o[-600:], e[-600:], lines))
    tap(ran and all(l[0] == uid for l in ran),
        "the new binary's -version and the trial ran as QEMU's user (uid %s)"
        % uid, "probe ran as: %s\nexit %d\n%s" % (lines, rc, e[-600:]))
    os.unlink(out)


def case_restart_user(d, probe, out):
    sock = os.path.join(d, "run", "rs.sock")
    state = os.path.join(d, "run", "rs.state")
    p = start_fake(sock, os.path.join(d, "run", "rs.log"), probe)
    rc, o, e = run("restart", "-s", sock, "--state", state, "--json", "--timeout", "5")
    stop(p)
    lines = probe_lines(out)
    uid = str(nobody()[0])
    tap(lines and all(l[0] == uid for l in lines),
        "restart ran the restarted QEMU as QEMU's user (uid %s)" % uid,
        "probe ran as: %s\nexit %d\n%s%s" % (lines, rc, o[-400:], e[-600:]))
    if os.path.exists(out):
        os.unlink(out)


def case_restart_link(d, probe, out):
    sock = os.path.join(d, "run", "rl.sock")
    state = os.path.join(d, "run", "rl.state")
    victim = os.path.join(d, "precious")
    with open(victim, "w") as f:
        f.write("precious\n")
    # QEMU's user left a link where restart writes the new QEMU's log
    os.symlink(victim, state + ".qemu.log")
    p = start_fake(sock, os.path.join(d, "run", "rl.log"), probe)
    rc, o, e = run("restart", "-s", sock, "--state", state, "--json", "--timeout", "5")
    stop(p)
    with open(victim) as f:
        kept = f.read()
    tap(kept == "precious\n",
        "restart wrote nothing through a link at STATE.qemu.log",
        "the link's target now holds %r\nexit %d\n%s" % (kept[:200], rc, e[-600:]))
    tap(rc == 1 and not probe_lines(out),
        "restart refused that log before anything ran",
        "exit %d, probe: %s\n%s%s" % (rc, probe_lines(out), o[-400:], e[-600:]))
    if os.path.exists(out):
        os.unlink(out)


def case_state_dir_link(d, probe, out):
    """--state in a directory of QEMU's user's, one level down: that user
    made the level a link to a directory of root's.  Neither the migration
    file (given to QEMU's user) nor restart's log (root's, QEMU's output
    in it) may be made there: QEMU's user cannot write it."""
    uid, gid = nobody()
    qdir = os.path.join(d, "qdir")
    rootdir = os.path.join(d, "rootdir")  # root's: 0755
    os.mkdir(qdir)
    os.mkdir(rootdir)
    os.chown(qdir, uid, gid)
    os.symlink(rootdir, os.path.join(qdir, "states"))
    state = os.path.join(qdir, "states", "vm.state")
    made = []
    for verb in (["update", "-b", probe, "--no-trial"], ["restart"]):
        sock = os.path.join(d, "run", "sd-%s.sock" % verb[0])
        log = os.path.join(d, "run", "sd-%s.log" % verb[0])
        if verb[0] == "update":  # one with RAM to keep: the file is made then
            p = subprocess.Popen([PY, "-c", RESCUE_FAKE, sock, log, PY,
                                  os.path.join(d, "run", "sd.out"), "-object",
                                  "memory-backend-memfd,id=ram0,size=1M,share=on"],
                                 user=uid, group=gid, extra_groups=[], cwd="/")
            wait_file(log + ".pid")
        else:
            p = start_fake(sock, log, probe)
        rc, o, e = run(*verb[:1], "-s", sock, *verb[1:], "--state", state,
                       "--timeout", "5")
        stop(p)
        made += ["%s: %s" % (verb[0], n) for n in os.listdir(rootdir)]
        for n in os.listdir(rootdir):
            os.unlink(os.path.join(rootdir, n))
    tap(not made, "update and restart made no file in a directory of root's that "
        "QEMU's user linked into the --state path",
        "made there: %s\nlast exit %d\n%s%s" % (made, rc, o[-400:], e[-400:]))
    if os.path.exists(out):
        os.unlink(out)


def case_all_decoy(d):
    under = os.path.join(d, "run")
    victim_sock = os.path.join(under, "victim.sock")
    victim_log = os.path.join(under, "victim.log")
    decoy = os.path.join(d, "bin", "qemu-system-x86_64")
    shutil.copy(os.path.realpath(PY), decoy)
    v = start_fake(victim_sock, victim_log, PY)
    uid, gid = nobody()
    # any user's process, its binary named qemu-system-*, naming another's socket
    dp = subprocess.Popen([decoy, "-c", "import time; time.sleep(120)", "-qmp",
                           "unix:%s,server=on" % victim_sock],
                          user=uid, group=gid, extra_groups=[])
    time.sleep(0.3)
    rc, o, e = run("update", "--all", "--under", under, "--preflight-only", "--no-trial",
                   "--no-rescue", "-b", "/bin/true", "--json", "--timeout", "10",
                   timeout=120)
    stop(dp)
    stop(v)
    asked = open(victim_log).read().split() if os.path.exists(victim_log) else []
    try:
        vms = json.loads(o)["vms"]
    except (ValueError, KeyError):
        vms = []
    tap(any(x.get("pid") == dp.pid for x in vms),
        "update --all found the process named qemu-system-x86_64",
        "exit %d\n%s%s" % (rc, o[-600:], e[-600:]))
    tap(not asked, "update --all sent nothing to a socket the decoy named but "
        "did not serve", "the socket's server was asked %s\n%s" % (asked, o[-800:]))


def take_pid(target, argv):
    """A process running @argv in pid @target (a few tries), or None."""
    for _ in range(30):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(target - 1))
        pid = os.fork()
        if pid == 0:
            try:
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        if pid == target:
            return pid
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return None


def reused_pid_checks(d):
    """A fake QEMU whose listening process exited, its pid then another
    process's: status must not take that process for QEMU.  [(ok, name,
    why)]; in a PID namespace of its own (case_reused_pid), where nothing
    else takes the pid first."""
    sock = os.path.join(d, "run", "orphan.sock")
    p = start_fake(sock, os.path.join(d, "run", "orphan.log"), PY, flags=["orphan"])
    listener = p.pid
    p.wait()  # the process that listened is gone, its pid free
    server = int(wait_file(os.path.join(d, "run", "orphan.log.pid")))
    victim = take_pid(listener, ["/bin/sleep", "120"])
    if victim is None:
        os.kill(server, 9)
        return [(False, "the listener's pid %d taken by another process" % listener,
                 "no fork got it in 30 tries, in a PID namespace of the test's own")]
    rc, o, e = run("status", "-s", sock, "--json", "--timeout", "5")
    os.kill(victim, 9)
    os.waitpid(victim, 0)
    os.kill(server, 9)
    try:
        pid = json.loads(o).get("pid")
    except ValueError:
        pid = None
    return [(pid != victim, "a socket whose listener exited: the process now in its "
             "pid (%d) is not taken for QEMU" % victim, "exit %d, reported pid %s\n%s%s"
             % (rc, pid, o[-400:], e[-400:])),
            (rc == 1 and "exited" in e, "status refused it, saying the listener exited",
             "exit %d\n%s" % (rc, e[-400:]))]


def case_reused_pid(d):
    """reused_pid_checks in a PID namespace of its own: on the host's, a
    busy machine's forks took the pid back first (a CI run's SKIP)."""
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", PY,
                        os.path.abspath(__file__), "--reused-pid", d],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=120)
    got = [json.loads(l[7:]) for l in r.stdout.splitlines() if l.startswith("RESULT ")]
    if len(got) != 2:
        got = [(False, "the reused-pid case ran in a PID namespace of its own",
                "unshare: exit %d\n%s%s" % (r.returncode, r.stdout[-400:],
                                              r.stderr[-400:]))] * 2
    for ok, name, why in got:
        tap(ok, name, why)


def user_root(d, name):
    """A root for the fake QEMU that its user (nobody) owns, with /probe
    in it, and a directory of ours outside it; both paths."""
    uid, gid = nobody()
    root = os.path.join(d, name)
    outside = os.path.join(d, name + "-outside")
    os.mkdir(root)
    os.mkdir(outside)
    os.mkdir(os.path.join(root, "usr"))
    for link in ("bin", "lib", "lib64", "sbin"):
        os.symlink("usr/" + link, os.path.join(root, link))
    script(os.path.join(root, "probe"), PROBE % "/probe.out")
    os.chown(root, uid, gid)
    return root, outside


def case_link_out(d, name, link, state, through, refused):
    """QEMU in a root its user owns, where @link is a link to a directory
    of ours (resolved by QEMU in its root, by a path through /proc/PID in
    ours), and a file of QEMU's user where it leads, at --state @state
    (None: the default, /tmp/cprx-qmp-PID.state)."""
    uid, gid = nobody()
    root, outside = user_root(d, name)
    os.symlink(outside, os.path.join(root, link))
    p = start_fake("/qmp.sock", "/qmp.log", "/probe", flags=["exec"], root=root)
    precious = os.path.join(outside, os.path.basename(state) if state else
                            "cprx-qmp-%d.state" % p.pid)
    with open(precious, "w") as f:
        f.write("precious\n")
    os.chown(precious, uid, gid)
    rc, o, e = run("update", "-s", root + "/qmp.sock", "--new-qmp", "/qmp.sock",
                   "--no-trial", "--no-rescue", "--timeout", "10",
                   *(["--state", state] if state else []))
    stop(p)
    tap(os.path.exists(precious),
        "update removed no file out of QEMU's root through " + through,
        "%s is gone\nexit %d\n%s%s" % (precious, rc, o[-800:], e[-400:]))
    tap(rc == 2 and "state" in o and "FAIL" in o, "the state check refused " + refused,
        "exit %d\n%s%s" % (rc, o[-800:], e[-400:]))


def case_root_link(d):
    # QEMU's user made its /tmp a link to a path of ours
    case_link_out(d, "root", "tmp", None, "its /tmp link",
                  "a /tmp that leads nowhere in QEMU's root")


def case_rescue_exec(d, probe):
    """The rescued QEMU answers "info ramblock" and execs another image
    before root's cprx-qmp opens its /proc/PID/mem."""
    uid, gid = nobody()
    run_d = os.path.join(d, "run")
    sock, log = os.path.join(run_d, "r.sock"), os.path.join(run_d, "r.log")
    out = os.path.join(run_d, "target.out")
    target = os.path.join(d, "bin", "other-image")
    shutil.copy(os.path.realpath(PY), target)  # another inode than QEMU's
    p = subprocess.Popen([PY, "-c", RESCUE_FAKE, sock, log, target, out, "-object",
                          "memory-backend-memfd,id=ram0,size=1M,share=on"],
                         user=uid, group=gid, extra_groups=[], cwd="/")
    wait_file(log + ".pid")
    rc, o, e = run("update", "-s", sock, "-b", probe, "--no-trial", "--state",
                   os.path.join(run_d, "r.state"), "--json", "--timeout", "10")
    p.wait()
    for _ in range(500):
        if os.path.exists(out):
            break
        time.sleep(0.01)
    got = open(out).read() if os.path.exists(out) else None
    tap(got is not None, "the rescue asked the rescued QEMU's RAM blocks, which then "
        "exec'd another image", "exit %d\n%s%s" % (rc, o[-1500:], e[-600:]))
    tap(got is not None and "KEPT" not in got,
        "root wrote nothing into the process once it ran another image",
        "at the HVA it named: %s\nexit %d\n%s" % (got, rc, o[-600:]))


def begin(name, plan, subdirs):
    """What a test of root's cprx-qmp against a fake QEMU needs, or SKIP:
    the plan printed, a directory of its own with @subdirs (name, mode)
    in it; None when skipped."""
    if not os.access(QMP, os.X_OK):
        print("1..0 # SKIP no cprx-qmp at %s (json-glib missing?)" % QMP)
        return None
    if os.geteuid() != 0:
        print("1..0 # SKIP needs root (QEMU runs as nobody, cprx-qmp as root)")
        return None
    if not os.access(PY, os.X_OK):
        print("1..0 # SKIP no %s for the fake QEMU" % PY)
        return None
    print("1..%d" % plan)
    d = tempfile.mkdtemp(prefix="cprx-qmp-%s." % name)
    os.chmod(d, 0o755)
    for sub, mode in subdirs:
        os.mkdir(os.path.join(d, sub))
        os.chmod(os.path.join(d, sub), mode)
    return d


def main():
    d = begin("privs", 14, (("run", 0o1777), ("bin", 0o755)))
    if d is None:
        return 0
    out = os.path.join(d, "run", "probe.out")
    probe = script(os.path.join(d, "bin", "probe"), PROBE % out)
    try:
        case_preflight(d, probe, out)
        case_restart_user(d, probe, out)
        case_restart_link(d, probe, out)
        case_state_dir_link(d, probe, out)
        case_all_decoy(d)
        case_reused_pid(d)
        case_root_link(d)
        case_rescue_exec(d, probe)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 0 if passed() else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--reused-pid"]:
        for res in reused_pid_checks(sys.argv[2]):
            print("RESULT " + json.dumps(res))
        sys.exit(0)
    sys.exit(main())
