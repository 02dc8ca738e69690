"""smtpdtest: helpers for the end-to-end tests that drive ./smtpd itself.

Every server is started by the test, talks over a pipe, a socketpair or a
loopback TCP connection, and is waited for (or killed) by its pid. Every
loop is bounded in count and time. No DNS: names are given explicitly.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

SMTPD = os.path.abspath(os.environ.get("SMTPD", "./smtpd"))

HELLO = b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
SMUGGLED = (b"MAIL FROM:<s@example.org>\r\nRCPT TO:<r@example.org>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nx\r\n.\r\n")

# doc/smuggling.md, sequences 1-10: none of these may end the data.
FAKE_ENDS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\n", b"\n.\r", b"\r.\r\n",
             b"\r\n.\r", b"\r\n.\r\r\n", b"\r\r\n.\r\r\n", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n",
             # sequence 11: controls, ordinary data
             b"\r\n..\r\n", b"\r\n. \r\n", b"\r\n.x\r\n"]


def sanitizer_reports():
    """Send sanitizer reports of every child into one directory (stderr may be
    the client or /dev/null here); returns a function listing what arrived."""
    where = tempfile.mkdtemp(prefix="smtpd-san.")
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        os.environ[var] = os.environ.get(var, "") + ":log_path=%s/report" % where

    def found():
        names = os.listdir(where)
        text = ""
        for n in names:
            with open(os.path.join(where, n), errors="replace") as f:
                text += f.read()
        shutil.rmtree(where, ignore_errors=True)
        return text
    return found


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


class Box:
    """A throw-away directory with a Maildir and a config file."""

    def __init__(self, extra="", timeout=1, session_timeout=30):
        self.dir = tempfile.mkdtemp(prefix="smtpd-e2e.")
        self.maildir = os.path.join(self.dir, "Maildir")
        self.config = os.path.join(self.dir, "smtpd.conf")
        self.write_config(extra, timeout, session_timeout)

    def write_config(self, extra="", timeout=1, session_timeout=30):
        with open(self.config, "w") as f:
            f.write("hostname mx.example\ndomain example.org\n"
                    "maildir %s\ntimeout %d\nsession-timeout %d\n%s"
                    % (self.maildir, timeout, session_timeout, extra))

    def files(self, sub):
        try:
            return sorted(os.listdir(os.path.join(self.maildir, sub)))
        except FileNotFoundError:
            return []

    def messages(self):
        out = []
        for name in self.files("new"):
            with open(os.path.join(self.maildir, "new", name), "rb") as f:
                out.append(f.read())
        return out

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def argv(box):
    return [SMTPD, "-c", box.config]


def run_pipe(box, data, limit=30, env=None, cmd=None):
    """Feed data on a pipe, collect all replies; returns (replies, status, seconds)."""
    start = time.monotonic()
    p = subprocess.Popen(cmd or argv(box), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, env=env)
    try:
        out, _ = p.communicate(data, timeout=limit)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise Failed("smtpd did not end within %d s" % limit)
    except BrokenPipeError:
        out = p.stdout.read()
        p.wait()
    return out, p.returncode, time.monotonic() - start


def spawn_socket(box, cmd=None, env=None):
    """smtpd on one end of a socketpair (as under inetd); returns (proc, our end)."""
    ours, theirs = socket.socketpair()
    p = subprocess.Popen(cmd or argv(box), stdin=theirs, stdout=theirs,
                         stderr=subprocess.DEVNULL, env=env, close_fds=True)
    theirs.close()
    return p, ours


class Listener:
    """A minimal tcpserver on 127.0.0.1: each accepted connection runs ./smtpd."""

    def __init__(self, box):
        self.box = box
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.procs = []

    def connect(self, rcvbuf=None):
        """Connect a client (with a receive buffer of rcvbuf bytes, if given)
        and start the server for it; returns the client socket."""
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        c.settimeout(10)
        c.connect(("127.0.0.1", self.port))
        conn, _ = self.sock.accept()
        self.procs.append(subprocess.Popen(argv(self.box), stdin=conn, stdout=conn,
                                           stderr=subprocess.DEVNULL))
        conn.close()
        return c

    def close(self, limit=30):
        self.sock.close()
        for p in self.procs:
            try:
                p.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise Failed("smtpd pid %d did not end" % p.pid)


def replies(raw):
    """Final lines of each reply (continuation lines dropped), as str."""
    out = []
    for line in raw.split(b"\r\n"):
        if len(line) >= 4 and line[3:4] == b"-":
            continue
        if line:
            out.append(line.decode("latin-1"))
    return out


def read_until(sock, want, limit=5.0):
    """Read until `want` (bytes) has been seen or limit seconds pass."""
    sock.settimeout(0.2)
    buf = b""
    end = time.monotonic() + limit
    while want not in buf and time.monotonic() < end:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def read_all(sock, limit=5.0):
    """Read until EOF or limit seconds pass."""
    return read_until(sock, b"\0never\0", limit)


def wait(p, limit):
    try:
        return p.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise Failed("smtpd pid %d still running after %.1f s" % (p.pid, limit))


def main(tests):
    """Run tests [(name, fn)] in order; print one line each and a summary."""
    only = sys.argv[1:]
    passed = failed = 0
    reports = sanitizer_reports()
    for name, fn in tests:
        if only and name not in only:
            continue
        start = time.monotonic()
        try:
            fn()
        except Failed as e:
            failed += 1
            print("FAIL %s: %s" % (name, e))
            continue
        passed += 1
        print("ok   %s (%.1f s)" % (name, time.monotonic() - start))
    text = reports()
    if text:
        failed += 1
        print("FAIL sanitizer reports:\n" + text[:4000])
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)

