#!/usr/bin/env python3
"""Real clients against smtpd under systemd-socket-activate --accept, in both
of systemd's modes: the connection on stdin/stdout (--inetd, as with
StandardInput=socket) and the connection as fd 3 (LISTEN_FDS=1)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import launch  # noqa: E402
import smtpdtest  # noqa: E402

tests = []
for mode, inetd in (("--inetd", True), ("fd 3", False)):
    for name, fn in launch.launcher_suite(lambda box, i=inetd: launch.socket_activate(box, i)):
        tests.append(("%s: %s" % (mode, name), fn))
smtpdtest.main(tests)
