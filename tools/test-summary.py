#!/usr/bin/env python3
"""Counts the TAP subtests of a meson test log: 'N passed, N failed, N skipped'."""
import json
import re
import sys

passed = failed = skipped = 0
for line in open(sys.argv[1]):
    t = json.loads(line)
    subtests = [l for l in t["stdout"].splitlines()
                if re.match(r"(not )?ok \d+", l)]
    if not subtests:    # a plain exit-code test
        subtests = ["ok" if t["result"] == "OK" else
                    "ok # SKIP" if t["result"] == "SKIP" else "not ok"]
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
print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
