#!/usr/bin/env python3
"""proxy-protocol with the real thing: HAProxy (mode tcp, send-proxy and
send-proxy-v2, option smtpchk) in front of smtpd under tcpserver and under
systemd-socket-activate (stdin/stdout and fd 3). The client connects from
127.0.0.2, HAProxy from 127.0.0.1: the stored Received names 127.0.0.2, the
log lines carry peer=127.0.0.2 proxy=127.0.0.1, and HAProxy's SMTP health
checks bring the server up and leave only their ordinary session lines.
Then, without HAProxy: a connection with no header, from outside
proxy-from, with a header of the excluded version, is closed without a
reply and one log line; bytes after the header are kept; a second header is
a bad command; LOCAL, UNKNOWN and AF_UNIX keep the connection's peer; a stop
ends the wait for the header.

The log lines are read from a journal socket the test owns, in a private
mount namespace (tests/logsink.py); root only, like tests/e2e/journal.py."""
import os
import platform
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import logsink  # noqa: E402

logsink.private_namespace(__file__)

import haproxy  # noqa: E402
import launch  # noqa: E402
from logsink import JOURNAL_ENV, by_process, events  # noqa: E402
from smtpdtest import SMTPD, Box, Failed, check, main, read_all, wait  # noqa: E402

SINK = logsink.JournalSink()
LIMIT = 20.0
PPOLL = {"x86_64": 271, "aarch64": 73}.get(platform.machine())


def proxy_box(mode="any", extra=""):
    return Box(extra="proxy-protocol %s\nproxy-from %s\n%s" % (mode, haproxy.BALANCER, extra),
               timeout=5)


def received(box):
    msgs = box.messages()
    check(len(msgs) == 1, "%d messages delivered" % len(msgs))
    m = re.search(rb"Received: (from [^\n]*)\n", msgs[0])
    check(m is not None, "no Received line: %r" % msgs[0][:200])
    return m.group(1).decode()


def start(kind, box, mode):
    """smtpd under a launcher, ready, its readiness probe's lines all read."""
    mark = SINK.mark()
    if kind == "tcpserver":
        server = haproxy.tcpserver(box.config, mode, env=JOURNAL_ENV)
    else:
        server = haproxy.socket_activate(box.config, mode, kind == "--inetd", env=JOURNAL_ENV)

    def probe_ended(es):
        probes = {e.get("_PID") for e in events(es, "connect")
                  if e.get("SMTPD_PROXY") in ("UNKNOWN", "LOCAL")}
        return any(e.get("_PID") in probes for e in events(es, "disconnect"))
    SINK.wait_for(probe_ended, mark)
    return server


# ---- through HAProxy ---------------------------------------------------------

def check_sessions(entries, version):
    """The health checks' own sessions: ordinary, nothing refused or in error."""
    checks = 0
    want = "LOCAL" if version == "v2" else haproxy.BALANCER	# v1: HAProxy's own TCP4 line
    for pid, lines in by_process(entries).items():
        first = lines[0]
        if first.get("SMTPD_PEER") == haproxy.CLIENT:
            continue	# the client's session
        check([e.get("SMTPD_EVENT") for e in lines] == ["connect", "disconnect"],
              "check session %s logged %r" % (pid, [e.get("MESSAGE") for e in lines]))
        check(first.get("SMTPD_PEER") == haproxy.BALANCER and first.get("SMTPD_PROXY") == want,
              "check session connect line %r" % first.get("MESSAGE"))
        check(lines[1].get("SMTPD_REASON") == "quit", "check ended %r" % lines[1].get("MESSAGE"))
        checks += 1
    check(checks >= 1, "no health check session in the log")
    return checks


