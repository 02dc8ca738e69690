#!/usr/bin/env python3
"""Configuration errors and the compiled mailbox map, through ./smtpd itself.

Bad configurations (a mailbox line without a directory, a duplicate address,
an unreadable map, ...) get 421 4.3.0 naming the line, exit 78, and one log
line. smtpd -C FILE writes FILE.cdb; a session uses it only while it is
newer than FILE (nanosecond mtimes) and logs a warning otherwise. The log
is read from a datagram socket at /dev/log when no syslog owns that path;
only the lines of the session just run count (smtpd[PID]), as any other
smtpd on the machine logs there too while we hold the path.
"""
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

SMTPD = os.path.abspath(os.environ.get("SMTPD", "./smtpd"))
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL", what)


class Syslog:
    """Collect what smtpd sends to /dev/log, when the path is free. A thread
    drains the socket all the time: a full datagram queue blocks syslog(3).
    It receives only while holding the lock, and lines() drains what is
    queued under the same lock: a datagram sent before smtpd exited is in
    the queue (a send on a datagram socket returns once it is queued), so
    lines() sees it without waiting for the thread."""

    def __init__(self):
        self.sock = None
        self.got = []
        self.lock = threading.Lock()
        self.stop = False
        if os.path.exists("/dev/log"):
            print("note: /dev/log belongs to a running syslog; log lines not checked")
            return
        try:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind("/dev/log")
            self.sock.setblocking(False)
        except OSError as e:
            print("note: cannot listen on /dev/log (%s); log lines not checked" % e)
            self.sock = None
            return
        self.thread = threading.Thread(target=self.drain, daemon=True)
        self.thread.start()

    def drain(self):
        while not self.stop:
            try:
                select.select([self.sock], [], [], 0.1)
            except (OSError, ValueError):
                return
            with self.lock:
                self.take()

    def take(self):
        """Everything queued now (the caller holds the lock)."""
        while True:
            try:
                self.got.append(self.sock.recv(65536).decode("utf-8", "replace"))
            except BlockingIOError:
                return
            except OSError:
                return

    def lines(self, pid=None):
        """Lines since the last call; with pid, only that process's (the
        session has exited, so all it sent is queued or taken)."""
        if self.sock is None:
            return []
        with self.lock:
            self.take()
            out, self.got = self.got, []
        if pid is None:
            return out
        return [l for l in out if "smtpd[%d]:" % pid in l]

    def close(self):
        if self.sock is not None:
            self.stop = True
            self.thread.join(2)
            self.sock.close()
            os.unlink("/dev/log")


