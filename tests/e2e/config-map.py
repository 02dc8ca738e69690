#!/usr/bin/env python3
"""Configuration errors and the compiled mailbox map, through ./smtpd itself.

Bad configurations (a mailbox line without a directory, a duplicate address,
a NUL byte, a single-value key given twice, an unreadable map, ...) get
421 4.3.0 naming the line, exit 78, and one log line. smtpd -C FILE writes
FILE.cdb with FILE's owner and group; a session uses it only while FILE is
the file it was compiled from (cp -p or mv of a backup, an edit, a chmod
all end that) and logs a warning otherwise. The log is read from a
datagram socket at /dev/log when no syslog owns that path; only the lines
of the session just run count (smtpd[PID]), as any other smtpd on the
machine logs there too while we hold the path.
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
        # A NUL byte is never cut off or skipped: the whole line is refused.
        ("NUL-led domain line", "maildir %s/m\n\0domain example.org\n" % top,
         "line 2: NUL byte"),
        ("NUL inside a maildir", "maildir %s/md\0/../elsewhere\n" % top, "line 1: NUL byte"),
        ("NUL in a comment", "# a \0 comment\nmaildir %s/m\n" % top, "line 1: NUL byte"),
        # A single-value key given twice; domain and mailbox lines repeat.
        ("maildir twice", "maildir %s/m\ndomain a.example\ndomain b.example\nmaildir %s/n\n"
         % (top, top), "line 4: maildir already given on line 1"),
        ("hostname twice", "hostname a.example\nmaildir %s/m\nhostname b.example\n" % top,
         "line 3: hostname already given on line 1"),
        ("timeout twice", "maildir %s/m\ntimeout 30\ntimeout 30\n" % top,
         "line 3: timeout already given on line 2"),
        ("recipient-delimiter twice", "maildir %s/m\nrecipient-delimiter\n"
         "recipient-delimiter +\n" % top, "line 3: recipient-delimiter already given on line 2"),
        ("create-folders twice", "maildir %s/m\ncreate-folders no\ncreate-folders yes\n" % top,
         "line 3: create-folders already given on line 2"),
        ("user twice", "maildir %s/m\nuser root\nuser root\n" % top,
         "line 3: user already given on line 2"),
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


def map_session(args, data, conf):
    """A session over pipes; also says whether it held FILE.cdb open or mapped
    (read in /proc after the greeting, when the configuration is loaded)."""
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    env.pop("LISTEN_FDS", None)
    p = subprocess.Popen([SMTPD] + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    session.pid = p.pid
    greeting = p.stdout.readline()
    seen = []
    try:
        fds = "/proc/%d/fd" % p.pid
        for fd in os.listdir(fds):
            try:
                seen.append(os.readlink(os.path.join(fds, fd)))
            except OSError:
                pass
        with open("/proc/%d/maps" % p.pid) as f:
            seen += [l.split()[-1] for l in f if len(l.split()) >= 6]
    except OSError:
        pass  # gone already: a 421 greeting
    out, _ = p.communicate(data, timeout=60)
    return p.returncode, (greeting + out).decode("utf-8", "replace"), conf + ".cdb" in seen


def compiled_map(top, log):
    conf = os.path.join(top, "map.conf")
    backup = os.path.join(top, "map.conf.backup")
    a, b = os.path.join(top, "A"), os.path.join(top, "B")
    first = ("hostname mx-from-map.example\ndomain example.org\n"
             "mailbox alice@example.org %s\n" % a)
    # Same length as the first: only the file's identity tells them apart.
    second = first.replace(a, b).replace("mx-from-map", "mx-from-bak")
    write(backup, second)
    old = os.stat(backup)
    os.utime(backup, ns=(old.st_atime_ns, old.st_mtime_ns - 10 ** 10))
    write(conf, first)
    rc, out, err = session(["-C", conf], b"")
    check(rc == 0 and out == "" and err == "", "-C: %d %r %r" % (rc, out, err))
    check(not os.path.exists(conf + ".cdb.tmp"), "-C left its temporary file")

    # The map stands for the file it was compiled from.
    log.lines()
    rc, out, used = map_session(["-c", conf], RCPTS, conf)
    replies = out.split("\r\n")
    check(rc == 0 and replies[0] == "220 mx-from-map.example ESMTP", "map greeting %r" % replies[0])
    check(used, "a fresh map was not used")
    check("250 2.1.5 Ok" in replies and "550 5.1.1 User unknown" in replies and
          "550 5.7.1 Relay access denied" in replies, "map replies %r" % replies)
    check(delivered(a) == 1 and delivered(b) == 0, "map routed to B, not A")
    check(not any("run smtpd -C" in l for l in log.lines(session.pid)),
          "warning logged for a fresh map")

    # The file replaced from an older backup: cp -p (same inode, older mtime),
    # mv (another inode), an edit made to look older: each time FILE is
    # parsed, with a warning, until -C brings the map back.
    replacements = [
        ("cp -p", lambda: shutil.copy2(backup, conf)),
        ("mv", lambda: (shutil.copy2(backup, backup + ".2"), os.rename(backup + ".2", conf))),
        ("older mtime", lambda: (write(conf, second),
                                 os.utime(conf, ns=(old.st_atime_ns, old.st_mtime_ns)))),
        ("chmod", lambda: os.chmod(conf, 0o640)),
    ]
    for what, replace in replacements:
        write(conf, first)
        rc, _, err = session(["-C", conf], b"")
        check(rc == 0, "-C before %s: %d %s" % (what, rc, err))
        rc, out, used = map_session(["-c", conf], RCPTS, conf)
        check(used and out.startswith("220 mx-from-map.example"), "%s: map not used first" % what)
        replace()
        if what == "chmod":  # same bytes, but the map no longer vouches for them
            expect = "220 mx-from-map.example"
        else:
            expect = "220 mx-from-bak.example"
        before = delivered(b), delivered(a)
        log.lines()
        rc, out, used = map_session(["-c", conf], RCPTS, conf)
        check(not used and out.startswith(expect), "%s: stale map used: %r" % (what, out[:40]))
        if what != "chmod":
            check(delivered(b) == before[0] + 1 and delivered(a) == before[1],
                  "%s: not routed by the file" % what)
        if log.sock is not None:
            got = [l for l in log.lines(session.pid) if "run smtpd -C" in l]
            check(len(got) == 1 and "warning" in got[0], "%s: stale map warning %r" % (what, got))
        rc, _, _ = session(["-C", conf], b"")
        rc2, out, used = map_session(["-c", conf], RCPTS, conf)
        check(rc == 0 and used and out.startswith(expect), "%s: recompiled map not used" % what)


def map_owner(top):
    """-C gives the map the file's owner and group (mode as the file, less
    write for group and others), so the shipped unit (User=mail) reads it."""
    if os.geteuid() != 0:
        print("note: not root; map owner not checked")
        return
    import grp
    import pwd
    try:
        mail = pwd.getpwnam("mail")
        mail_gid = grp.getgrnam("mail").gr_gid
    except KeyError:
        print("note: no user or group mail; map owner not checked")
        return
    base = os.path.join(top, "owner")
    box = os.path.join(base, "M")
    os.makedirs(box)
    os.chown(box, mail.pw_uid, mail.pw_gid)
    os.chmod(top, 0o755)
    os.chmod(base, 0o755)
    conf = os.path.join(base, "smtpd.conf")
    write(conf, "domain example.org\nmailbox alice@example.org %s\n" % box)
    for owner, group, mode in ((0, mail_gid, 0o640),
                               (mail.pw_uid, 0, 0o600), (0, 0, 0o664)):
        os.chown(conf, owner, group)
        os.chmod(conf, mode)
        rc, _, err = session(["-C", conf], b"")
        st = os.stat(conf + ".cdb")
        check(rc == 0 and (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (owner, group, mode & 0o644),
              "map of a %d:%d %o file is %d:%d %o (%r)" % (owner, group, mode, st.st_uid,
                                                          st.st_gid, st.st_mode & 0o7777, err))
    # As the unit runs it: user mail, reading a root:mail 0640 file and its map.
    os.chown(conf, 0, mail_gid)
    os.chmod(conf, 0o640)
    session(["-C", conf], b"")

    def become_mail():
        os.setgroups([])
        os.setgid(mail.pw_gid)
        os.setuid(mail.pw_uid)
    p = subprocess.run([SMTPD, "-c", conf], input=RCPTS, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60, preexec_fn=become_mail)
    out = p.stdout.decode("utf-8", "replace")
    check(p.returncode == 0 and out.startswith("220 ") and delivered(box) == 1,
          "as user mail: %d %r" % (p.returncode, out[:80]))


def sub_addresses(top):
    """recipient-delimiter and create-folders from the file, parsed and compiled."""
    for compiled in (False, True):
        base = os.path.join(top, "sub%d" % compiled)
        box = os.path.join(base, "alice")
        os.makedirs(os.path.join(box, ".work"))
        write(os.path.join(box, ".work", "maildirfolder"), "")  # a real Maildir++ folder
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
        map_owner(top)
        sub_addresses(top)
    finally:
        log.close()
        shutil.rmtree(top, ignore_errors=True)
    print("config-map: %d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