def through_haproxy(kind, version):
    box = proxy_box(version)
    server = start(kind, box, version)
    balancer = None
    try:
        mark = SINK.mark()
        # A lone server's first check starts at once; the next would come a
        # minute later, so none is cut short when HAProxy is stopped.
        balancer = haproxy.HAProxy([("127.0.0.1", server.port)], send_proxy=version,
                                   check="smtpchk", inter_ms=60000)
        row = balancer.wait_check("s1", "L7OK")
        check(row["status"] == "UP", "HAProxy says the server is %s" % row["status"])
        with smtplib.SMTP("127.0.0.1", balancer.port, local_hostname=launch.HELO,
                          timeout=LIMIT, source_address=(haproxy.CLIENT, 0)) as s:
            refused = s.sendmail("p@client.example", ["a@example.org"],
                                 b"Subject: through HAProxy\r\n\r\nhi\r\n")
            check(refused == {}, "refused %r" % refused)
        got = SINK.wait_for(lambda es: any(e.get("SMTPD_PEER") == haproxy.CLIENT and
                                           e.get("SMTPD_EVENT") == "disconnect" for e in es),
                            mark)
        balancer.stop()
        balancer = None
    finally:
        if balancer is not None:
            balancer.stop()
        server.stop()
    try:
        got = SINK.entries_since(mark)	# every check session has ended now
        check(received(box) == "from %s ([%s])" % (launch.HELO, haproxy.CLIENT),
              "Received %r" % received(box))
        delivered = events(got, "delivered")
        check(len(delivered) == 1, "delivered lines: %r" % [e.get("MESSAGE") for e in delivered])
        for e in delivered + [e for e in events(got, "connect")
                              if e.get("SMTPD_PEER") == haproxy.CLIENT]:
            check(e.get("SMTPD_PEER") == haproxy.CLIENT and
                  e.get("SMTPD_PROXY") == haproxy.BALANCER, "log line %r" % e.get("MESSAGE"))
        bad = [e.get("MESSAGE") for e in got if e.get("PRIORITY") != "6" or
               e.get("SMTPD_EVENT") in ("refused", "proxy-refused")]
        check(bad == [], "errors or refusals in the log: %r" % bad)
        n = check_sessions(got, version)
        print("     %s %s: %d health checks, each one session of connect and disconnect"
              % (kind, version, n))
    finally:
        box.close()


def excluded_version():
    """send-proxy-v2 into proxy-protocol v1: HAProxy's check fails, nothing is said."""
    box = proxy_box("v1")
    server = start("tcpserver", box, "v1")
    try:
        mark = SINK.mark()
        balancer = haproxy.HAProxy([("127.0.0.1", server.port)], send_proxy="v2",
                                   check="smtpchk", inter_ms=60000)
        try:
            row = balancer.wait_down("s1")
            print("     HAProxy: %s, check %s" % (row["status"], row["check_status"]))
        finally:
            balancer.stop()
        got = SINK.wait_for(lambda es: events(es, "proxy-refused"), mark)
    finally:
        server.stop()
        box.close()
    refusals = events(got, "proxy-refused")
    check(len(refusals) == 1 and
          refusals[0].get("SMTPD_REASON") == "a v2 header where only v1 is accepted",
          "refusals %r" % [e.get("MESSAGE") for e in refusals])
    check(events(got, "connect") == [], "a session started")


# ---- straight to smtpd ---------------------------------------------------------

def direct(box, source, data, shut=True, limit=LIMIT):
    """Connect from source to a tcpserver'd smtpd (proxy-protocol any), send
    data, read to EOF."""
    server = start("tcpserver", box, "any")
    try:
        mark = SINK.mark()
        with socket.create_connection(("127.0.0.1", server.port), timeout=limit,
                                      source_address=(source, 0)) as c:
            try:
                c.sendall(data)
                if shut:
                    c.shutdown(socket.SHUT_WR)
            except OSError:
                pass	# smtpd may rightly have gone already
            try:
                out = read_all(c, limit)
            except OSError:
                out = b""
    finally:
        server.stop()
    return out, mark


def refused_without_reply(source, data, reason, mode="any"):
    box = proxy_box(mode)
    try:
        out, mark = direct(box, source, data, shut=False)
        check(out == b"", "smtpd said %r" % out[:200])
        got = SINK.wait_for(lambda es: events(es, "proxy-refused"), mark)
        r = events(got, "proxy-refused")
        check(len(r) == 1 and r[0].get("SMTPD_REASON") == reason and
              r[0].get("SMTPD_PEER") == source, "log %r" % [e.get("MESSAGE") for e in got])
        check(len(by_process(got)[r[0].get("_PID")]) == 1, "more than one line")
        check(events(got, "connect") == [], "a session started: %r" % got)
    finally:
        box.close()


def waits_then_closes():
    """A client that waits for a greeting (as real ones do) gets none: at the
    header's deadline smtpd closes without a word."""
    refused_without_reply(haproxy.BALANCER, b"", "no complete header in time")


SESSION = (b"EHLO c.example\r\nMAIL FROM:<p@client.example>\r\nRCPT TO:<a@example.org>\r\n"
           b"DATA\r\nSubject: pipelined\r\n\r\nhi\r\n.\r\n")


def pipelined_after_header(header, want_from, want_proxy):
    """Header and a whole pipelined session in one write: nothing is lost."""
    box = proxy_box()
    try:
        data = header + SESSION + b"PROXY TCP4 192.0.2.66 127.0.0.1 1 25\r\nQUIT\r\n"
        out, mark = direct(box, haproxy.BALANCER, data)
        codes = [line[:3] for line in out.split(b"\r\n") if line[3:4] == b" "]
        check(codes == [b"220", b"250", b"250", b"250", b"354", b"250", b"500", b"221"],
              "replies %r" % out)
        check(b"500 5.5.2 Command not recognized" in out, "second header: %r" % out)
        check(received(box) == "from c.example (%s)" % want_from, "Received %r" % received(box))
        got = SINK.wait_for(lambda es: events(es, "disconnect"), mark)
        lines = [e.get("SMTPD_EVENT") for e in got]
        check(lines == ["connect", "refused", "delivered", "disconnect"] or
              lines == ["connect", "delivered", "refused", "disconnect"], "log %r" % lines)
        for e in events(got, "connect") + events(got, "delivered"):
            check(e.get("SMTPD_PROXY") == want_proxy, "log line %r" % e.get("MESSAGE"))
    finally:
        box.close()


