#!/usr/bin/env python3
"""Content filters through ./smtpd: one that adds a field, one
that hangs with a child (killed at filter-timeout, group and all), one that
prints megabytes, ones that inject CR and LF into a reply or a header, one
that is not executable or missing (451 in a session; smtpd -C says why,
exit 78), a SIGTERM while the filter runs (451 at once, then 421), and, as
root with `user nobody`, a filter that runs as nobody. Each is a sh script
in the test's directory; nothing reaches new/ unless the filter said 0."""
import os
import pwd
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import smtpdtest as t  # noqa: E402
from smtpdtest import check  # noqa: E402

TRANSACTION = (b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
               b"DATA\r\nSubject: f\r\n\r\nbody\r\n.\r\n")
MESSAGE = b"EHLO c.example\r\n" + TRANSACTION + b"QUIT\r\n"
UNCHECKED = "451 4.7.1 Service unavailable - try again later"
FAILED = "451 4.3.0 Error in content filter; try again later"


def filter_box(body, timeout=30, mode=0o755, extra=""):
    """A Box whose config runs the sh script body ($D is the box's directory)."""
    box = t.Box()
    path = os.path.join(box.dir, "filter")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nD=%s\n%s\n" % (box.dir, body))
    os.chmod(path, mode)
    box.write_config("filter %s\nfilter-timeout %d\n%s" % (path, timeout, extra))
    box.filter = path
    return box


def nothing_stored(box, what):
    check(box.files("new") == [] and box.files("tmp") == [],
          "%s: new/ %r tmp/ %r" % (what, box.files("new"), box.files("tmp")))


def end_of(out):
    """The reply to the final dot and the one to QUIT."""
    return t.replies(out)[-2:]


