#!/usr/bin/env python3
"""Our trace fields, as a mail parser reads them: whatever the client's first
data line is, Python's email package must see our Return-Path and Received
fields exactly as smtpd wrote them, with the date smtpd put there, and the
client's text in its own fields or in the body."""
import email
import email.policy
import email.utils
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from smtpdtest import HELLO, Box, check, main, run_pipe  # noqa: E402

FORGED = b"\t(authenticated sender: ceo@bank.example; Mon, 1 Jan 2001 00:00:00 +0000)"

# The client's data, and a line of it the parser must show in the body.
FIRST_LINES = [
    (FORGED + b"\r\nSubject: forged\r\n\r\nhi\r\n", FORGED.decode()),
    (b" (by trusted.example)\r\n", " (by trusted.example)"),
    (b". \t(dot-stuffed)\r\n", " \t(dot-stuffed)"),
    (b"no field name\r\n", "no field name"),
]


def ours(raw):
    """Return-Path and Received as written: up to the line holding our date."""
    end = raw.index(b"\n", raw.index(b"; ", raw.index(b"\nReceived: "))) + 1
    head = raw[:end].decode()
    m = re.fullmatch(r"Return-Path: (.*)\nReceived: (.*)\n", head, re.S)
    check(m is not None, "unexpected trace fields %r" % head)
    return m.group(1), m.group(2)


def parsed_unchanged(data, body_line):
    box = Box()
    try:
        out, status, _ = run_pipe(box, HELLO + b"DATA\r\n" + data + b".\r\nQUIT\r\n")
        check(status == 0 and b"\r\n250 2.0.0 " in out, "not delivered: %r" % out[-200:])
        msgs = box.messages()
        check(len(msgs) == 1, "%d messages" % len(msgs))
        return_path, received = ours(msgs[0])
        msg = email.message_from_bytes(msgs[0], policy=email.policy.compat32)
        check(msg.get_all("Return-Path") == [return_path], "Return-Path %r" % msg["Return-Path"])
        got = msg.get_all("Received")
        date = email.utils.parsedate_to_datetime(got[0].rsplit(";", 1)[1])
        check(date.year != 2001, "date taken from the client's text: %s" % date)
        check(got == [received], "Received parsed as %r, written as %r" % (got, received))
        check(body_line in msg.get_payload().split("\n"),
              "%r not in the body %r" % (body_line, msg.get_payload()))
        msg = email.message_from_bytes(msgs[0], policy=email.policy.default)
        check(str(msg["Received"]) == received.replace("\n", ""),
              "default policy: %r" % str(msg["Received"]))
    finally:
        box.close()


def make(data, line):
    return lambda: parsed_unchanged(data, line)


main([("first line %r" % data[:12], make(data, line)) for data, line in FIRST_LINES])
