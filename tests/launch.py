"""launch: real launchers and real clients for the end-to-end tests.

A Launcher starts one listening server (systemd-socket-activate, tcpserver,
xinetd) on a free loopback port in its own process group, waits until a
process of that group listens there and answers (a bounded poll of /proc
and of the port), and is stopped by its pid (and its group, so no smtpd
child outlives the test). The clients are the real programs: Python's
smtplib, swaks, curl; the Maildir is read back with mblaze. No DNS anywhere:
every client is given its HELO name, and launchers are told not to look up.
"""
import errno
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtpdtest import SMTPD, Failed, check  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
UNITS = os.path.join(os.path.dirname(HERE), "units")
HELO = "client.example"


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A port nobody listens on right now (the kernel's choice). Someone may
    take it before our launcher binds it: Launcher checks who listens."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_taken(port, family=socket.AF_INET, host="127.0.0.1"):
    """True when binding host:port fails with EADDRINUSE."""
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return False
    except OSError as e:
        return e.errno == errno.EADDRINUSE
    finally:
        s.close()


def greeting(host, port, family=socket.AF_INET, limit=10.0, first=b"", source=None):
    """Connect (from source, when given), send first (a PROXY header for a
    server behind a balancer), read the greeting, say QUIT; the greeting or
    b''."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as c:
            c.settimeout(limit)
            if source is not None:
                c.bind((source, 0))
            c.connect((host, port))
            c.sendall(first)
            data = b""
            while b"\r\n" not in data:
                chunk = c.recv(512)
                if not chunk:
                    break
                data += chunk
            c.sendall(b"QUIT\r\n")
            while c.recv(512):
                pass
            return data
    except OSError:
        return b""


def tcp_sockets(match):
    """Inodes of the TCP sockets whose /proc/net/tcp{,6} row satisfies
    match(local_port, remote_port, state) (state as in the file, 0A: LISTEN)."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            f = open(name)
        except FileNotFoundError:
            continue
        with f:
            next(f)
            for line in f:
                w = line.split()
                local = int(w[1].rsplit(":", 1)[1], 16)
                remote = int(w[2].rsplit(":", 1)[1], 16)
                if match(local, remote, w[3]) and w[9] != "0":
                    found.add("socket:[%s]" % w[9])
    return found


def group_members(pgid):
    """Pids of the live processes in process group pgid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(name))
    return out


def holders(pids, inodes):
    """Those of pids that have one of the socket inodes open."""
    out = []
    for pid in pids:
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
            if any(os.readlink("/proc/%d/fd/%s" % (pid, fd)) in inodes for fd in fds):
                out.append(pid)
        except OSError:
            continue
    return out


class Launcher:
    """One listening launcher, started here and stopped by its pid.

    argv is the launcher's command for a port given by the caller, or a
    function make(port) giving (argv, env) for a port chosen here. A port
    from free_port is free only until someone binds it, so the launcher
    counts as ready only once a process of its own group holds the
    listening socket (read from /proc: a greeting from someone else's server
    on that port is never taken for ours); with make, a launcher that could
    not listen because the port was taken starts again on another port (at
    most 5 times). Subclasses may replace wait_ready (None or True: ready,
    False: the port is someone else's)."""

    def __init__(self, argv, port=None, host="127.0.0.1", family=socket.AF_INET, env=None,
                 cwd=None):
        self.host, self.family = host, family
        self.log = open(os.devnull, "wb")
        for _ in range(5 if callable(argv) else 1):
            if callable(argv):
                self.port = free_port(family, host)
                cmd, cmd_env = argv(self.port)
            else:
                self.port, cmd, cmd_env = port, argv, env
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=self.log, env=cmd_env, cwd=cwd,
                                         start_new_session=True)
            if self.wait_ready() is not False:
                return
            self.stop(close_log=False)
        self.log.close()
        raise Failed("%s could not listen: port %d (and any retries) taken by others"
                     % (cmd[0], self.port))

    def listening(self):
        socks = tcp_sockets(lambda local, remote, st: local == self.port and st == "0A")
        return socks, holders(group_members(self.proc.pid), socks)

    def wait_ready(self, limit=60.0):
        """True when ready; False when the port turned out to be someone else's."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            socks, ours = self.listening()
            if self.proc.poll() is not None or (socks and not ours):
                if port_taken(self.port, self.family, self.host) and not ours:
                    return False
                if self.proc.poll() is not None:
                    raise Failed("launcher %s exited with %s" % (self.proc.args[0],
                                                                 self.proc.returncode))
            elif ours and greeting(self.host, self.port, self.family).startswith(b"220 "):
                return True
            time.sleep(0.05)
        self.stop()
        raise Failed("no greeting on port %d within %.0f s" % (self.port, limit))

    def child(self, client, limit=30.0):
        """The pid of the session started for our connected socket client
        (the process of our group, not the launcher, holding its other end)."""
        mine = client.getsockname()[1]
        end = time.monotonic() + limit
        while time.monotonic() < end:
            conns = tcp_sockets(lambda local, remote, st: local == self.port and remote == mine)
            pids = [p for p in holders(group_members(self.proc.pid), conns)
                    if p != self.proc.pid]
            if len(pids) == 1:
                return pids[0]
            time.sleep(0.01)
        raise Failed("no single session process on port %d" % self.port)

    def stop(self, close_log=True):
        """SIGTERM to the launcher and everything it started, then SIGKILL.
        The launcher is reaped last: until then its pid, the group's id,
        cannot be given to anyone else, so the group signals reach only ours."""
        pid = self.proc.pid
        if self.proc.returncode is None:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            end = time.monotonic() + 10
            while time.monotonic() < end:
                if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    break
                time.sleep(0.01)
            try:
                os.killpg(pid, signal.SIGKILL)	# smtpd children left behind, or the launcher
            except ProcessLookupError:
                pass
            self.proc.wait()
        elif group_members(pid):	# reaped already: its sessions keep the id in use
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if close_log:
            self.log.close()


def socket_activate(box, inetd, host="127.0.0.1", family=socket.AF_INET, env=None):
    """smtpd under systemd-socket-activate --accept, stdin/stdout or fd 3."""
    def make(port):
        where = "[%s]:%d" % (host, port) if family == socket.AF_INET6 else "%s:%d" % (host, port)
        argv = ["systemd-socket-activate", "-l", where, "--accept"]
        if inetd:
            argv.append("--inetd")
        return argv + [SMTPD, "-c", box.config], env
    return Launcher(make, host=host, family=family)


def tcpserver(box):
    """smtpd under ucspi-tcp's tcpserver, with the run line from units/tcpserver.run."""
    def make(port):
        # SMTPD_USER empty: the test's Maildir belongs to whoever runs the test.
        env = dict(os.environ, SMTPD=SMTPD, SMTPD_CONFIG=box.config,
                   SMTPD_ADDRESS="127.0.0.1", SMTPD_PORT=str(port), SMTPD_USER="")
        return ["sh", os.path.join(UNITS, "tcpserver.run")], env
    return Launcher(make)


def xinetd(box):
    """smtpd under a real xinetd in the foreground, from units/xinetd.conf."""
    with open(os.path.join(UNITS, "xinetd.conf")) as f:
        example = f.read()

    def make(port):
        # The example serves port 25 as user mail; here a free port, as ourselves.
        service = re.sub(r"service\s+smtp\b", "service smtpd-test", example)
        service = re.sub(r"(?m)^(\s*)port\s*=.*$", r"\1port = %d\n\1type = UNLISTED" % port,
                         service)
        service = re.sub(r"(?m)^(\s*)bind\s*=.*$", r"\1bind = 127.0.0.1", service)
        service = re.sub(r"(?m)^(\s*)user\s*=.*$", r"\1user = %s" % os_user(), service)
        service = re.sub(r"(?m)^(\s*)group\s*=.*$", "", service)
        service = re.sub(r"(?m)^(\s*)server\s*=.*$", r"\1server = %s" % SMTPD, service)
        service = re.sub(r"(?m)^(\s*)server_args\s*=.*$",
                         r"\1server_args = -c %s" % box.config, service)
        check("bind = 127.0.0.1" in service, "units/xinetd.conf has no bind line")
        conf = os.path.join(box.dir, "xinetd.conf")
        with open(conf, "w") as f:
            f.write("defaults\n{\n\tlog_type = FILE %s/xinetd.log\n}\n%s" % (box.dir, service))
        # xinetd unlinks its pid file on exit: never a shared path.
        return ["xinetd", "-dontfork", "-f", conf, "-pidfile",
                os.path.join(box.dir, "xinetd.pid")], None
    return Launcher(make)


def os_user():
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


# ---- clients -------------------------------------------------------------

def send_smtplib(port, sender, rcpts, body, host="127.0.0.1"):
    """One message with smtplib; body is bytes with CRLF line ends."""
    with smtplib.SMTP(host, port, local_hostname=HELO, timeout=20) as s:
        refused = s.sendmail(sender, rcpts, body)
        check(refused == {}, "smtplib: refused %r" % refused)


def run(argv, limit=180, data=None):
    p = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=limit)
    if p.returncode != 0:
        raise Failed("%s exited %d:\n%s" % (argv[0], p.returncode,
                                            p.stdout.decode("latin-1")[-2000:]))
    return p.stdout


