#!/usr/bin/env python3
"""RFC 3030 4.2 and RFC 2920 3.2: BDAT commands may be pipelined, and their
replies are held and written when smtpd would otherwise wait.

smtpd runs under strace on one end of a socketpair; we count its writes to
the connection. Greeting, EHLO, then in one send: a message in two chunks,
a chunk refused for want of MAIL (holding QUIT), a second message in one
chunk. Then QUIT. Four writes: the group's eight replies all in the third,
in order, and two messages delivered.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

SMTPD = os.path.abspath(os.environ.get("SMTPD", "./smtpd"))
GROUP = (b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
         b"BDAT 10\r\nSubject: pBDAT 8 LAST\r\n\r\nbody\r\n"
         b"BDAT 6 LAST\r\nQUIT\r\n"
         b"MAIL FROM:<a@example.org>\r\nRCPT TO:<c@example.org>\r\nBDAT 4 LAST\r\ntwo\n")
WANT = (rb"250 2\.1\.0 Ok\r\n250 2\.1\.5 Ok\r\n250 2\.0\.0 10 octets received\r\n"
        rb"250 2\.0\.0 \S+Q1\r\n503 5\.5\.1 MAIL first\r\n"
        rb"250 2\.1\.0 Ok\r\n250 2\.1\.5 Ok\r\n250 2\.0\.0 \S+\r\n")


def read_lines(c, n):
    data = b""
    while data.count(b"\r\n") < n:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_until(c, pattern):
    data = b""
    while not re.search(pattern, data):
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def main():
    d = tempfile.mkdtemp(prefix="smtpd-bdat-writes.")
    trace = os.path.join(d, "trace")
    ours, theirs = socket.socketpair()
    ours.settimeout(10)
    p = subprocess.Popen(["strace", "-qq", "-o", trace, "-e", "trace=write,sendto,sendmsg",
                          SMTPD, "-m", os.path.join(d, "Maildir"), "-h", "mx.example"],
                         stdin=theirs, stdout=theirs, stderr=subprocess.DEVNULL)
    theirs.close()
    problems = []
    try:
        read_until(ours, rb"ESMTP\r\n$")
        ours.sendall(b"EHLO c.example\r\n")
        read_until(ours, rb"(^|\r\n)250 [^\r\n]*\r\n$")
        ours.sendall(GROUP)
        group = read_lines(ours, 8)
        if not re.fullmatch(WANT, group):
            problems.append("group replies: %r" % group)
        try:
            ours.sendall(b"QUIT\r\n")
        except OSError:
            pass	# gone already: the replies above say why
        end = read_until(ours, rb"Bye\r\n$")
        p.wait(timeout=60)
        if not problems and end != b"221 2.0.0 Bye\r\n":
            problems.append("end: %r" % end)
        with open(trace) as f:
            writes = [l for l in f if re.match(r"(write|sendto|sendmsg)\(([01]),", l)]
        if not problems and len(writes) != 4:
            problems.append("%d writes to the client, want 4: %r" % (len(writes), writes))
        if len(os.listdir(os.path.join(d, "Maildir", "new"))) != 2:
            problems.append("not two messages in new/")
    except (OSError, subprocess.TimeoutExpired) as e:
        problems.append("%s" % e)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        ours.close()
        shutil.rmtree(d, ignore_errors=True)
    for x in problems:
        print("FAIL", x)
    print("bdat pipelining: %d passed, %d failed" % (0 if problems else 1, 1 if problems else 0))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
