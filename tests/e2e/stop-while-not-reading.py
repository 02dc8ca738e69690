#!/usr/bin/env python3
"""SIGTERM while smtpd waits to write to a client that stopped reading.

Mid-DATA: the client pipelines 14,000 NOOPs and a transaction up to half a
message, then never reads: smtpd's replies fill the socket and its flush
waits with a staged file open in tmp/. Before a read: batches of NOOPs,
never read, until the flush smtpd makes before it waits for more input
cannot finish. Either way SIGTERM must end smtpd at once (not after the
write timeout, when systemd would already have sent SIGKILL), with nothing
left in tmp/ or new/ and exit status 1: the stop cuts the wait short, and a
client that does not read cannot take a 421. The write timeout is 600 s and
we wait at most 60 s: an end within that is the signal's doing, however slow
the machine.
"""
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import termios
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from smtpdtest import Box, argv, check, main, proc_state, wait  # noqa: E402

NOOP, NOOP_REPLY = b"NOOP\r\n", b"250 2.0.0 Ok\r\n"
GREETING = b"220 mx.example ESMTP\r\n"


def spawn(box, sndbuf=None):
    ours, theirs = socket.socketpair()
    if sndbuf:
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    p = subprocess.Popen(argv(box), stdin=theirs, stdout=theirs, stderr=subprocess.DEVNULL)
    return p, ours, theirs


def stop_and_expect_exit_1(p, box):
    p.send_signal(signal.SIGTERM)
    status = wait(p, 60)
    check(status == 1, "exit status %d, want 1" % status)
    for sub in ("tmp", "new"):
        check(box.files(sub) == [], "%s/ holds %r" % (sub, box.files(sub)))


def clean_up(p, box, *socks):
    if p.poll() is None:
        p.kill()
        p.wait()
    for s in socks:
        s.close()
    box.close()


def mid_data():
    box = Box(timeout=600)
    p, ours, theirs = spawn(box)
    theirs.close()
    try:
        data = (b"EHLO c.example\r\n" + NOOP * 14000 +
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
        staged = False
        while not staged and time.monotonic() - start < 60:
            st = proc_state(p.pid)
            staged = box.files("tmp") != [] and st is not None and st[0] == "S"
            if not staged:
                time.sleep(0.01)
        check(staged, "the message was never staged (sent %d of %d)" % (sent, len(data)))
        stop_and_expect_exit_1(p, box)
    finally:
        clean_up(p, box, ours)


def queued(sock, request):
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0"))[0]


def before_a_read():
    """smtpd's end of the socketpair has a small send buffer; we keep a copy
    of it to watch its queue. We send a batch of NOOPs only when smtpd has
    read the last one, so it always answers a whole batch (far less than
    its reply buffer) and then flushes before waiting for more. Blocked is a
    state, not a guess: its send queue is at its limit (we never read, so it
    stays there) and fewer replies reached us than it has lines to answer."""
    box = Box(timeout=600)
    p, ours, theirs = spawn(box, sndbuf=4096)
    try:
        limit = theirs.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        batch, sent, blocked = NOOP * 50, 0, False
        end = time.monotonic() + 60	# a guard against a hang, not a wait
        while not blocked and time.monotonic() < end:
            unread = queued(ours, termios.TIOCOUTQ)     # ours, not yet read by smtpd
            answered = (sent - unread) // len(NOOP)     # whole lines smtpd has read
            blocked = (queued(theirs, termios.TIOCOUTQ) >= limit and
                       queued(ours, termios.FIONREAD) < len(GREETING) + answered * len(NOOP_REPLY))
            if blocked:
                break
            if unread == 0:
                ours.sendall(batch)
                sent += len(batch)
            else:
                time.sleep(0.005)
        check(blocked, "smtpd never blocked writing (sent %d bytes)" % sent)
        stop_and_expect_exit_1(p, box)
    finally:
        clean_up(p, box, ours, theirs)


main([("stop while the flush of a 354 waits", mid_data),
      ("stop while the flush before a read waits", before_a_read)])