def assert_gone(pid, what):
    """pid has exited (a zombie counts): pidfd_open fails, or its pidfd polls readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        check(p.poll(10000) != [], "%s: pid %d still running" % (what, pid))
    finally:
        os.close(fd)


def read_pid(box, name):
    with open(os.path.join(box.dir, name)) as f:
        return int(f.read())


def fields_follow_received():
    box = filter_box("cat >/dev/null\nprintf 'X-Checked: yes\\r\\n\\tfolded\\n'")
    try:
        out, status, _ = t.run_pipe(box, MESSAGE)
        r = end_of(out)
        check(r[0].startswith("250 2.0.0 ") and r[1] == "221 2.0.0 Bye", "replies %r" % r)
        m = box.messages()
        check(len(m) == 1, "%d messages" % len(m))
        head = m[0].split(b"\nSubject: f\n")[0]
        check(head.endswith(b"\nX-Checked: yes\n\tfolded") and b"\nReceived: from " in head,
              "stored header %r" % head)
        check(status == 0, "exit status %d" % status)
    finally:
        box.close()


def hang_is_killed_with_its_child():
    box = filter_box("echo $$ >$D/pid\nsleep 1000 &\necho $! >$D/child\nwait", timeout=1)
    try:
        out, _, secs = t.run_pipe(box, MESSAGE)
        check(end_of(out) == [UNCHECKED, "221 2.0.0 Bye"], "replies %r" % t.replies(out))
        nothing_stored(box, "hang")
        assert_gone(read_pid(box, "pid"), "the filter")
        assert_gone(read_pid(box, "child"), "the filter's child")
    finally:
        box.close()


def megabytes_are_bounded():
    box = filter_box("head -c 8000000 /dev/zero | tr '\\0' x\necho $$ >$D/pid")
    try:
        out, _, _ = t.run_pipe(box, MESSAGE)
        check(end_of(out) == [FAILED, "221 2.0.0 Bye"], "replies %r" % t.replies(out))
        nothing_stored(box, "megabytes")
    finally:
        box.close()


def injection_reaches_nothing():
    cases = [
        # A refusal text with CR LF and a fake reply after it: the fixed text.
        ("printf 'No\\r\\n250 2.0.0 fake\\r\\n'\nexit 100",
         "554 5.7.1 Message rejected by content filter"),
        ("printf 'No\\n250 2.0.0 fake\\n'\nexit 100", "554 5.7.1 No"),
        # Header fields with a bare CR, an empty line, a NUL: nothing stored.
        ("printf 'X-A: a\\r\\nX-B: b\\rFrom: forged\\n'", FAILED),
        ("printf 'X-A: a\\n\\nInjected body\\n'", FAILED),
        ("printf 'X-A: a\\0b\\n'", FAILED),
    ]
    for body, want in cases:
        box = filter_box(body)
        try:
            out, _, _ = t.run_pipe(box, b"EHLO c.example\r\n" + TRANSACTION * 2 + b"QUIT\r\n")
            r = t.replies(out)
            check([r[5], r[9], r[-1]] == [want, want, "221 2.0.0 Bye"] and len(r) == 11,
                  "%r: replies %r" % (body, r))
            check(b"fake" not in out, "%r: the fake reply reached the client" % body)
            nothing_stored(box, body)
        finally:
            box.close()


def cannot_start_is_451_and_compile_says_why():
    for mode, why in ((0o644, "not an executable file"), (None, "No such file or directory")):
        box = filter_box("exit 0", mode=mode or 0o755)
        try:
            if mode is None:
                os.unlink(box.filter)
            out, status, _ = t.run_pipe(box, MESSAGE)
            check(end_of(out) == [UNCHECKED, "221 2.0.0 Bye"] and status == 0,
                  "%s: replies %r, exit %d" % (why, t.replies(out), status))
            nothing_stored(box, why)
            p = subprocess.run([t.SMTPD, "-C", box.config], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=30)
            err = p.stderr.decode("latin-1")
            check(p.returncode == 78 and ("filter %s: %s" % (box.filter, why)) in err,
                  "-C: exit %d, %r" % (p.returncode, err))
            check(not os.path.exists(box.config + ".cdb"), "-C wrote a map")
        finally:
            box.close()


def stop_ends_the_wait():
    """SIGTERM while the filter runs: 451 4.7.1 at once (not at filter-timeout,
    300 s), its group killed, then 421 4.3.2 and exit 1."""
    box = filter_box("echo $$ >$D/pid.tmp\nmv $D/pid.tmp $D/pid\nexec sleep 1000", timeout=300)
    p, c = t.spawn_socket(box)
    try:
        t.read_until(c, b"220 ")
        c.sendall(t.HELLO + b"DATA\r\n")
        t.read_until(c, b"354 ")
        c.sendall(b"Subject: s\r\n\r\nbody\r\n.\r\n")
        pidfile = os.path.join(box.dir, "pid")
        end = time.monotonic() + 20
        while not os.path.exists(pidfile) and time.monotonic() < end and p.poll() is None:
            time.sleep(0.05)    # polling for the filter to start, bounded
        check(os.path.exists(pidfile), "the filter never started")
        os.kill(p.pid, signal.SIGTERM)
        r = t.replies(t.read_all(c, 30))
        status = t.wait(p, 30)
        check(r[-2:] == [UNCHECKED, "421 4.3.2 mx.example Service shutting down"],
              "replies %r" % r)
        check(status == 1, "exit status %d" % status)
        assert_gone(read_pid(box, "pid"), "the filter")
        nothing_stored(box, "stop")
    finally:
        c.close()
        box.close()


def runs_as_user():
    """As root with `user nobody`: the filter runs as nobody, not root."""
    if os.geteuid() != 0:
        print("skip runs_as_user: not root")
        return
    nobody = pwd.getpwnam("nobody")
    box = filter_box("printf 'X-Uid: %s\\n' \"$(id -u)\"", extra="user nobody\n")
    try:
        os.makedirs(box.maildir)
        os.chown(box.maildir, nobody.pw_uid, nobody.pw_gid)
        os.chmod(box.dir, 0o755)
        out, _, _ = t.run_pipe(box, MESSAGE)
        check(end_of(out)[0].startswith("250 2.0.0 "), "replies %r" % t.replies(out))
        m = box.messages()
        check(len(m) == 1 and (b"\nX-Uid: %d\n" % nobody.pw_uid) in m[0],
              "stored %r" % (m[:1],))
    finally:
        box.close()


t.main([
    ("fields_follow_received", fields_follow_received),
    ("hang_is_killed_with_its_child", hang_is_killed_with_its_child),
    ("megabytes_are_bounded", megabytes_are_bounded),
    ("injection_reaches_nothing", injection_reaches_nothing),
    ("cannot_start_is_451_and_compile_says_why", cannot_start_is_451_and_compile_says_why),
    ("stop_ends_the_wait", stop_ends_the_wait),
    ("runs_as_user", runs_as_user),
])
