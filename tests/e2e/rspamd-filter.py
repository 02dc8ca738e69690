#!/usr/bin/env python3
"""filters/rspamd against a real rspamd started here on loopback with a
minimal configuration: the daemon, its protocol and its GTUBE test patterns,
no rules that need DNS, Redis or the network (and a start in about a second
rather than the half minute the packaged configuration takes here). The
actions no pattern triggers (greylist, soft reject) and an answer without an
action are played by a stand-in rspamc."""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from filtertest import GTUBE, Daemon, message, run_filter  # noqa: E402
from smtpdtest import check, main  # noqa: E402

HAM = message("Hi Bob,\n\nshall we have lunch on Tuesday at noon? The usual place.\n\nAlice")
# rspamd's test patterns (enable_test_patterns): X rejects, Y adds a header,
# Z rewrites the subject.
REJECT = message("GTUBE:\n\n" + GTUBE, subject="Test spam")
ADD_HEADER = message("GTUBE:\n\n" + "Y" + GTUBE[1:], subject="Test spam")
REWRITE = message("GTUBE:\n\n" + "Z" + GTUBE[1:], subject="Test spam")

CONFIG = """options {
    enable_test_patterns = true;
    disable_hyperscan = true;
    dns { nameserver = ["127.0.0.1:1"]; timeout = 0.1s; retransmits = 0; }
}
actions { reject = 15; add_header = 6; greylist = 4; }
logging { type = "console"; level = "error"; }
worker "normal" { bind_socket = "127.0.0.1:%d"; count = 1; }
"""


def rspamd_argv(port, workdir):
    conf = os.path.join(workdir, "rspamd.conf")
    with open(conf, "w") as f:
        f.write(CONFIG % port)
    argv = ["rspamd", "--no-fork", "--config", conf, "--var=DBDIR=" + workdir,
            "--var=RUNDIR=" + workdir, "--var=LOGDIR=" + workdir]
    if os.geteuid() == 0:
        argv += ["--insecure", "--user", "root", "--group", "root"]
    return argv


def rspamd_answers(port):
    p = subprocess.run(["rspamc", "-h", "127.0.0.1:%d" % port, "-t", "5"], input=HAM,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60)
    return p.returncode == 0 and b"\nAction: " in p.stdout


def test_rspamd_filter():
    rspamd = Daemon(rspamd_argv, rspamd_answers)
    try:
        args = ["-h", "127.0.0.1:%d" % rspamd.port]
        rc, out, err = run_filter("rspamd", args, REJECT)
        check(rc == 100, "GTUBE: exit %d, %r %r" % (rc, out, err))
        check(re.fullmatch(r"Message refused as spam \(score 15\.00, required 15\.00\)\n", out),
              "GTUBE: refusal text %r" % out)
        for name, msg in (("add header", ADD_HEADER), ("rewrite subject", REWRITE)):
            rc, out, err = run_filter("rspamd", args, msg)
            check(rc == 0, "%s: exit %d, %r %r" % (name, rc, out, err))
            check(re.fullmatch(r"X-Spam: Yes\nX-Spam-Status: Yes, score=\d+\.\d\d "
                               r"required=15\.00\n", out), "%s: header fields %r" % (name, out))
        rc, out, err = run_filter("rspamd", args, HAM)
        check(rc == 0, "ham: exit %d, %r %r" % (rc, out, err))
        check(re.fullmatch(r"X-Spam-Status: No, score=-?\d+\.\d\d required=15\.00\n", out),
              "ham: header fields %r" % out)
        rc, out, err = run_filter("rspamd", args, HAM, env={"SMTPD_PEER": "IPv6:2001:db8::1",
                                                           "SMTPD_FROM": "<>",
                                                           "SMTPD_RCPTS": "<a@b>\n<c@d>"})
        check(rc == 0, "null sender, IPv6, two recipients: exit %d, %r %r" % (rc, out, err))
    finally:
        rspamd.stop()
    try:
        rc, out, err = run_filter("rspamd", args, HAM)
        check(rc == 111, "rspamd stopped: exit %d, %r %r" % (rc, out, err))
        check(out == "", "rspamd stopped: stdout %r" % out)
    finally:
        rspamd.close()


def stand_in(answer, status=0):
    """A directory holding an rspamc that prints answer and exits with status."""
    d = tempfile.mkdtemp(prefix="smtpd-rspamc.")
    with open(os.path.join(d, "rspamc"), "w") as f:
        f.write("#!/bin/sh\ncat >/dev/null\nprintf '%%s\\n' '%s'\nexit %d\n"
                % (answer.replace("\n", "' '"), status))
    os.chmod(os.path.join(d, "rspamc"), 0o755)
    return d


def test_actions_without_a_pattern():
    cases = [("Action: greylist\nScore: 5.00 / 15.00", 0, 111),
             ("Action: soft reject\nScore: 5.00 / 15.00", 0, 111),
             ("Action: no action\nScore: 1.00 / 15.00", 1, 111),
             ("Score: 1.00 / 15.00", 0, 111),
             ("Action: no action\nScore: 1.00 / $(id)", 0, 111),
             ("Action: something new\nScore: 1.00 / 15.00", 0, 111),
             ("Action: no action\nScore: 1.00 / 15.00", 0, 0)]
    for answer, status, want in cases:
        d = stand_in(answer, status)
        try:
            rc, out, err = run_filter("rspamd", [], HAM, env={"PATH": d + ":/usr/bin:/bin"})
        finally:
            subprocess.run(["rm", "-rf", d], check=False)
        check(rc == want, "%r exit %d: filter exit %d, want %d (%r)" % (answer, status, rc,
                                                                       want, err))
        check(want != 111 or out == "", "%r: stdout %r" % (answer, out))


if __name__ == "__main__":
    main([("rspamd filter: reject 100, add header 0, no action 0, down 111", test_rspamd_filter),
          ("rspamd filter: greylist and soft reject 111, odd answers 111",
           test_actions_without_a_pattern)])
