"""launch: real launchers and real clients for the end-to-end tests.

A Launcher starts one listening server (systemd-socket-activate, tcpserver,
xinetd) on a free loopback port in its own process group, waits until it
answers with a bounded poll, and is stopped by its pid (and its group, so no
smtpd child outlives the test). The clients are the real programs: Python's
smtplib, swaks, curl; the Maildir is read back with mblaze. No DNS anywhere:
every client is given its HELO name, and launchers are told not to look up.
"""
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
    """A port nobody listens on right now (the kernel's choice)."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def greeting(host, port, family=socket.AF_INET, limit=2.0):
    """Connect, read the greeting, say QUIT; the greeting or b''."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as c:
            c.settimeout(limit)
            c.connect((host, port))
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


class Launcher:
    """One listening launcher, started here and stopped by its pid."""

    def __init__(self, argv, port, host="127.0.0.1", family=socket.AF_INET, env=None,
                 cwd=None):
        self.port, self.host, self.family = port, host, family
        self.log = open(os.devnull, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, env=env, cwd=cwd,
                                     start_new_session=True)
        self.wait_ready()

    def wait_ready(self, limit=10.0):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise Failed("launcher %s exited with %s" % (self.proc.args[0], self.proc.returncode))
            if greeting(self.host, self.port, self.family).startswith(b"220 "):
                return
            time.sleep(0.05)
        self.stop()
        raise Failed("no greeting on port %d within %.0f s" % (self.port, limit))

    def stop(self):
        """SIGTERM to the launcher and everything it started, then SIGKILL."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)	# smtpd children left behind
        except ProcessLookupError:
            pass
        self.log.close()


def socket_activate(box, inetd, host="127.0.0.1", family=socket.AF_INET, env=None):
    """smtpd under systemd-socket-activate --accept, stdin/stdout or fd 3."""
    port = free_port(family, host)
    where = "[%s]:%d" % (host, port) if family == socket.AF_INET6 else "%s:%d" % (host, port)
    argv = ["systemd-socket-activate", "-l", where, "--accept"]
    if inetd:
        argv.append("--inetd")
    return Launcher(argv + [SMTPD, "-c", box.config], port, host, family, env=env)


def tcpserver(box):
    """smtpd under ucspi-tcp's tcpserver, with the run line from units/tcpserver.run."""
    port = free_port()
    # SMTPD_USER empty: the test's Maildir belongs to whoever runs the test.
    env = dict(os.environ, SMTPD=SMTPD, SMTPD_CONFIG=box.config, SMTPD_ADDRESS="127.0.0.1",
               SMTPD_PORT=str(port), SMTPD_USER="")
    return Launcher(["sh", os.path.join(UNITS, "tcpserver.run")], port, env=env)


def xinetd(box):
    """smtpd under a real xinetd in the foreground, from units/xinetd.conf."""
    port = free_port()
    with open(os.path.join(UNITS, "xinetd.conf")) as f:
        service = f.read()
    # The example serves port 25 as user mail; here a free port, as ourselves.
    service = re.sub(r"service\s+smtp\b", "service smtpd-test", service)
    service = re.sub(r"(?m)^(\s*)port\s*=.*$", r"\1port = %d\n\1type = UNLISTED" % port, service)
    service = re.sub(r"(?m)^(\s*)bind\s*=.*$", r"\1bind = 127.0.0.1", service)
    service = re.sub(r"(?m)^(\s*)user\s*=.*$", r"\1user = %s" % os_user(), service)
    service = re.sub(r"(?m)^(\s*)group\s*=.*$", "", service)
    service = re.sub(r"(?m)^(\s*)server\s*=.*$", r"\1server = %s" % SMTPD, service)
    service = re.sub(r"(?m)^(\s*)server_args\s*=.*$", r"\1server_args = -c %s" % box.config,
                     service)
    check("bind = 127.0.0.1" in service, "units/xinetd.conf has no bind line")
    conf = os.path.join(box.dir, "xinetd.conf")
    with open(conf, "w") as f:
        f.write("defaults\n{\n\tlog_type = FILE %s/xinetd.log\n}\n%s" % (box.dir, service))
    # xinetd unlinks its pid file on exit: never a shared path.
    argv = ["xinetd", "-dontfork", "-f", conf, "-pidfile", os.path.join(box.dir, "xinetd.pid")]
    return Launcher(argv, port)


def os_user():
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


# ---- clients -------------------------------------------------------------

def send_smtplib(port, sender, rcpts, body, host="127.0.0.1"):
    """One message with smtplib; body is bytes with CRLF line ends."""
    with smtplib.SMTP(host, port, local_hostname=HELO, timeout=20) as s:
        refused = s.sendmail(sender, rcpts, body)
        check(refused == {}, "smtplib: refused %r" % refused)


def run(argv, limit=30, data=None):
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
    argv = ["curl", "--silent", "--show-error", "--max-time", "20",
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
