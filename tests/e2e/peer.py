#!/usr/bin/env python3
"""Peer identity in the Received line: getpeername() on the connection for
IPv4, IPv6 and IPv4-mapped IPv6; REMOTE_ADDR and TCPREMOTEIP when the
connection is no socket; a plain pipe is local (no address literal)."""
import os
import re
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import launch  # noqa: E402
from smtpdtest import Box, check, main, run_pipe  # noqa: E402

SESSION = (b"EHLO client.example\r\nMAIL FROM:<p@client.example>\r\n"
           b"RCPT TO:<a@example.org>\r\nDATA\r\nSubject: peer\r\n\r\nhi\r\n.\r\nQUIT\r\n")


def from_clause(box):
    msgs = box.messages()
    check(len(msgs) == 1, "%d messages delivered" % len(msgs))
    m = re.search(rb"Received: (from [^\n]*)\n", msgs[0])
    check(m is not None, "no Received line")
    return m.group(1).decode()


def over_tcp(host, family, listen, expect, env=None):
    box = Box()
    try:
        def make(port):
            where = "[%s]:%d" % (listen, port) if ":" in listen else "%s:%d" % (listen, port)
            argv = ["systemd-socket-activate", "-l", where, "--accept", "--inetd"]
            for k, v in (env or {}).items():
                argv += ["-E", "%s=%s" % (k, v)]
            return argv + [launch.SMTPD, "-c", box.config], None
        server = launch.Launcher(make, host=host, family=family)
        try:
            launch.send_smtplib(server.port, "p@client.example", ["a@example.org"],
                                b"Subject: peer\r\n\r\nhi\r\n", host=host)
        finally:
            server.stop()
        got = from_clause(box)
        check(got == "from client.example (%s)" % expect, "got %r, want %s" % (got, expect))
    finally:
        box.close()


def over_pipe(env, expect):
    box = Box()
    try:
        full = {k: v for k, v in os.environ.items()
                if k not in ("REMOTE_ADDR", "TCPREMOTEIP")}
        full.update(env)
        out, status, _ = run_pipe(box, SESSION, env=full)
        check(status == 0 and b"221 " in out, "session failed: %r" % out[-300:])
        got = from_clause(box)
        want = "from client.example" + (" (%s)" % expect if expect else "")
        check(got == want, "env %r: got %r, want %r" % (env, got, want))
    finally:
        box.close()


main([
    ("IPv4 over TCP", lambda: over_tcp("127.0.0.1", socket.AF_INET, "127.0.0.1", "[127.0.0.1]")),
    ("IPv6 over TCP", lambda: over_tcp("::1", socket.AF_INET6, "::1", "[IPv6:::1]")),
    ("IPv4-mapped IPv6 shown as IPv4",
     lambda: over_tcp("127.0.0.1", socket.AF_INET, "::ffff:127.0.0.1", "[127.0.0.1]")),
    ("the socket wins over REMOTE_ADDR",
     lambda: over_tcp("127.0.0.1", socket.AF_INET, "127.0.0.1", "[127.0.0.1]",
                      {"REMOTE_ADDR": "192.0.2.99"})),
    ("pipe without environment is local", lambda: over_pipe({}, None)),
    ("pipe with REMOTE_ADDR", lambda: over_pipe({"REMOTE_ADDR": "192.0.2.7"}, "[192.0.2.7]")),
    ("pipe with TCPREMOTEIP IPv6",
     lambda: over_pipe({"TCPREMOTEIP": "2001:db8::5"}, "[IPv6:2001:db8::5]")),
    ("pipe with mapped REMOTE_ADDR",
     lambda: over_pipe({"REMOTE_ADDR": "::FFFF:192.0.2.9"}, "[192.0.2.9]")),
    ("bad REMOTE_ADDR falls through to TCPREMOTEIP",
     lambda: over_pipe({"REMOTE_ADDR": "unknown", "TCPREMOTEIP": "192.0.2.10"}, "[192.0.2.10]")),
    ("bad addresses only: local",
     lambda: over_pipe({"REMOTE_ADDR": "host.example", "TCPREMOTEIP": "1.2.3.4.5"}, None)),
])
