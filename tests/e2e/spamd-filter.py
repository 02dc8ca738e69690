#!/usr/bin/env python3
"""filters/spamassassin against a real spamd started here on loopback: GTUBE
is refused (100, the score in the text), an ordinary message passes (0,
X-Spam-Status: No and X-Spam-Score), one over spamc's size limit is marked
as skipped, and once spamd is stopped the filter says try later (111).
Then the same through ./smtpd with `filter .../filters/spamassassin -p PORT`:
GTUBE gets 554 5.7.1 and nothing in new/, the ordinary message is stored
with X-Spam-Status: No after our Received line, and with spamd stopped (by
its pid) the next message gets 451 4.7.1 and nothing is stored.
spamd runs its local tests only (--local: no DNS, no network) with the
rules the package ships; nothing is updated."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from filtertest import FILTERS, GTUBE, Daemon, message, run_filter  # noqa: E402
import smtpdtest as t  # noqa: E402
from smtpdtest import check, main  # noqa: E402

HAM = message("Hi Bob,\n\nshall we have lunch on Tuesday at noon? The usual place.\n\nAlice")
SPAM = message("This is the GTUBE test message.\n\n" + GTUBE, subject="Test spam")


def spamd_argv(port, workdir):
    argv = ["spamd", "--listen", "127.0.0.1:%d" % port, "--local", "--nouser-config",
            "--max-children", "1", "--min-children", "1", "--max-spare", "1",
            "--syslog", "stderr", "--pidfile", os.path.join(workdir, "spamd.pid")]
    if os.geteuid() == 0:
        argv += ["--username", "nobody"]	# spamd will not scan as root
    return argv


def spamd_answers(port):
    """spamc -K: a PING that spamd answers with PONG once it serves."""
    p = subprocess.run(["spamc", "-d", "127.0.0.1", "-p", str(port), "-K",
                        "--connect-retries=1"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
    return p.returncode == 0


def test_spamassassin_filter():
    spamd = Daemon(spamd_argv, spamd_answers)
    try:
        args = ["-d", "127.0.0.1", "-p", str(spamd.port)]
        rc, out, err = run_filter("spamassassin", args, SPAM)
        check(rc == 100, "GTUBE: exit %d, %r %r" % (rc, out, err))
        check(re.fullmatch(r"Message refused as spam \(score \d+\.\d, required \d+\.\d\)\n", out),
              "GTUBE: refusal text %r" % out)
        rc, out, err = run_filter("spamassassin", args, HAM)
        check(rc == 0, "ham: exit %d, %r %r" % (rc, out, err))
        check(re.fullmatch(r"X-Spam-Status: No, score=-?\d+\.\d required=\d+\.\d\n"
                           r"X-Spam-Score: -?\d+\.\d\n", out), "ham: header fields %r" % out)
        # Over spamc's size limit (-s) spamc does not ask spamd and says 0/0.
        rc, out, err = run_filter("spamassassin", args + ["-s", "100"], SPAM)
        check(rc == 0, "over the size limit: exit %d, %r %r" % (rc, out, err))
        check(out == "X-Spam-Status: No, skipped (larger than spamc's size limit)\n",
              "over the size limit: %r" % out)
    finally:
        spamd.stop()
    try:
        rc, out, err = run_filter("spamassassin", args + ["--connect-retries=1"], HAM)
        check(rc == 111, "spamd stopped: exit %d, %r %r" % (rc, out, err))
        check(out == "", "spamd stopped: stdout %r" % out)
    finally:
        spamd.close()


def smtp_message(msg):
    """A filtertest message as a client sends it: our trace lines off, CRLF."""
    text = msg.split(b"\nFrom: ", 1)[1]
    return t.HELLO + b"DATA\r\nFrom: " + text.replace(b"\n", b"\r\n") + b".\r\nQUIT\r\n"


def test_through_smtpd():
    spamd = Daemon(spamd_argv, spamd_answers)
    box = t.Box()
    try:
        box.write_config("filter %s -d 127.0.0.1 -p %d --connect-retries=1\n"
                         % (os.path.join(FILTERS, "spamassassin"), spamd.port))
        out, status, _ = t.run_pipe(box, smtp_message(SPAM), limit=120)
        r = t.replies(out)
        check(re.fullmatch(r"554 5\.7\.1 Message refused as spam \(score \d+\.\d, "
                           r"required \d+\.\d\)", r[-2]) and r[-1] == "221 2.0.0 Bye",
              "GTUBE: replies %r" % r)
        check(box.files("new") == [] and box.files("tmp") == [], "GTUBE: stored")
        out, status, _ = t.run_pipe(box, smtp_message(HAM), limit=120)
        r = t.replies(out)
        check(r[-2].startswith("250 2.0.0 ") and status == 0, "ham: replies %r" % r)
        m = box.messages()
        check(len(m) == 1, "ham: %d messages" % len(m))
        check(re.search(rb"\n\tby mx\.example with ESMTP id \w+\n\tfor <b@example\.org>; [^\n]+\n"
                        rb"X-Spam-Status: No, score=-?\d+\.\d required=\d+\.\d\n"
                        rb"X-Spam-Score: -?\d+\.\d\nFrom: Alice", m[0]),
              "ham: stored header %r" % m[0][:600])
        spamd.stop()
        out, status, _ = t.run_pipe(box, smtp_message(HAM), limit=120)
        r = t.replies(out)
        check(r[-2:] == ["451 4.7.1 Service unavailable - try again later", "221 2.0.0 Bye"],
              "spamd stopped: replies %r" % r)
        check(len(box.files("new")) == 1 and box.files("tmp") == [],
              "spamd stopped: new/ %r tmp/ %r" % (box.files("new"), box.files("tmp")))
    finally:
        spamd.close()
        box.close()


if __name__ == "__main__":
    main([("spamassassin filter: spam 100, ham 0, spamd down 111", test_spamassassin_filter),
          ("through smtpd: GTUBE 554, ham stored with X-Spam-Status, spamd down 451",
           test_through_smtpd)])
