#!/usr/bin/env python3
"""Structured journal entries from a real systemd-journald.

The test re-runs itself inside a private mount namespace (unshare -m, root
only) with a tmpfs over /run, so the journald it starts there, stops by its
pid and reads back with journalctl -D is its own and the machine's /run is
never touched. smtpd's stderr is a file named by JOURNAL_STREAM, as under
StandardError=journal: every line must arrive as an entry with SMTPD_*
fields, and nothing may reach that stderr."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from smtpdtest import Box, check, main  # noqa: E402

JOURNALD = "/lib/systemd/systemd-journald"

if os.environ.get("SMTPD_JOURNAL_NS") != "1":
    if os.geteuid() != 0:
        print("journal: skipped, needs root for a private mount namespace")
        print("0 passed, 0 failed")
        sys.exit(0)
    env = dict(os.environ, SMTPD_JOURNAL_NS="1")
    os.execvpe("unshare", ["unshare", "--mount", "--propagation", "private",
                           sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)

SESSION = (b"EHLO client.example\r\n"
           b"MAIL FROM:<j@client.example>\r\n"
           b"RCPT TO:<a@example.org>\r\n"
           b"RCPT TO:<x@not-ours.example>\r\n"
           b"RCPT TO:<b@example.org>\r\n"
           b"DATA\r\nSubject: journal\r\n\r\nhello\r\n.\r\n"
           b"MAIL FROM:<\"q\\\"uote\"@client.example>\r\n"
           b"QUIT\r\n")


def start_journald():
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True, timeout=10)
    jd = subprocess.Popen([JOURNALD], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    end = time.monotonic() + 30	# a bound against a hang, not an expected time
    while time.monotonic() < end:
        if os.path.exists("/run/systemd/journal/socket"):
            return jd
        time.sleep(0.05)
    jd.kill()
    jd.wait()
    check(False, "journald did not create its socket")


def entries(jd):
    # journald writes asynchronously: wait (bounded) for the session's last entry.
    end = time.monotonic() + 30
    while True:
        out = subprocess.run(["journalctl", "-D", "/run/log/journal", "-o", "json",
                              "--no-pager", "SYSLOG_IDENTIFIER=smtpd"],
                             stdout=subprocess.PIPE, timeout=30).stdout
        found = [json.loads(line) for line in out.splitlines() if line.strip()]
        if any(e.get("SMTPD_EVENT") == "disconnect" for e in found) or time.monotonic() > end:
            return found
        time.sleep(0.1)


def structured():
    box = Box()
    jd = start_journald()
    try:
        err = os.path.join(box.dir, "stderr")
        with open(err, "wb") as f:
            st = os.fstat(f.fileno())
            env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
            p = subprocess.run([os.environ.get("SMTPD", "./smtpd"), "-c", box.config],
                               input=SESSION, stdout=subprocess.PIPE, stderr=f, env=env,
                               timeout=20)
        out = p.stdout.decode("latin-1")
        check("250 2.0.0 " in out, "not delivered: %r" % out)
        msg_id = out.split("250 2.0.0 ", 1)[1].split("\r\n", 1)[0]
        got = entries(jd)
        check(os.path.getsize(err) == 0, "smtpd wrote to stderr")
        by_event = {}
        for e in got:
            by_event.setdefault(e.get("SMTPD_EVENT"), []).append(e)
        check(set(by_event) >= {"connect", "refused", "delivered", "disconnect"},
              "events: %r" % sorted(map(str, by_event)))
        d = by_event["delivered"][0]
        check(d.get("SMTPD_ID") == msg_id, "SMTPD_ID %r, reply %r" % (d.get("SMTPD_ID"), msg_id))
        check(d.get("SMTPD_FROM") == "<j@client.example>", "SMTPD_FROM %r" % d.get("SMTPD_FROM"))
        check(d.get("SMTPD_NRCPT") == "2", "SMTPD_NRCPT %r" % d.get("SMTPD_NRCPT"))
        check(d.get("SMTPD_EXCESS_RCPT") == "0", "SMTPD_EXCESS_RCPT %r" % d.get("SMTPD_EXCESS_RCPT"))
        check(d.get("SMTPD_PEER") == "local", "SMTPD_PEER %r" % d.get("SMTPD_PEER"))
        check(d.get("PRIORITY") == "6" and d.get("SYSLOG_FACILITY") == "2", "priority/facility")
        check(int(d.get("SMTPD_DURATION_MS", "-1")) >= 0, "no SMTPD_DURATION_MS")
        check(d.get("MESSAGE", "").startswith("delivered "), "MESSAGE %r" % d.get("MESSAGE"))
        r = by_event["refused"][0]
        check(r.get("SMTPD_CMD") == "RCPT" and r.get("SMTPD_REPLY", "").startswith("550 "),
              "refusal entry: %r" % {k: v for k, v in r.items() if k.startswith("SMTPD_")})
        check(len(by_event["disconnect"]) == 1, "one session end")
        for e in got:	# client text never carries a raw quote, CR or LF into a line
            m = e.get("MESSAGE", "")
            check(isinstance(m, str) and "\n" not in m and "\r" not in m, "raw line end: %r" % m)
    finally:
        jd.terminate()
        try:
            jd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            jd.kill()
            jd.wait()
        box.close()


main([("journal entries with SMTPD_* fields", structured)])
