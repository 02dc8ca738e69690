#!/usr/bin/env python3
"""SIGTERM while smtpd waits to write to a client that stopped reading.

The client pipelines 14,000 NOOPs and a transaction up to half a message,
then never reads: smtpd's replies fill the socket and its flush waits with a
staged file open in tmp/. SIGTERM must end it at once (not after the
write timeout, when systemd would already have sent SIGKILL), with
nothing left in tmp/ or new/ and exit status 1. The write timeout is 600 s
and we wait at most 60 s: an end within that is the signal's doing, however
slow the machine.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from smtpdtest import proc_state  # noqa: E402

SMTPD = os.path.abspath(os.environ.get("SMTPD", "./smtpd"))


def main():
    d = tempfile.mkdtemp(prefix="smtpd-stopflush.")
    maildir = os.path.join(d, "Maildir")
    conf = os.path.join(d, "smtpd.conf")
    with open(conf, "w") as f:
        f.write("hostname mx.example\nmaildir %s\ntimeout 600\n" % maildir)
    ours, theirs = socket.socketpair()
    p = subprocess.Popen([SMTPD, "-c", conf], stdin=theirs, stdout=theirs,
                         stderr=subprocess.DEVNULL)
    theirs.close()
    problems = []
    try:
        data = (b"EHLO c.example\r\n" + b"NOOP\r\n" * 14000 +
                b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
                b"Subject: x\r\n\r\npartial\r\n")
        ours.setblocking(False)
        sent, start = 0, time.monotonic()
        while sent < len(data) and time.monotonic() - start < 60:
            try:
                sent += ours.send(data[sent:sent + 65536])
            except BlockingIOError:
                time.sleep(0.05)	# our buffer is full: smtpd reads at its pace
        # Wait (bounded, a guard only) until the message is staged and smtpd
        # sleeps: it is then blocked flushing the 354 to us.
        tmp = os.path.join(maildir, "tmp")
        staged = False
        while not staged and time.monotonic() - start < 60:
            st = proc_state(p.pid)
            staged = (os.path.isdir(tmp) and os.listdir(tmp) != [] and
                      st is not None and st[0] == "S")
            if not staged:
                time.sleep(0.01)
        if not staged:
            problems.append("the message was never staged (sent %d of %d)" % (sent, len(data)))
        p.send_signal(signal.SIGTERM)
        try:
            status = p.wait(timeout=60)
            if status != 1:
                problems.append("exit status %d, want 1" % status)
        except subprocess.TimeoutExpired:
            problems.append("still running 60 s after SIGTERM")
        for sub in ("tmp", "new"):
            path = os.path.join(maildir, sub)
            if os.path.isdir(path) and os.listdir(path):
                problems.append("%s/ holds %r" % (sub, os.listdir(path)))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        ours.close()
        shutil.rmtree(d, ignore_errors=True)
    for x in problems:
        print("FAIL", x)
    print("stop while not reading: %d passed, %d failed" % (0 if problems else 1, 1 if problems else 0))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