def send_swaks(port, sender, rcpt, body, pipeline=False, host="127.0.0.1"):
    """One message with swaks over TCP; body bytes are given whole (--data -)."""
    argv = ["swaks", "--server", host, "--port", str(port), "--helo", HELO,
            "--from", sender, "--to", rcpt, "--data", "-", "--timeout", "20"]
    if pipeline:
        argv.append("--pipeline")
    # swaks ends the data with CRLF . CRLF itself: give it the body without
    # its last line end, or the stored message gains an empty line.
    check(body.endswith(b"\r\n"), "body must end in CRLF")
    out = run(argv, data=body[:-2])
    if pipeline:
        check(b"PIPELINING" in out, "swaks --pipeline: server did not offer PIPELINING")
    return out


def send_curl(port, sender, rcpts, body, host="127.0.0.1"):
    """One message with curl's smtp:// (the path names our HELO)."""
    argv = ["curl", "--silent", "--show-error", "--max-time", "120",
            "smtp://%s:%d/%s" % (host, port, HELO), "--mail-from", sender]
    for r in rcpts:
        argv += ["--mail-rcpt", r]
    run(argv + ["--upload-file", "-"], data=body)


# ---- what arrived ----------------------------------------------------------

def stored(body):
    """What smtpd stores for a body with CRLF line ends: LF line ends and
    nothing else changed (the client stuffs a leading dot, smtpd unstuffs it)."""
    return body.replace(b"\r\n", b"\n")


