#!/usr/bin/env python3
"""BDAT (RFC 3030) chunks are counted octets, never commands.

Every fake end of data of the hostile suite (smtpdtest.FAKE_ENDS), and the
real one, followed by a whole smuggled transaction, is sent inside BDAT
chunks and cut across chunk boundaries at every position, through a pipe
and over loopback TCP: each session gets exactly the replies of its own
commands, one delivery per LAST, and every message is stored exactly as
its octets say (CRLF to LF, bare CR kept, a CR ending one chunk and an LF
starting the next being one CRLF). Refused chunks carrying the same
payload are consumed just the same. Then the storage rules at chunk
boundaries: every position of a CRLF, inside UTF-8 sequences, right after
a bare CR, two cuts at once.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import smtpdtest as t  # noqa: E402
from smtpdtest import check  # noqa: E402

EHLO = b"EHLO c.example\r\n"
MAIL = b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
MAIL_REPLIES = ["250 2.1.0 Ok", "250 2.1.5 Ok"]
ID = re.compile(r"250 2\.0\.0 \d+M\d{6}P\d+Q\d+")
# Inside a chunk even the real end of DATA is only text.
ENDS = t.FAKE_ENDS + [b"\r\n.\r\n"]


def stored(octets):
    """What smtpd stores for a message sent as these octets."""
    body = octets.replace(b"\r\n", b"\n")
    return body + b"\n" if body and not body.endswith(b"\n") else body


def body_of(message):
    """A stored message without our Return-Path and Received lines."""
    received = message.index(b"Received: ")
    return message[message.index(b"\n", message.index(b"; ", received)) + 1:]


def transaction(parts):
    """MAIL, RCPT and the message in chunks: (client bytes, expected replies)."""
    data, want = MAIL, list(MAIL_REPLIES)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        data += b"BDAT %d%s\r\n" % (len(part), b" LAST" if last else b"") + part
        want.append(ID if last else "250 2.0.0 %d octets received" % len(part))
    return data, want


def refused(parts):
    """The same chunks without MAIL: each is consumed and gets 503."""
    data = b"".join(b"BDAT %d%s\r\n" % (len(p), b" LAST" if i == len(parts) - 1 else b"") + p
                    for i, p in enumerate(parts))
    return data, ["503 5.5.1 MAIL first"] * len(parts)


def split(message, cuts):
    cuts = [0] + sorted(cuts) + [len(message)]
    return [message[a:b] for a, b in zip(cuts, cuts[1:])]


def matches(want, got):
    return want.fullmatch(got) is not None if isinstance(want, re.Pattern) else want == got


def expect_replies(got, want, how):
    r = t.replies(got)
    for i, w in enumerate(want):
        if i >= len(r) or not matches(w, r[i]):
            raise t.Failed("%s: reply %d is %r, want %r" % (
                how, i, r[i] if i < len(r) else "<nothing>", w))
    check(len(r) == len(want), "%s: extra replies %r" % (how, r[len(want):][:3]))


def expect_messages(box, bodies, how):
    msgs = box.messages()
    check(len(msgs) == len(bodies), "%s: %d messages in new/, want %d (a second transaction?)"
          % (how, len(msgs), len(bodies)))
    got = sorted(body_of(m) for m in msgs)
    check(got == sorted(bodies), "%s: stored %r, want %r" % (how, got[:2], sorted(bodies)[:2]))
    check(box.files("tmp") == [], "%s: left in tmp/" % how)


def session_over_pipe(transactions, how):
    """One session through a pipe, everything in one write."""
    box = t.Box()
    try:
        data, want, bodies = EHLO, ["220 mx.example ESMTP", re.compile(r"250 \S+")], []
        for (d, w), body in transactions:
            data += d
            want += w
            if body is not None:
                bodies.append(body)
        out, status, _ = t.run_pipe(box, data + b"QUIT\r\n", limit=120)
        expect_replies(out, want + ["221 2.0.0 Bye"], how)
        check(status == 0, "%s: exit status %d" % (how, status))
        expect_messages(box, bodies, how)
    finally:
        box.close()


class Replies:
    """Reads a socket's replies as they come and checks each against what
    is wanted, so a wrong one fails at once instead of at a time-out."""

    def __init__(self, sock, how):
        self.sock, self.how, self.buf, self.n = sock, how, b"", 0

    def expect(self, wanted):
        for w in wanted:
            while b"\r\n" not in self.buf or self.buf[3:4] == b"-":
                if b"\r\n" in self.buf:       # a continuation line
                    self.buf = self.buf.split(b"\r\n", 1)[1]
                    continue
                more = t.read_until(self.sock, b"\r\n", 30)
                if not more:
                    raise t.Failed("%s: reply %d: nothing came, want %r" % (self.how, self.n, w))
                self.buf += more
            line, self.buf = self.buf.split(b"\r\n", 1)
            got = line.decode("latin-1")
            if not matches(w, got):
                raise t.Failed("%s: reply %d is %r, want %r" % (self.how, self.n, got, w))
            self.n += 1


def session_over_tcp(transactions, how):
    """One session over loopback TCP. Each chunk goes in a write of its own
    once the reply to the one before has come (a careful client); refused
    chunks go in one write with the commands before them (a pipelining one)."""
    box = t.Box()
    srv = t.Listener(box)
    try:
        c = srv.connect()
        r = Replies(c, how)
        r.expect(["220 mx.example ESMTP"])
        c.sendall(EHLO)
        r.expect([re.compile(r"250 \S+")])
        bodies = []
        for (data, want), body in transactions:
            if body is None:
                c.sendall(data)
                r.expect(want)
                continue
            bodies.append(body)
            pieces = re.split(rb"(?=BDAT \d+)", data)
            c.sendall(pieces[0])
            r.expect(want[:2])
            for piece, w in zip(pieces[1:], want[2:]):
                c.sendall(piece)
                r.expect([w])
        c.sendall(b"QUIT\r\n")
        r.expect(["221 2.0.0 Bye"])
        check(t.read_all(c) == b"" and r.buf == b"", "%s: more after 221" % how)
        c.close()
        srv.close()
        expect_messages(box, bodies, how)
    finally:
        box.close()


def smuggling_message(fake):
    return b"Subject: real\r\n\r\nline one" + fake + t.SMUGGLED + b"QUIT\r\nlast line\r\n"


def one_chunk(fake):
    m = smuggling_message(fake)
    return [(transaction([m]), stored(m)), (refused([m]), None), (transaction([m]), stored(m))]


def cut_everywhere(fake):
    """The message cut in two at every position around the fake end and at
    every line end of the smuggled transaction; in three with the fake end
    alone in the middle chunk; refused in two, at the fake end."""
    m = smuggling_message(fake)
    at = m.index(fake)
    cuts = set(range(at - 1, at + len(fake) + 2))
    cuts |= {i + d for i, b in enumerate(m) if b in b"\r\n" for d in (0, 1)}
    cuts = sorted(c for c in cuts if 0 < c < len(m))
    out = [(transaction(split(m, [c])), stored(m)) for c in cuts]
    out.append((transaction(split(m, [at, at + len(fake)])), stored(m)))
    out.append((refused(split(m, [at + 1])), None))
    return out


def smuggling_in_one_chunk_pipe():
    for fake in ENDS:
        session_over_pipe(one_chunk(fake), "pipe, one chunk, %r" % fake)


def smuggling_in_one_chunk_tcp():
    for fake in ENDS:
        session_over_tcp(one_chunk(fake), "tcp, one chunk, %r" % fake)


def smuggling_across_chunks_pipe():
    for fake in ENDS:
        session_over_pipe(cut_everywhere(fake), "pipe, cut, %r" % fake)


def smuggling_across_chunks_tcp():
    for fake in ENDS:
        session_over_tcp(cut_everywhere(fake), "tcp, cut, %r" % fake)


def whole_session_in_a_chunk():
    """A refused chunk and an accepted one, each holding a whole session
    with the real end of data and QUIT: only the BDATs are answered."""
    inner = (EHLO + MAIL + b"DATA\r\nSubject: s\r\n\r\nx\r\n.\r\n" + MAIL +
             b"BDAT 3 LAST\r\nabcQUIT\r\n")
    session_over_pipe([(refused([inner]), None), (transaction([inner]), stored(inner)),
                       (refused(split(inner, [5, 40])), None),
                       (transaction(split(inner, [5, 40])), stored(inner))],
                      "pipe, sessions inside chunks")


# Storage at chunk boundaries.
CRLF_TEXT = b"Subject: cut\r\n\r\nab\r\ncd\r\n\r\nend\r\n"
UTF8_TEXT = (b"Subject: utf8\r\n\r\nx\xc3\xa9y\xe2\x82\xacz\xf0\x9f\x98\x80\r\n"
             b"\xf0\x9f\x98\x80\xc3\xa9\r\n")
CR_TEXT = b"Subject: cr\r\n\r\none\rtwo\r\r\nthree\r\r\r\n\r\n\rfour\r\n"


def every_cut(text):
    return [(transaction(split(text, [c])), stored(text)) for c in range(1, len(text))]


def every_pair_of_cuts(text):
    body = text.index(b"\r\n\r\n") + 4
    return [(transaction(split(text, [a, b])), stored(text))
            for a in range(body, len(text)) for b in range(a + 1, len(text))]


def cut_at_every_crlf_position():
    session_over_pipe(every_cut(CRLF_TEXT), "pipe, CRLF cut")
    session_over_tcp(every_cut(CRLF_TEXT), "tcp, CRLF cut")


def cut_inside_utf8():
    session_over_pipe(every_cut(UTF8_TEXT), "pipe, UTF-8 cut")
    session_over_tcp(every_cut(UTF8_TEXT), "tcp, UTF-8 cut")


def cut_after_bare_cr():
    session_over_pipe(every_cut(CR_TEXT), "pipe, CR cut")
    session_over_tcp(every_cut(CR_TEXT), "tcp, CR cut")


def two_cuts_anywhere_in_the_body():
    session_over_pipe(every_pair_of_cuts(CR_TEXT), "pipe, CR, two cuts")
    session_over_pipe(every_pair_of_cuts(CRLF_TEXT), "pipe, CRLF, two cuts")


def trace_lines_say_esmtp():
    """Our Return-Path and Received lead a BDAT message, as after DATA."""
    box = t.Box()
    try:
        out, _, _ = t.run_pipe(box, EHLO + MAIL + b"BDAT 7 LAST\r\nSmall\r\n" +
                               b"MAIL FROM:<a@example.org> SMTPUTF8\r\n"
                               b"RCPT TO:<b@example.org>\r\nBDAT 7 LAST\r\nSmall\r\nQUIT\r\n")
        msgs = [m for m in box.messages()]
        check(len(msgs) == 2, "delivered %d: %r" % (len(msgs), t.replies(out)))
        withs = sorted(re.search(rb"\tby mx\.example with (\S+) id ", m).group(1) for m in msgs)
        check(withs == [b"ESMTP", b"UTF8SMTP"], "Received says %r" % withs)
        for m in msgs:
            check(m.startswith(b"Return-Path: <a@example.org>\nReceived: from c.example\n"),
                  "trace lines: %r" % m[:80])
            check(body_of(m) == b"Small\n", "body %r" % body_of(m))
    finally:
        box.close()


t.main([
    ("smuggling_in_one_chunk_pipe", smuggling_in_one_chunk_pipe),
    ("smuggling_in_one_chunk_tcp", smuggling_in_one_chunk_tcp),
    ("smuggling_across_chunks_pipe", smuggling_across_chunks_pipe),
    ("smuggling_across_chunks_tcp", smuggling_across_chunks_tcp),
    ("whole_session_in_a_chunk", whole_session_in_a_chunk),
    ("cut_at_every_crlf_position", cut_at_every_crlf_position),
    ("cut_inside_utf8", cut_inside_utf8),
    ("cut_after_bare_cr", cut_after_bare_cr),
    ("two_cuts_anywhere_in_the_body", two_cuts_anywhere_in_the_body),
    ("trace_lines_say_esmtp", trace_lines_say_esmtp),
])
