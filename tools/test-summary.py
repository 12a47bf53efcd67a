#!/usr/bin/env python3
"""Counts the TAP subtests of meson test logs: 'N passed, N failed, N skipped'.

Exits 1 when a test skipped (wholly or in part) that .ci/skip-allowed does
not name: a skipped test is an untested part, and CI must say so.
"""
import json
import os
import re
import sys


def allowed_skips():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "..", ".ci", "skip-allowed")
    with open(path) as f:
        return {l.strip() for l in f if l.strip() and not l.startswith("#")}


def subtest_name(line):
    """'ok 7 preflight_x # SKIP why' -> 'preflight_x'."""
    m = re.match(r"ok \d+ (?:- )?([^#]*?)\s*#", line)
    return m.group(1) if m else ""


def main(log):
    allowed = allowed_skips()
    passed = failed = skipped = 0
    unallowed = []
    for line in open(log):
        t = json.loads(line)
        subtests = [l for l in t["stdout"].splitlines()
                    if re.match(r"(not )?ok \d+", l)]
        if not subtests:    # a plain exit-code test
            subtests = ["ok" if t["result"] == "OK" else
                        "ok # SKIP" if t["result"] == "SKIP" else "not ok"]
        skips = [l for l in subtests
                 if not l.startswith("not ok") and "# SKIP" in l]
        for l in subtests:
            if l.startswith("not ok"):
                failed += 1
            elif "# SKIP" in l:
                skipped += 1
            else:
                passed += 1
        if t["result"] not in ("OK", "SKIP", "EXPECTEDFAIL") and \
                not any(l.startswith("not ok") for l in subtests):
            failed += 1     # crashed or timed out outside any subtest
        name = t["name"].split(" / ")[-1]   # "cprx:host / kmod-abi"
        if name in allowed:
            continue
        # "NAME SUBTEST" allows that subtest alone to skip
        bad = [l for l in skips
               if "%s %s" % (name, subtest_name(l)) not in allowed]
        if bad or (t["result"] == "SKIP" and not skips):
            unallowed.append("%s: %s" % (name, (bad or ["SKIP"])[0]))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    for u in unallowed:
        print("SKIP not allowed (.ci/skip-allowed): " + u)
    return 1 if unallowed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