def split_trace(msg):
    """(return_path, received, rest) of a stored message."""
    m = re.match(rb"Return-Path: (<[^>\n]*>)\n(Received: [^\n]*\n(?:\t[^\n]*\n)*)", msg)
    check(m is not None, "no Return-Path and Received at the top: %r" % msg[:200])
    return m.group(1).decode(), m.group(2).decode(), msg[m.end():]


def mblaze_read(maildir):
    """Every message as mblaze sees it: [(path, Return-Path header, raw text)]."""
    paths = run(["mlist", maildir]).decode().split()
    out = []
    for p in paths:
        rp = run(["mshow", "-n", "-q", "-h", "return-path", p]).decode().strip()
        raw = run(["mshow", "-n", "-r", p])
        out.append((p, rp, raw))
    return out


def expect_delivered(box, expected):
    """expected: [(token, sender, stored_bytes)]. Each token in exactly one file,
    that file byte-exact after our trace lines, and mblaze agrees."""
    msgs = box.messages()
    check(box.files("tmp") == [], "left in tmp/: %r" % box.files("tmp"))
    check(len(msgs) == len(expected), "%d messages in new/, expected %d"
          % (len(msgs), len(expected)))
    for token, sender, body in expected:
        found = [m for m in msgs if token in m]
        check(len(found) == 1, "%r arrived %d times" % (token, len(found)))
        rp, _, rest = split_trace(found[0])
        check(rp == "<%s>" % sender, "Return-Path %s, expected <%s>" % (rp, sender))
        check(rest == body, "body differs for %r:\n%r\n%r" % (token, rest[:300], body[:300]))
    seen = mblaze_read(box.maildir)
    check(len(seen) == len(expected), "mlist lists %d messages" % len(seen))
    for token, sender, _ in expected:
        mine = [s for s in seen if token.decode() in s[2].decode("utf-8", "replace")]
        check(len(mine) == 1, "mblaze: %r in %d messages" % (token, len(mine)))
        check(mine[0][1] == "Return-Path: <%s>" % sender,
              "mblaze Return-Path: %r" % mine[0][1])


