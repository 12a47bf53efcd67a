#!/usr/bin/env python3
"""The same cpr-exec as cprx-qmp update, driven the way one would by hand:
raw QMP commands, no preflight.  The benchmark's reference for cprx-qmp's
own overhead.

    by-hand.py QMP_SOCKET STATE_FILE JSON_FILE

JSON_FILE is a report of cprx-qmp (its "new_argv" is the command line to
exec).  Prints {"pause_ms": ...} (STOP->RESUME from QEMU's event
timestamps) as JSON.
"""
import json
import socket
import sys
import time


def connect(path, deadline):
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return s.makefile("rw")
        except OSError:
            s.close()
            if time.time() > deadline:
                raise
            time.sleep(0.001)   # as cprx-qmp polls


def command(f, events, name, **args):
    f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
    f.flush()
    for msg in messages(f):
        if "event" in msg:
            events.append(msg)
        elif "return" in msg or "error" in msg:
            return msg
    return None     # the socket closed: QEMU exec'd


def messages(f):
    """Until the socket closes (a reset, too: exec drops unread input)."""
    try:
        for line in f:
            yield json.loads(line)
    except ConnectionResetError:
        return


def greet(f, events):
    json.loads(f.readline())
    command(f, events, "qmp_capabilities")


def stamp(ev):
    return ev["timestamp"]["seconds"] * 1e6 + ev["timestamp"]["microseconds"]


def main():
    sock, state, report = sys.argv[1:4]
    argv = json.load(open(report))["new_argv"]
    deadline = time.time() + 120
    events = []
    f = connect(sock, deadline)
    greet(f, events)
    command(f, events, "migrate-set-parameters", mode="cpr-exec",
            **{"cpr-exec-command": argv})
    r = command(f, events, "migrate", uri="file:" + state)
    if r and "error" in r:
        sys.exit("migrate: " + r["error"]["desc"])
    events.extend(messages(f))     # until the old QEMU's socket closes
    while True:     # the old listener may still take a connection, then go
        f = connect(sock, deadline)
        try:
            greet(f, events)
            break
        except (OSError, ValueError):
            if time.time() > deadline:
                raise
            time.sleep(0.001)
    while not any(e.get("event") == "RESUME" for e in events):
        r = command(f, events, "query-status")
        if r["return"]["status"] == "running" and \
                not any(e.get("event") == "RESUME" for e in events):
            # As cprx-qmp does: the sample has no pause, only a bound.
            print(json.dumps({"resume_event_missed": True}))
            return
    stop = next(e for e in events if e.get("event") == "STOP")
    resume = next(e for e in events if e.get("event") == "RESUME")
    print(json.dumps({"pause_ms": (stamp(resume) - stamp(stop)) / 1000}))


main()
