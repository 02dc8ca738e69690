#!/usr/bin/env python3
"""BDAT chunks and the clock: `timeout` applies to each 64 KiB of a chunk,
not to the whole chunk, so a steady client sending a chunk that takes
longer than `timeout` is not cut off; `session-timeout` still ends a chunk
that never ends, accepted or being discarded after 552. (A chunk that
stalls is tests/transcripts/bdat-timeout.txt.)

The pacing is generous: 16 KiB every 0.1 s is 64 KiB in 0.4 s against a
`timeout` of 4 s, so only a server that times the whole chunk cuts it off
(our client would have to stall for 3.6 s). Every other bound is a guard
against a hang, far beyond what a passing run takes.
"""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import smtpdtest as t  # noqa: E402
from smtpdtest import check  # noqa: E402

HELLO = t.HELLO
PIECE = 16 * 1024
LINE = b"x" * 78 + b"\r\n"
BLOCK = LINE * (PIECE // len(LINE)) + b"y" * (PIECE % len(LINE))


def paced_sender(c, head, pieces, stop):
    """Send head, then `pieces` blocks of 16 KiB, one every 0.1 s (the pace,
    not a wait). t.write_all, not sendall: read_until's socket timeouts would
    make a sendall give up after 0.2 s."""
    def run():
        if not t.write_all(c, head):
            return
        for _ in range(pieces):
            if stop.is_set() or not t.write_all(c, BLOCK):
                return
            time.sleep(0.1)
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def steady_chunk_outlasts_timeout():
    """A 960 KiB chunk over 6 s, `timeout` 4 s: delivered."""
    box = t.Box(timeout=4)
    p, c = t.spawn_socket(box)
    stop = threading.Event()
    try:
        greeting = t.read_until(c, b"220 ")
        pieces = 60
        th = paced_sender(c, HELLO + b"BDAT %d LAST\r\n" % (pieces * PIECE), pieces, stop)
        start = time.monotonic()
        got = t.read_until(c, b"250 2.0.0 ", 60)
        while got and not got.endswith(b"\r\n"):	# the id's line, which comes last
            got += t.read_until(c, b"\r\n", 30)
        elapsed = time.monotonic() - start
        th.join(30)
        try:
            c.sendall(b"QUIT\r\n")
        except OSError:
            pass	# the server may rightly have gone: the replies say why
        got += t.read_all(c)
        t.shut(c)
        t.wait(p, 30)
        r = t.replies(greeting + got)
        check(len(r) == 6 and r[4].startswith("250 2.0.0 ") and r[-1] == "221 2.0.0 Bye",
              "replies %r" % r)
        check(elapsed > 4, "the chunk took %.1f s, not more than the timeout" % elapsed)
        check(len(box.messages()) == 1, "delivered %d" % len(box.messages()))
    finally:
        stop.set()
        c.close()
        box.close()


def endless_chunk(extra, how):
    """A chunk of 10^12 octets sent steadily: 421 4.4.2 at session-timeout
    (3 s), nothing delivered or left in tmp/."""
    box = t.Box(extra=extra, timeout=2, session_timeout=3)
    start = time.monotonic()	# before smtpd starts its clock
    p, c = t.spawn_socket(box)
    stop = threading.Event()
    try:
        got = t.read_until(c, b"220 ")
        th = paced_sender(c, HELLO + b"BDAT 1000000000000 LAST\r\n", 150, stop)
        got += t.read_until(c, b"421 ", 60)
        elapsed = time.monotonic() - start
        stop.set()
        th.join(30)
        t.shut(c)
        got += t.read_all(c)
        status = t.wait(p, 30)
        r = t.replies(got)
        check(r and r[-1].startswith("421 4.4.2 "), "%s: replies %r" % (how, r))
        check(elapsed >= 2.95, "%s: 421 after %.1f s, session-timeout is 3 s" % (how, elapsed))
        check(status == 1, "%s: exit status %d" % (how, status))
        check(box.files("new") == [] and box.files("tmp") == [], "%s: files left" % how)
    finally:
        stop.set()
        c.close()
        box.close()


def session_timeout_ends_endless_chunk():
    endless_chunk("max-message-size 1099511627776\n", "accepted chunk")


def session_timeout_ends_discarded_chunk():
    """The same chunk over max-message-size: read and thrown away, still
    bounded by session-timeout."""
    endless_chunk("max-message-size 1048576\n", "discarded chunk")


t.main([
    ("steady_chunk_outlasts_timeout", steady_chunk_outlasts_timeout),
    ("session_timeout_ends_endless_chunk", session_timeout_ends_endless_chunk),
    ("session_timeout_ends_discarded_chunk", session_timeout_ends_discarded_chunk),
])
