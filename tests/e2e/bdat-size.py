#!/usr/bin/env python3
"""BDAT and max-message-size (RFC 3030, RFC 1870): chunks are streamed to the staged
copy in tmp/ as they come, and the chunk that takes the sum of chunk sizes
over the limit gets 552 and the staged copy is gone at once, before LAST;
later chunks get 552 too and nothing is staged again. Checked between
replies, on a socketpair, with max-message-size 2000.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import smtpdtest as t  # noqa: E402
from smtpdtest import check  # noqa: E402

TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"


def one_reply(c):
    got = b""
    while not got.endswith(b"\r\n"):
        more = t.read_until(c, b"\r\n", 30)
        if not more:
            break
        got += more
    r = t.replies(got)
    return r[-1] if r else "<nothing>"


def staged_copy_dropped_at_once():
    box = t.Box(extra="max-message-size 2000\n")
    p, c = t.spawn_socket(box)
    try:
        t.read_until(c, b"220 ")
        c.sendall(t.HELLO)
        t.read_until(c, b"250 2.1.5 Ok\r\n")
        steps = [
            (b"BDAT 1500\r\n" + b"a" * 1498 + b"\r\n", "250 2.0.0 1500 octets received", 1),
            (b"BDAT 501\r\n" + b"b" * 499 + b"\r\n", TOO_BIG, 0),
            (b"BDAT 10\r\n" + b"c" * 10, TOO_BIG, 0),
            (b"BDAT 0 LAST\r\n", TOO_BIG, 0),
        ]
        for data, want, staged in steps:
            c.sendall(data)
            got = one_reply(c)
            check(got == want, "after %r: %r, want %r" % (data[:12], got, want))
            check(len(box.files("tmp")) == staged, "after %r: tmp/ holds %r" % (
                data[:12], box.files("tmp")))
        c.sendall(b"QUIT\r\n")
        t.read_all(c)
        check(t.wait(p, 30) == 0, "exit status")
        check(box.files("new") == [] and box.files("tmp") == [], "files left")
    finally:
        c.close()
        box.close()


def exactly_the_limit_is_accepted():
    """2000 octets in three chunks, CRLFs counted as sent: delivered."""
    box = t.Box(extra="max-message-size 2000\n")
    try:
        parts = [b"x" * 998 + b"\r\n", b"y" * 998 + b"\r\n", b""]
        data = t.HELLO + b"BDAT 1000\r\n" + parts[0] + b"BDAT 1000\r\n" + parts[1] + \
            b"BDAT 0 LAST\r\n" + b"QUIT\r\n"
        out, status, _ = t.run_pipe(box, data)
        r = t.replies(out)
        check(r[4:6] == ["250 2.0.0 1000 octets received"] * 2 and r[6].startswith("250 2.0.0 ")
              and r[7:] == ["221 2.0.0 Bye"], "replies %r" % r)
        check(len(box.messages()) == 1, "delivered %d" % len(box.messages()))
    finally:
        box.close()


t.main([
    ("staged_copy_dropped_at_once", staged_copy_dropped_at_once),
    ("exactly_the_limit_is_accepted", exactly_the_limit_is_accepted),
])