def message(token, eight_bit=False):
    """A message with a unique token, CRLF line ends, a dot line to stuff."""
    lines = [b"From: Sender <sender@client.example>", b"To: rcpt@example.org",
             b"Subject: test " + token, b"Message-ID: <" + token + b"@client.example>",
             b"MIME-Version: 1.0"]
    if eight_bit:
        lines += [b"Content-Type: text/plain; charset=utf-8",
                  b"Content-Transfer-Encoding: 8bit"]
    lines += [b"", b"token " + token, b".leading dot", b"tab\tand  spaces  "]
    if eight_bit:
        lines.append("8-bit: caf\u00e9 \u00fcber \u2713".encode())
    lines += [b"last line"]
    return b"\r\n".join(lines) + b"\r\n"


def launcher_suite(start):
    """The real clients against one launcher: [(name, fn)] for smtpdtest.main."""
    from smtpdtest import Box

    def clients():
        box = Box()
        server = start(box)
        try:
            expected = []
            body = message(b"SMTPLIB1", eight_bit=True)
            send_smtplib(server.port, "s1@client.example",
                         ["a@example.org", "b@example.org", "c@example.org"], body)
            expected.append((b"SMTPLIB1", "s1@client.example", stored(body)))
            body = message(b"SWAKS1")
            send_swaks(server.port, "s2@client.example", "a@example.org", body)
            expected.append((b"SWAKS1", "s2@client.example", stored(body)))
            body = message(b"SWAKSPIPE1")
            send_swaks(server.port, "s3@client.example", "b@example.org", body, pipeline=True)
            expected.append((b"SWAKSPIPE1", "s3@client.example", stored(body)))
            body = message(b"CURL1", eight_bit=True)
            send_curl(server.port, "s4@client.example", ["a@example.org", "d@example.org"], body)
            expected.append((b"CURL1", "s4@client.example", stored(body)))
        finally:
            server.stop()
        try:
            expect_delivered(box, expected)
        finally:
            box.close()
    return [("real clients", clients)]


def group_state(pgid, port):
    """listening (a process of group pgid listens on TCP port), waiting, or
    gone (its leader pgid has exited)."""
    try:
        with open("/proc/%d/stat" % pgid) as f:
            gone = f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        gone = True
    if gone:
        return "gone"
    socks = tcp_sockets(lambda local, remote, st: local == port and st == "0A")
    return "listening" if holders(group_members(pgid), socks) else "waiting"


if __name__ == "__main__":
    # For the shell tests: launch.py state PGID PORT
    if len(sys.argv) == 4 and sys.argv[1] == "state":
        print(group_state(int(sys.argv[2]), int(sys.argv[3])))
    else:
        sys.exit("usage: launch.py state PGID PORT")
