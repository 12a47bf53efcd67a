#!/usr/bin/env python3
"""One QMP command, for the VM tier's scripts (tests/vm/qemu-kmod-guest.sh).

    tests/vm/qmp.py SOCKET COMMAND ['{"arg": ...}']

Prints the command's "return" as JSON and exits 0; on a QMP error prints
its class and description on stderr and exits 1; 2 when QEMU cannot be
reached or closes the connection (after a "quit", that is success: exit 0).
"""
import json
import socket
import sys


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    path, cmd = sys.argv[1:3]
    args = json.loads(sys.argv[3]) if len(sys.argv) == 4 else {}
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(60)
        s.connect(path)
        f = s.makefile("rw")
        json.loads(f.readline())    # the greeting

        def execute(name, arguments):
            msg = {"execute": name}
            if arguments:
                msg["arguments"] = arguments
            f.write(json.dumps(msg) + "\n")
            f.flush()
            for line in f:
                reply = json.loads(line)
                if "return" in reply or "error" in reply:
                    return reply
            return None     # closed

        execute("qmp_capabilities", None)
        reply = execute(cmd, args)
    except (OSError, ValueError) as e:
        print("qmp.py: %s: %s" % (path, e), file=sys.stderr)
        sys.exit(2)
    if reply is None:
        if cmd == "quit":
            sys.exit(0)
        print("qmp.py: %s: connection closed" % path, file=sys.stderr)
        sys.exit(2)
    if "error" in reply:
        print("qmp.py: %s: %s: %s" % (cmd, reply["error"].get("class"),
                                      reply["error"].get("desc")), file=sys.stderr)
        sys.exit(1)
    print(json.dumps(reply["return"]))


if __name__ == "__main__":
    main()