def stop_ends_the_wait():
    """SIGTERM while smtpd waits for the header ends it at once: exit 1 with
    the reason logged, or death by the signal; never the 5 s deadline."""
    if PPOLL is None:
        print("     skipped: no ppoll number known for %s" % platform.machine())
        return
    box = proxy_box()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    c = socket.create_connection(lsock.getsockname(), timeout=LIMIT)
    conn, _ = lsock.accept()
    lsock.close()
    env = dict(os.environ, **JOURNAL_ENV)
    p = subprocess.Popen([SMTPD, "-c", box.config], stdin=conn, stdout=conn,
                         stderr=subprocess.DEVNULL, env=env)
    conn.close()
    try:
        mark = SINK.mark()
        end = time.monotonic() + LIMIT	# bounded: until smtpd sits in ppoll
        while time.monotonic() < end:
            try:
                with open("/proc/%d/syscall" % p.pid) as f:
                    if f.read().split(" ", 1)[0] == str(PPOLL):
                        break
            except OSError:
                pass
            time.sleep(0.01)
        else:
            raise Failed("smtpd never waited for the header")
        p.send_signal(signal.SIGTERM)
        status = wait(p, LIMIT)
        check(status in (1, -signal.SIGTERM), "exit status %d" % status)
        if status == 1:
            got = SINK.wait_for(lambda es: events(es, "proxy-refused"), mark)
            r = events(got, "proxy-refused")
            check(len(r) == 1 and r[0].get("SMTPD_REASON") == "interrupted by a signal",
                  "log %r" % [e.get("MESSAGE") for e in got])
        check(read_all(c, LIMIT) == b"", "smtpd said something")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        c.close()
        box.close()


TESTS = []
for _kind in ("tcpserver", "--inetd", "fd 3"):
    for _v in ("v1", "v2"):
        TESTS.append(("HAProxy send-proxy%s, smtpd under %s"
                      % ("-v2" if _v == "v2" else "", "systemd-socket-activate " + _kind
                         if _kind != "tcpserver" else _kind),
                      lambda k=_kind, v=_v: through_haproxy(k, v)))
TESTS += [
    ("HAProxy send-proxy-v2 into proxy-protocol v1: refused, no session", excluded_version),
    ("no header, client waits: closed without a reply at the deadline", waits_then_closes),
    ("no header, client speaks first: closed without a reply",
     lambda: refused_without_reply(haproxy.BALANCER, b"EHLO c.example\r\n",
                                   "not a PROXY header")),
    ("not in proxy-from: closed without a reply, header or not",
     lambda: refused_without_reply(haproxy.CLIENT, haproxy.v1_header("192.0.2.7", "127.0.0.1",
                                                                    4000, 25) + SESSION,
                                   "not in proxy-from")),
    ("a malformed header: closed without a reply",
     lambda: refused_without_reply(haproxy.BALANCER, b"PROXY TCP4 192.0.2.7 127.0.0.1 4000\r\n",
                                   "v1: not four single-spaced fields after the protocol")),
    ("v1 TCP4 and a pipelined session in one write; a second header is a 500",
     lambda: pipelined_after_header(haproxy.v1_header("192.0.2.7", "127.0.0.1", 4000, 25),
                                    "[192.0.2.7]", haproxy.BALANCER)),
    ("v2 TCP6 names an IPv6 client",
     lambda: pipelined_after_header(haproxy.v2_header(family=0x21, src="2001:db8::5", dst="::1"),
                                    "[IPv6:2001:db8::5]", haproxy.BALANCER)),
    ("v1 UNKNOWN keeps the connection's peer",
     lambda: pipelined_after_header(b"PROXY UNKNOWN ignored words\r\n", "[127.0.0.1]",
                                    "UNKNOWN")),
    ("v2 LOCAL keeps the connection's peer",
     lambda: pipelined_after_header(haproxy.v2_header(command=0, family=0, block=b""),
                                    "[127.0.0.1]", "LOCAL")),
    ("v2 AF_UNIX keeps the connection's peer",
     lambda: pipelined_after_header(haproxy.v2_header(family=0x31, block=bytes(216)),
                                    "[127.0.0.1]", "UNIX-STREAM")),
    ("SIGTERM ends the wait for the header", stop_ends_the_wait),
]
main(TESTS)
