#!/usr/bin/env python3
"""RFC 2920 3.2: replies are held and written when smtpd would otherwise wait,
so a pipelined group gets all its replies in one write, in order.

smtpd runs under strace on one end of a socketpair; we count its writes to
the connection. Greeting, EHLO, then MAIL+RCPT+RCPT+DATA in one send, then
the message, the dot and QUIT in one send: four writes, no more.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

SMTPD = os.path.abspath(os.environ.get("SMTPD", "./smtpd"))


def read_until(c, end):
    data = b""
    while not data.endswith(end):
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_reply(c):
    """One whole reply, however many lines: up to the line "DDD text"."""
    data = b""
    while not re.search(rb"(^|\r\n)\d{3} [^\r\n]*\r\n$", data):
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def main():
    d = tempfile.mkdtemp(prefix="smtpd-writes.")
    trace = os.path.join(d, "trace")
    ours, theirs = socket.socketpair()
    ours.settimeout(60)	# a guard against a hang: strace slows smtpd down
    p = subprocess.Popen(["strace", "-qq", "-o", trace, "-e", "trace=write,sendto,sendmsg",
                          SMTPD, "-m", os.path.join(d, "Maildir"), "-h", "mx.example"],
                         stdin=theirs, stdout=theirs, stderr=subprocess.DEVNULL)
    theirs.close()
    try:
        got = read_until(ours, b"ESMTP\r\n")
        ours.sendall(b"EHLO c.example\r\n")
        got += read_reply(ours)
        ours.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
                     b"RCPT TO:<c@example.org>\r\nDATA\r\n")
        group = read_until(ours, b"<CR><LF>.<CR><LF>\r\n")
        ours.sendall(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        end = read_until(ours, b"Bye\r\n")
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    with open(trace) as f:
        writes = [l for l in f if re.match(r"(write|sendto|sendmsg)\(([01]),", l)]
    shutil.rmtree(d, ignore_errors=True)
    problems = []
    if group != (b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
                 b"354 End data with <CR><LF>.<CR><LF>\r\n"):
        problems.append("group replies: %r" % group)
    if not re.fullmatch(rb"250 2\.0\.0 \S+\r\n221 2\.0\.0 Bye\r\n", end):
        problems.append("end replies: %r" % end)
    if len(writes) != 4:
        problems.append("%d writes to the client, want 4: %r" % (len(writes), writes))
    for p_ in problems:
        print("FAIL", p_)
    print("pipelining writes: %d passed, %d failed" % (0 if problems else 1, 1 if problems else 0))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