def session(args, data=b"QUIT\r\n"):
    """One smtpd run; its pid stays in session.pid for Syslog.lines."""
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    env.pop("LISTEN_FDS", None)
    p = subprocess.Popen([SMTPD] + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    session.pid = p.pid
    try:
        out, err = p.communicate(data, timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def bad_configs(top, log):
    conf = os.path.join(top, "bad.conf")
    cases = [
        ("mailbox line without a directory",
         "domain example.org\nmaildir %s/m\nmailbox a@example.org\n" % top, "line 3"),
        ("duplicate address",
         "mailbox a@example.org %s/a\nmailbox b@example.org %s/b\n"
         "# same address, other case\nmailbox A@Example.ORG %s/c\n" % (top, top, top),
         "line 4: duplicate mailbox address"),
        ("bad mailbox address", "maildir %s/m\nmailbox a..b@example.org %s/a\n" % (top, top),
         "line 2: bad mailbox address"),
        ("bad domain", "maildir %s/m\ndomain bad_name.example\n" % top, "line 2: bad domain"),
        ("bad delimiter", "maildir %s/m\nrecipient-delimiter @\n" % top,
         "line 2: recipient-delimiter"),
        ("bad create-folders", "maildir %s/m\ncreate-folders maybe\n" % top,
         "line 2: create-folders"),
        ("unknown key", "maildir %s/m\nmailboxes a@example.org %s/a\n" % (top, top),
         "line 2: unknown key"),
        ("no destination", "domain example.org\n", "no destination"),
    ]
    for what, text, expect in cases:
        write(conf, text)
        before = log.lines()
        rc, out, _ = session(["-c", conf])
        check(rc == 78, "%s: exit %d, not 78" % (what, rc))
        check(out.startswith("421 4.3.0 ") and expect in out.split("\r\n")[0],
              "%s: reply %r lacks %r" % (what, out, expect))
        if log.sock is not None:
            got = [l for l in log.lines(session.pid) if expect in l]
            check(len(got) == 1 and "configuration error" in got[0],
                  "%s: log lines %r" % (what, got))
        del before
        # smtpd -C refuses the same file, says why on stderr, writes no map.
        rc, out, err = session(["-C", conf], b"")
        check(rc == 78 and expect in err and out == "",
              "%s: -C gave %d %r %r" % (what, rc, out, err))
        check(not os.path.exists(conf + ".cdb") and not os.path.exists(conf + ".cdb.tmp"),
              "%s: -C left a map behind" % what)

    # A missing or unreadable configuration file.
    rc, out, _ = session(["-c", os.path.join(top, "missing.conf")])
    check(rc == 78 and out.startswith("421 4.3.0 cannot open"), "missing file: %d %r" % (rc, out))
    rc, out, _ = session(["-c", top])
    check(rc == 78 and out.startswith("421 4.3.0 cannot read"), "directory as file: %d %r" % (rc, out))

    # An unreadable map: FILE.cdb newer than FILE, but not a map.
    write(conf, "maildir %s/m\n" % top)
    write(conf + ".cdb", "this is not a cdb\n")
    st = os.stat(conf)
    os.utime(conf + ".cdb", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    rc, out, _ = session(["-c", conf])
    check(rc == 78 and out.startswith("421 4.3.0 cannot read %s.cdb" % conf),
          "unreadable map: %d %r" % (rc, out))
    os.unlink(conf + ".cdb")


RCPTS = (b"EHLO c.example\r\nMAIL FROM:<s@c.example>\r\n"
         b"RCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\n"
         b"RCPT TO:<x@elsewhere.example>\r\nRCPT TO:<postmaster>\r\n"
         b"DATA\r\nSubject: map\r\n\r\nhi\r\n.\r\nQUIT\r\n")


def delivered(path):
    d = os.path.join(path, "new")
    return len(os.listdir(d)) if os.path.isdir(d) else 0


def compiled_map(top, log):
    conf = os.path.join(top, "map.conf")
    a, b = os.path.join(top, "A"), os.path.join(top, "B")
    first = ("hostname mx-from-map.example\ndomain example.org\n"
             "mailbox alice@example.org %s\n" % a)
    write(conf, first)
    rc, out, err = session(["-C", conf], b"")
    check(rc == 0 and out == "" and err == "", "-C: %d %r %r" % (rc, out, err))
    check(os.stat(conf + ".cdb").st_mtime_ns > os.stat(conf).st_mtime_ns,
          "the map is not strictly newer than the file")
    check(not os.path.exists(conf + ".cdb.tmp"), "-C left its temporary file")

    # The map stands for the file: change the file but keep it older than the map.
    write(conf, first.replace(a, b).replace("mx-from-map", "mx-from-file"))
    cdb = os.stat(conf + ".cdb")
    os.utime(conf, ns=(cdb.st_atime_ns, cdb.st_mtime_ns - 1))
    log.lines()
    rc, out, _ = session(["-c", conf], RCPTS)
    replies = out.split("\r\n")
    check(rc == 0 and replies[0] == "220 mx-from-map.example ESMTP", "map greeting %r" % replies[0])
    check("250 2.1.5 Ok" in replies and "550 5.1.1 User unknown" in replies and
          "550 5.7.1 Relay access denied" in replies, "map replies %r" % replies)
    check(delivered(a) == 1 and delivered(b) == 0, "map routed to B, not A")
    check(not any("not newer" in l for l in log.lines(session.pid)),
          "warning logged for a fresh map")

    # Same nanosecond: not newer, so the file is parsed, with a warning.
    os.utime(conf, ns=(cdb.st_atime_ns, cdb.st_mtime_ns))
    rc, out, _ = session(["-c", conf], RCPTS)
    check(out.startswith("220 mx-from-file.example"), "equal mtimes: used the map %r" % out[:40])
    check(delivered(b) == 1, "equal mtimes: not routed by the file")
    if log.sock is not None:
        got = [l for l in log.lines(session.pid) if "not newer than" in l]
        check(len(got) == 1 and "warning" in got[0], "stale map warning %r" % got)

    # A file edited after compiling: parsed, warning again; -C brings the map back.
    os.utime(conf, ns=(cdb.st_atime_ns, cdb.st_mtime_ns + 1000))
    rc, out, _ = session(["-c", conf], RCPTS)
    check(out.startswith("220 mx-from-file.example") and delivered(b) == 2, "newer file not parsed")
    rc, _, _ = session(["-C", conf], b"")
    rc2, out, _ = session(["-c", conf], RCPTS)
    check(rc == 0 and out.startswith("220 mx-from-file.example") and delivered(b) == 3,
          "recompiled map not used: %r" % out[:40])
    check(os.stat(conf + ".cdb").st_mtime_ns > os.stat(conf).st_mtime_ns, "recompiled map older")


def sub_addresses(top):
    """recipient-delimiter and create-folders from the file, parsed and compiled."""
    for compiled in (False, True):
        base = os.path.join(top, "sub%d" % compiled)
        box = os.path.join(base, "alice")
        os.makedirs(os.path.join(box, ".work"))
        conf = os.path.join(base, "smtpd.conf")
        for text, rcpt, where in (
                ("", b"alice+work", ".work"),
                ("recipient-delimiter\n", b"alice+work", None),
                ("recipient-delimiter +-\n", b"alice-work", ".work"),
                ("recipient-delimiter -\ncreate-folders yes\n", b"alice-new", ".new"),
                ("create-folders no\n", b"alice+other", "")):
            write(conf, "domain example.org\nmailbox alice@example.org %s\n%s" % (box, text))
            if compiled:
                rc, _, err = session(["-C", conf], b"")
                check(rc == 0, "-C %r: %d %s" % (text, rc, err))
            elif os.path.exists(conf + ".cdb"):
                os.unlink(conf + ".cdb")
            before = {d: delivered(os.path.join(box, d)) for d in ("", ".work", ".new", ".other")}
            rc, out, _ = session(["-c", conf], b"EHLO c.example\r\nMAIL FROM:<s@c.example>\r\n"
                                 b"RCPT TO:<" + rcpt + b"@example.org>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n")
            mode = "compiled" if compiled else "parsed"
            if where is None:  # sub-addresses off: alice+work is nobody
                check("550 5.1.1 User unknown" in out and
                      all(delivered(os.path.join(box, d)) == n for d, n in before.items()),
                      "%s %r: %s was not refused (%r)" % (mode, text, rcpt, out))
                continue
            check(delivered(os.path.join(box, where)) == before[where] + 1,
                  "%s %r: %s not in %r (%r)" % (mode, text, rcpt, where, out))
            check(not os.path.exists(os.path.join(box, ".other")), "folder made without create-folders")


def main():
    if not os.access(SMTPD, os.X_OK):
        print("no smtpd at", SMTPD)
        return 1
    top = tempfile.mkdtemp(prefix="smtpd-map.")
    log = Syslog()
    try:
        bad_configs(top, log)
        compiled_map(top, log)
        sub_addresses(top)
    finally:
        log.close()
        shutil.rmtree(top, ignore_errors=True)
    print("config-map: %d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
