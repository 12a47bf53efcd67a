#!/usr/bin/env python3
"""What root's cprx-qmp hands to what it starts on QEMU's behalf (TAP).

The new binary's -version, the trial instance, restart's QEMU and a
rescued QEMU run a binary QEMU's user may have chosen (QEMU's argv[0] is
its own memory).  Besides QEMU's user, they must get QEMU's environment,
working directory and resource limits, none of root's: not cprx-qmp's
environment, not an fd cprx-qmp inherited, not root's limits.  They must
not hold cprx-qmp up either: one that never ends is killed at --timeout,
or `update --all` would wait on it forever, every other VM's update with
it.  And a relative --state of a QEMU in a chroot resolves in that root:
a link there to an absolute path leads no file operation into ours.

Test Case: -version and the trial get QEMU's environment, cwd and limits, no fd of root's
Test Case: restart's QEMU gets QEMU's environment, cwd and limits, no fd of root's
Test Case: a restart that lost the VM keeps its migration file, as it reports
Test Case: a rescued QEMU gets QEMU's limits and no fd of root's
Test Case: a rescued QEMU whose predecessor had closed its stdio gets none of root's
Test Case: a rescue by a cprx-qmp with some 200 fds open
Test Case: a -version or a trial that never ends is killed at --timeout
Test Case: the kill at --timeout spares a process group that took the number of an exited -version
Test Case: a relative --state of a QEMU in a chroot resolves in its root
Test Case: a root QEMU's bounding set bounds what runs for it

The fake QEMUs are test_qmp_privs.py's.  Environment: CPRX_QMP (the
binary).  Needs root (SKIP otherwise).
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_qmp_privs as privs  # noqa: E402
from tap import passed, skip, tap  # noqa: E402

QMP, PY = privs.QMP, privs.PY
NOFILE = 77  # QEMU's RLIMIT_NOFILE, not root's
SECRET = "ROOT_ONLY_SECRET=from-root"

# The new binary: records what it runs with, one line a run:
# first argument|uid|cwd|nofile soft|nofile hard|ROOT_ONLY_SECRET|QEMU_MARK|fds
RECORDER = r"""#!/bin/sh
fds=$(for f in /proc/$$/fd/*; do readlink "$f"; done | tr '\n' ' ')
echo "$1|$(id -u)|$(pwd -P)|$(ulimit -Sn)|$(ulimit -Hn)|${ROOT_ONLY_SECRET-}|${QEMU_MARK-}|$fds" >> %s
if [ "$1" = -version ]; then echo "QEMU emulator version 11.1.3 (probe)"; exit 0; fi
exit 1
"""

# A new binary that never ends, its stdout held by a child that outlives it
# (with -version; as the trial with "trial").
HANG = r"""#!/bin/sh
kind=trial
[ "$1" = -version ] && kind=version
if [ "$kind" = %s ]; then
    (sleep 300 & echo $! >> %s)
    echo $$ >> %s
    exec sleep 300
fi
[ "$1" = -version ] && echo "QEMU emulator version 11.1.3 (probe)" && exit 0
exit 1
"""

def limit_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def start_qemu(script, args, cwd, record=None, extra_env=None):
    """A fake QEMU as nobody, with QEMU_MARK in its environment, its cwd
    @cwd and RLIMIT_NOFILE at NOFILE; argv[0] @script; args[2] its log,
    whose pid file says it listens."""
    uid, gid = privs.nobody()
    env = {"PATH": "/usr/bin:/bin", "QEMU_MARK": "qemu-env"}
    env.update(extra_env or {})
    if record:
        env["FAKE_RECORD"] = record
    p = subprocess.Popen([script, "-c"] + args, executable=PY, user=uid, group=gid,
                         extra_groups=[], cwd=cwd, env=env, preexec_fn=limit_nofile)
    privs.wait_file(args[2] + ".pid")
    return p


def run_root(secret_file, *args, timeout=60, stdin=None, hold=1):
    """cprx-qmp with ROOT_ONLY_SECRET in its environment and @hold fds of
    a root-only file open, as a caller of root's may leave them (@stdin, a
    file, its stdin too)."""
    env = dict(os.environ)
    k, v = SECRET.split("=")
    env[k] = v
    fds = [os.open(secret_file, os.O_RDONLY) for _ in range(hold)]
    try:
        p = subprocess.run([QMP] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env,
                           pass_fds=fds, timeout=timeout, stdin=stdin)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return None, "", "cprx-qmp still ran after %d s" % timeout
    finally:
        for fd in fds:
            os.close(fd)


def records(out, first):
    try:
        with open(out) as f:
            lines = [l.rstrip("\n").split("|") for l in f if l.strip()]
    except FileNotFoundError:
        return []
    return [l for l in lines if len(l) == 8 and (l[0] == "-version") == (first == "-version")]


def check_records(recs, what, qcwd, secret_file, why):
    uid = str(privs.nobody()[0])
    tap(bool(recs) and all(r[6] == "qemu-env" and r[5] == "" for r in recs),
        "%s ran with QEMU's environment, none of root's" % what,
        "records: %s\n%s" % (recs, why))
    tap(bool(recs) and all(r[2] == qcwd for r in recs),
        "%s ran in QEMU's working directory %s" % (what, qcwd), "records: %s\n%s" % (recs, why))
    tap(bool(recs) and all(r[3] == r[4] == str(NOFILE) and r[1] == uid for r in recs),
        "%s ran with QEMU's RLIMIT_NOFILE (%d), as QEMU's user" % (what, NOFILE),
        "records: %s\n%s" % (recs, why))
    tap(bool(recs) and all(secret_file not in r[7] for r in recs),
        "%s holds no fd root's cprx-qmp was given" % what, "records: %s\n%s" % (recs, why))


def case_preflight(d, rec, out, secret):
    qcwd = os.path.join(d, "qcwd")
    sock = os.path.join(d, "run", "c.sock")
    p = start_qemu(rec, [privs.SERVER, sock, os.path.join(d, "run", "c.log")], qcwd)
    rc, o, e = run_root(secret, "update", "-s", sock, "--preflight-only", "--no-rescue",
                        "--timeout", "10")
    privs.stop(p)
    why = "exit %s\n%s%s" % (rc, o[-500:], e[-500:])
    check_records(records(out, "-version"), "-version", qcwd, secret, why)
    check_records(records(out, "-c"), "the trial instance", qcwd, secret, why)
    os.unlink(out)


def case_restart(d, rec, out, secret):
    """restart's QEMU (the recorder, which exits): what it ran with, and
    the lost VM's migration file, which the report says is kept."""
    qcwd = os.path.join(d, "qcwd")
    sock, state = os.path.join(d, "run", "r.sock"), os.path.join(d, "run", "r.state")
    p = start_qemu(rec, [privs.SERVER, sock, os.path.join(d, "run", "r.log")], qcwd)
    with open(state, "w") as f:
        f.write("the whole VM\n")  # as QEMU's migration would have
    os.chown(state, *privs.nobody())
    rc, o, e = run_root(secret, "restart", "-s", sock, "--state", state, "--timeout", "5")
    privs.stop(p)
    why = "exit %s\n%s%s" % (rc, o[-500:], e[-500:])
    check_records(records(out, "-c"), "restart's QEMU", qcwd, secret, why)
    tap(rc == 4 and "state: kept in " + state in o and os.path.exists(state),
        "restart's QEMU died: the VM lost, its migration file kept as the report says", why)
    os.unlink(out)


def rescue_once(d, rec, secret, tag, extra_env=None, stdin=None, hold=1):
    """An update whose new binary (@rec) dies, with the fake QEMU of the
    rescue: what the rescued one recorded (None if it did not run), and
    the run's words."""
    run_d = os.path.join(d, "run")
    sock, got = os.path.join(run_d, tag + ".sock"), os.path.join(run_d, tag + "-rescued.json")
    p = start_qemu(PY, [privs.RESCUE_FAKE, sock, os.path.join(run_d, tag + ".log"),
                        PY, os.path.join(run_d, tag + ".out"),
                        "-object", "memory-backend-memfd,id=ram0,size=1M,share=on"],
                   os.path.join(d, "qcwd"), record=got, extra_env=extra_env)
    rc, o, e = run_root(secret, "update", "-s", sock, "-b", rec, "--no-trial", "--state",
                        os.path.join(run_d, tag + ".state"), "--timeout", "10", stdin=stdin,
                        hold=hold)
    p.wait()
    try:
        with open(got) as f:
            r = json.load(f)
    except (OSError, ValueError):
        r = None
    return r, "rescued QEMU: %s\nexit %s\n%s%s" % (r, rc, o[-600:], e[-400:])


def case_rescue(d, rec, secret):
    r, why = rescue_once(d, rec, secret, "x")
    tap(r is not None, "the fake QEMU died and the rescue started it again", why)
    tap(r is not None and secret not in r["fds"].values(),
        "the rescued QEMU holds no fd root's cprx-qmp was given", why)
    tap(r is not None and r["nofile"] == [NOFILE, NOFILE],
        "the rescued QEMU runs with QEMU's RLIMIT_NOFILE (%d)" % NOFILE, why)


def case_rescue_stdio(d, rec, secret):
    """QEMU closed its fds 0-2 (nothing of it to hand on); root's
    cprx-qmp runs with a root-only file as stdin, as a caller's redirect
    or a terminal would be: the rescued QEMU, QEMU's user's, must not get
    it in their place."""
    with open(secret) as stdin:
        r, why = rescue_once(d, rec, secret, "n", {"FAKE_NO_STDIO": "1"}, stdin)
    tap(r is not None and secret not in r["fds"].values(),
        "the rescued QEMU of a QEMU without stdio holds no stdio of root's", why)


def case_rescue_high_fds(d, rec, secret):
    """root's cprx-qmp started with some 200 fds open: what it keeps for
    the rescue (QEMU's binary, namespace, root, cwd, the migration file,
    the RAM) has numbers where the rescued QEMU's fds go (199 up).  Each
    must reach the rescued QEMU as itself, not as the RAM put there."""
    r, why = rescue_once(d, rec, secret, "h", hold=190)
    tap(r is not None and any(v.startswith("/memfd:ram0") for v in r["fds"].values()),
        "with 190 fds of root's open, the rescued QEMU ran, its RAM on its fd", why)


def case_hang(d, where):
    qcwd = os.path.join(d, "qcwd")
    sock = os.path.join(d, "run", "h-%s.sock" % where)
    script = os.path.join(d, "bin", "hang-" + where)
    pids = os.path.join(d, "run", "hang.pids")
    privs.script(script, HANG % (where, pids, pids))
    p = start_qemu(script, [privs.SERVER, sock, os.path.join(d, "run", "h-%s.log" % where)],
                   qcwd)
    t0 = time.time()
    rc, o, e = run_root(os.devnull, "update", "-s", sock, "--preflight-only", "--no-rescue",
                        "--timeout", "5", timeout=90)
    took = time.time() - t0
    privs.stop(p)
    for pid in open(pids).read().split() if os.path.exists(pids) else []:
        try:
            os.kill(int(pid), 9)
        except ProcessLookupError:
            pass
    what = "-version" if where == "version" else "the trial instance"
    tap(rc == 2 and took < 40, "%s that never ends: refused at --timeout (5 s)" % what,
        "exit %s after %.0f s\n%s%s" % (rc, took, o[-500:], e[-300:]))


# The new binary: -version prints, leaves a process of a session of its
# own holding its stdout, and exits.
ESCAPE = r"""#!/bin/sh
if [ "$1" = -version ]; then
    echo $$ > %s
    setsid sleep 300 &
    echo $! > %s
    echo "QEMU emulator version 11.1.3 (probe)"
    exit 0
fi
exit 1
"""

# In a PID namespace of its own (ns_last_pid is then the test's): a fake
# QEMU whose new binary is ESCAPE; once that -version has exited and been
# reaped, a process of root's is made to get its number as its process
# group; cprx-qmp times out waiting for the -version's output.  Prints
# whether that process lived through it.  argv: DIR QCWD TESTS_DIR
INNER = r"""
import os, subprocess, sys, time
sys.path.insert(0, sys.argv[3])
import test_qmp_confine as t
privs = t.privs
d, qcwd = sys.argv[1:3]
run_d = os.path.join(d, "run")
pidf, gcf = os.path.join(run_d, "esc.pid"), os.path.join(run_d, "esc.gc")
esc = privs.script(os.path.join(d, "bin", "escape"), t.ESCAPE % (pidf, gcf))
sock, log = os.path.join(run_d, "e.sock"), os.path.join(run_d, "e.log")
q = t.start_qemu(esc, [privs.SERVER, sock, log], qcwd)
u = subprocess.Popen([t.QMP, "update", "-s", sock, "--preflight-only", "--no-rescue",
                      "--timeout", "6"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
pid = int(privs.wait_file(pidf))
for _ in range(500):
    if not os.path.exists("/proc/%d" % pid):
        break
    time.sleep(0.01)
victim = None
for _ in range(20):
    with open("/proc/sys/kernel/ns_last_pid", "w") as f:
        f.write(str(pid - 1))
    victim = subprocess.Popen(["sleep", "300"], start_new_session=True)
    if victim.pid == pid:
        break
    victim.kill()
    victim.wait()
    victim = None
u.wait()
verdict = "nopid" if victim is None else "alive" if victim.poll() is None else "killed"
print(verdict, u.returncode)
for p in (victim, q):
    if p:
        p.kill()
        p.wait()
try:
    os.kill(int(privs.wait_file(gcf)), 9)
except (OSError, ValueError):
    pass
"""


def case_reused_group(d):
    """cprx-qmp kills a -version that overran with its process group, by
    number: once that -version has exited (its output held by a process
    that left its group) and been reaped, the number may be another
    process's group, root's even, which must not be killed."""
    if not shutil.which("unshare"):
        skip("no unshare(1) for a PID namespace")
        return
    try:
        r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", PY, "-c", INNER,
                            d, os.path.join(d, "qcwd"),
                            os.path.dirname(os.path.abspath(__file__))], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=90)
        out, err = r.stdout.strip(), r.stderr[-600:]
    except subprocess.TimeoutExpired:
        out, err = "", "timed out"
    tap(out.startswith("alive"), "the kill at --timeout spared a process group that took "
        "the number of the -version that had exited", "inner: %r\n%s" % (out, err))


# The new binary as a root QEMU's: records its bounding and effective
# capability sets (hex), one line a run.
CAPS = r"""#!/bin/sh
echo "$1|$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)|$(sed -n 's/^CapEff:[[:space:]]*//p' /proc/self/status)" >> %s
[ "$1" = -version ] && echo "QEMU emulator version 11.1.3 (probe)" && exit 0
exit 1
"""
CAP_SYS_ADMIN, CAP_SYS_PTRACE = 21, 19


def drop_bounding():
    """In a root fake QEMU: CAP_SYS_ADMIN and CAP_SYS_PTRACE out of its
    bounding set, as a root QEMU confined by its manager has them."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_SYS_ADMIN, CAP_SYS_PTRACE):
        if libc.prctl(24, cap, 0, 0, 0):  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")


def case_root_caps(d):
    """A QEMU run as root without CAP_SYS_ADMIN in its bounding set: what
    cprx-qmp starts for it must not have it either (its own exec would
    not get it back), or a QEMU that rewrote its argv gets it from us."""
    out = os.path.join(d, "run", "caps.out")
    caps = privs.script(os.path.join(d, "bin", "caps"), CAPS % out)
    sock, log = os.path.join(d, "run", "k.sock"), os.path.join(d, "run", "k.log")
    p = subprocess.Popen([caps, "-c", privs.SERVER, sock, log], executable=PY,
                         cwd=d, preexec_fn=drop_bounding)
    privs.wait_file(log + ".pid")
    rc, o, e = run_root(os.devnull, "update", "-s", sock, "--preflight-only",
                        "--no-rescue", "--timeout", "10")
    privs.stop(p)
    try:
        with open(out) as f:
            recs = [l.rstrip("\n").split("|") for l in f if l.count("|") == 2]
    except FileNotFoundError:
        recs = []
    lost = (1 << CAP_SYS_ADMIN) | (1 << CAP_SYS_PTRACE)
    tap(len(recs) >= 2 and all(not int(r[1], 16) & lost and not int(r[2], 16) & lost
                               for r in recs),
        "-version and the trial of a root QEMU without CAP_SYS_ADMIN in its bounding "
        "set ran without it", "records (arg|CapBnd|CapEff): %s\nexit %s\n%s%s"
        % (recs, rc, o[-400:], e[-300:]))


def case_relative_state(d):
    """QEMU in a root its user owns, its cwd /, with a link st -> an
    absolute path: QEMU's st/x.state is in its root, not in ours."""
    privs.case_link_out(d, "relroot", "st", "st/x.state", "a link on a relative --state",
                        "a relative --state that leads out of QEMU's root")


def main():
    d = privs.begin("confine", 24, (("run", 0o1777), ("bin", 0o755), ("qcwd", 0o755)))
    if d is None:
        return 0
    os.chown(os.path.join(d, "qcwd"), *privs.nobody())
    secret = os.path.join(d, "root-secret")
    with open(secret, "w") as f:
        f.write("root only\n")
    os.chmod(secret, 0o600)
    out = os.path.join(d, "run", "rec.out")
    rec = privs.script(os.path.join(d, "bin", "recorder"), RECORDER % out)
    try:
        case_preflight(d, rec, out, secret)
        case_restart(d, rec, out, secret)
        case_rescue(d, rec, secret)
        case_rescue_stdio(d, rec, secret)
        case_rescue_high_fds(d, rec, secret)
        case_hang(d, "version")
        case_hang(d, "trial")
        case_reused_group(d)
        case_relative_state(d)
        case_root_caps(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 0 if passed() else 1


if __name__ == "__main__":
    sys.exit(main())
