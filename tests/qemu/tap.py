"""TAP lines for the Python tests of tests/qemu: a result a call, numbered
in order; a failure's reason follows as comments (its last @keep lines)."""
import sys

results = []


def tap(ok, name, why="", keep=12):
    results.append(bool(ok))
    print("%s %d - %s" % ("ok" if ok else "not ok", len(results), name))
    if not ok and why:
        for line in str(why).splitlines()[-keep:]:
            print("# " + line)
    sys.stdout.flush()


def skip(why, name=None):
    results.append(True)
    print("ok %d%s # SKIP %s" % (len(results), " - " + name if name else "", why))
    sys.stdout.flush()


def passed():
    return all(results)
