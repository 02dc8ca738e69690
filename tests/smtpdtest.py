"""smtpdtest: helpers for the end-to-end tests that drive ./smtpd itself.

Every server is started by the test, talks over a pipe, a socketpair or a
loopback TCP connection, and is waited for (or killed) by its pid. Every
loop is bounded in count and time. No DNS: names are given explicitly.
"""
import fcntl
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
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


def read_until(sock, want, limit=30.0):
    """Read until `want` (bytes) has been seen, EOF, or limit seconds pass.
    The limit only bounds a hang: a passing test never reaches it, so it is
    generous enough for a loaded machine."""
    before = sock.gettimeout()
    sock.settimeout(0.2)
    buf = b""
    end = time.monotonic() + limit
    try:
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
    finally:
        sock.settimeout(before)
    return buf


def read_all(sock, limit=30.0):
    """Read until EOF or limit seconds pass."""
    return read_until(sock, b"\0never\0", limit)


def write_all(sock, data, chunk=65536):
    """Write data to sock with plain write(2), waiting in select(2) when it
    is full, chunk bytes at a time; False when smtpd has gone (EPIPE,
    ECONNRESET), an outcome, not an error. Not sendall: the socket timeouts
    that read_until sets switch the shared file's O_NONBLOCK on and off, and
    a sendall begun under a 0.2 s timeout gives up after 0.2 s whatever
    smtpd's pace (or spins on EAGAIN when it began without one)."""
    fd = sock.fileno()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view[:chunk]):]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
        except OSError:
            return False
    return True


def feed(sock, data, chunk=65536):
    """write_all from a thread while the caller reads (no deadlock when
    smtpd's replies fill our buffer); returns the thread."""
    th = threading.Thread(target=write_all, args=(sock, data, chunk), daemon=True)
    th.start()
    return th


def send_while_open(sock, data):
    """sendall, but a server that has rightly gone (after a 421, a stop, an
    error limit) is an outcome, not an error: returns False when it had."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def shut(sock):
    """We have nothing more to say: EOF for a server that drains our input
    before it closes (a lingering close), whatever state the socket is in."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def proc_state(pid):
    """(state letter, system call) of a live process from /proc: state S and
    a syscall number mean it sleeps in that call; None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    try:	# needs the right to trace pid: ours as its parent, or root
        with open("/proc/%d/syscall" % pid) as f:
            call = f.read().split()[0]
    except (OSError, IndexError):
        call = "?"
    return state, call


def unread(sock):
    """Bytes we sent on sock that the other end has not read yet: SIOCOUTQ
    on a socketpair (the kernel frees our bytes only once they are read),
    the peer's receive queue in /proc/net/tcp for loopback TCP, FIONREAD
    for our end of a pipe (what is in the pipe)."""
    if not isinstance(sock, socket.socket):
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]
    if sock.family == socket.AF_UNIX:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    mine, theirs = sock.getsockname()[1], sock.getpeername()[1]
    total = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            next(f)
            for line in f:
                w = line.split()
                if (int(w[1].rsplit(":", 1)[1], 16) == theirs and
                        int(w[2].rsplit(":", 1)[1], 16) == mine):
                    total += int(w[4].split(":")[1], 16)
    return total


def wait_idle(pid, sock=None, limit=30.0):
    """Wait until smtpd has read all we sent on sock (a socket, or our end of
    its stdin pipe) and sleeps in a system
    call: it waits for more input (or to write, if we do not read). The
    observable moment a test means by "while idle" or "mid-DATA"; a bounded
    poll of /proc, never a guessed sleep."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        st = proc_state(pid)
        if st is None or st[0] == "Z":
            raise Failed("pid %d ended while we waited for it to be idle" % pid)
        if st[0] == "S" and st[1] != "running" and (sock is None or unread(sock) == 0):
            # Twice in a row: a sleep on the way to the wait (a page of the
            # binary read in, say) must not pass for the wait itself.
            time.sleep(0.005)
            st = proc_state(pid)
            if st is not None and st[0] == "S" and (sock is None or unread(sock) == 0):
                return
        time.sleep(0.002)
    raise Failed("pid %d not idle within %.0f s: %r" % (pid, limit, proc_state(pid)))


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

