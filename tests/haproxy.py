"""haproxy: a real HAProxy in front of the servers under test.

HAProxy runs in the foreground (-db) in its own process group with a
configuration written here: mode tcp, one frontend on a loopback socket we
bind to port 0 ourselves and hand over as fd@N (so the port is known,
nobody can take it first, and it listens before HAProxy is ready), one backend whose servers are given as
addresses (no DNS: HAProxy is never given a name to resolve), reached from
the balancer's own `source` address, each with `send-proxy` or
`send-proxy-v2`. With check="smtpchk" HAProxy runs its SMTP health check
(`option smtpchk`); the state it reaches is read from its stats socket.
Clients connect from another loopback address (127.0.0.2 by default), so
the address in the PROXY header is told apart from the balancer's.
It is stopped by its pid (and its group).
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import launch
from smtpdtest import SMTPD, Failed

CLIENT = "127.0.0.2"	# where the test's clients come from
BALANCER = "127.0.0.1"	# where HAProxy connects to the servers from
HAPROXY = "haproxy"


class HAProxy:
    """One HAProxy, started here, listening on 127.0.0.1:self.port."""

    def __init__(self, servers, send_proxy="v2", check=None, balance="roundrobin",
                 helo="balancer.example", inter_ms=200, backend=()):
        """servers: [(address, port)]; send_proxy: None, "v1" or "v2";
        check: None, "tcp" (connect only) or "smtpchk"; backend: more lines
        for the backend section (retries, option redispatch, ...)."""
        self.dir = tempfile.mkdtemp(prefix="smtpd-haproxy.")
        self.stats = os.path.join(self.dir, "admin.sock")
        self.config = os.path.join(self.dir, "haproxy.cfg")
        self.log_path = os.path.join(self.dir, "haproxy.log")
        self.names = ["s%d" % (i + 1) for i in range(len(servers))]
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        with open(self.config, "w") as f:
            f.write(self.configuration(servers, send_proxy, check, balance, helo, inter_ms,
                                       backend))
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", self.config], stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=self.log, start_new_session=True, pass_fds=(self.listener.fileno(),))
        self.wait_ready()

    def configuration(self, servers, send_proxy, check, balance, helo, inter_ms, backend):
        proxy = {None: "", "v1": " send-proxy", "v2": " send-proxy-v2"}[send_proxy]
        checks = "" if check is None else " check inter %d rise 1 fall 1" % inter_ms
        lines = [
            "global",
            "    stats socket %s mode 600 level admin" % self.stats,
            "    log stderr format raw local0 info",
            "    maxconn 256",
            "defaults",
            "    mode tcp",
            "    log global",
            "    option tcplog",
            "    timeout connect 30s",	# a loaded test machine, not a network
            "    timeout client 60s",
            "    timeout server 60s",
            "    timeout check 30s",
            "frontend smtp",
            "    bind fd@%d" % self.listener.fileno(),
            "    default_backend hosts",
            "backend hosts",
            "    balance %s" % balance,
            "    source %s" % BALANCER,
        ]
        if check == "smtpchk":
            lines.append("    option smtpchk EHLO %s" % helo)
        lines += ["    " + b for b in backend]
        for name, (host, port) in zip(self.names, servers):
            where = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
            lines.append("    server %s %s%s%s" % (name, where, proxy, checks))
        return "\n".join(lines) + "\n"

    def admin(self, command, limit=5.0):
        """One command on the stats socket; its whole answer as text."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(limit)
            s.connect(self.stats)
            s.sendall(command.encode() + b"\n")
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return out.decode("latin-1")
                out += chunk

    def wait_ready(self, limit=10.0):
        """Bounded: until the stats socket answers, or HAProxy has exited."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                self.stop()
                raise Failed("haproxy exited with %s: %s" % (self.proc.returncode, self.output()))
            try:
                if "Pid:" in self.admin("show info", limit=1.0):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise Failed("haproxy did not start within %.0f s: %s" % (limit, self.output()))

    def servers(self):
        """{server name: row of `show stat`, as a dict of its CSV columns}."""
        text = self.admin("show stat")
        lines = [l for l in text.splitlines() if l]
        header = lines[0].lstrip("# ").split(",")
        rows = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == "hosts" and row.get("svname") in self.names:
                rows[row["svname"]] = row
        return rows

    def wait_check(self, name, status="L7OK", limit=15.0):
        """Bounded: until server name's last health check reads status; its row."""
        end = time.monotonic() + limit
        row = {}
        while time.monotonic() < end:
            row = self.servers().get(name, {})
            if row.get("check_status") == status:
                return row
            time.sleep(0.05)
        raise Failed("server %s: check %r, status %r after %.0f s, not %s"
                     % (name, row.get("check_status"), row.get("status"), limit, status))

    def wait_down(self, name, limit=15.0):
        """Bounded: until server name is DOWN with no check running; its row."""
        end = time.monotonic() + limit
        row = {}
        while time.monotonic() < end:
            row = self.servers().get(name, {})
            if row.get("status", "").startswith("DOWN") and \
                    not row.get("check_status", "*").startswith("*"):
                return row
            time.sleep(0.05)
        raise Failed("server %s: status %r, check %r after %.0f s, not DOWN"
                     % (name, row.get("status"), row.get("check_status"), limit))

    def connect(self, source=CLIENT, limit=10.0):
        """A client connection through the balancer, from source."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=limit,
                                        source_address=(source, 0))

    def log_lines(self):
        """Every line HAProxy has logged so far (tcplog, one per connection)."""
        with open(self.log_path, "rb") as f:
            return f.read().decode("latin-1").splitlines()

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("latin-1")[-2000:]
        except OSError:
            return ""

    def stop(self):
        """SIGTERM to HAProxy by its pid, SIGKILL if it lingers; remove its files."""
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
        self.listener.close()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- headers written by hand, and smtpd behind a launcher that wants one ----

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1_header(src, dst, sport, dport):
    family = "TCP6" if ":" in src else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (family, src, dst, sport, dport)).encode()


def v2_header(command=1, family=0x11, block=None, src="192.0.2.7", dst="127.0.0.1",
              sport=40000, dport=25):
    """proxy-protocol.txt 2.2: command 1 PROXY, 0 LOCAL; family 0x11 TCP4,
    0x21 TCP6, 0x31 UNIX-STREAM; block: the address block, or built from
    src/dst/sport/dport for TCP4 and TCP6."""
    if block is None:
        af = socket.AF_INET6 if family == 0x21 else socket.AF_INET
        block = (socket.inet_pton(af, src) + socket.inet_pton(af, dst) +
                 struct.pack("!HH", sport, dport))
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(block)) + block


PROBE = {"v1": b"PROXY UNKNOWN\r\n", "any": b"PROXY UNKNOWN\r\n",
         "v2": V2_SIGNATURE + b"\x20\x00\x00\x00"}	# v2 LOCAL


def proxied_greeting(host, port, header, limit=2.0):
    """launch.greeting for a server that wants a PROXY header first: a
    header naming no client (v1 UNKNOWN, v2 LOCAL), as a balancer's own
    probe sends, then the greeting."""
    return launch.greeting(host, port, limit=limit, first=header, source=BALANCER)


class ProxiedLauncher(launch.Launcher):
    """A launch.Launcher whose smtpd wants a PROXY header from BALANCER;
    mode: its proxy-protocol."""

    def __init__(self, argv, port, host, mode, env=None):
        self.probe = PROBE[mode]
        super().__init__(argv, port, host, env=env)

    def wait_ready(self, limit=10.0):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise Failed("launcher %s exited with %s" % (self.proc.args[0],
                                                             self.proc.returncode))
            if proxied_greeting(self.host, self.port, self.probe).startswith(b"220 "):
                return
            time.sleep(0.05)
        self.stop()
        raise Failed("no greeting on %s:%d within %.0f s" % (self.host, self.port, limit))


def tcpserver(config, mode, host="127.0.0.1", env=None):
    """smtpd -c config (proxy-protocol mode) under tcpserver on host
    (units/tcpserver.run)."""
    port = launch.free_port(host=host)
    full = dict(os.environ, SMTPD=SMTPD, SMTPD_CONFIG=config, SMTPD_ADDRESS=host,
                SMTPD_PORT=str(port), SMTPD_USER="", SMTPD_CONNECTIONS="100")
    full.update(env or {})
    return ProxiedLauncher(["sh", os.path.join(launch.UNITS, "tcpserver.run")], port, host,
                           mode, env=full)


def socket_activate(config, mode, inetd, host="127.0.0.1", env=None):
    """smtpd -c config (proxy-protocol mode) under systemd-socket-activate
    --accept (stdin/stdout with inetd, else fd 3); env passed on with -E."""
    port = launch.free_port(host=host)
    argv = ["systemd-socket-activate", "-l", "%s:%d" % (host, port), "--accept"]
    if inetd:
        argv.append("--inetd")
    for k, v in (env or {}).items():
        argv += ["-E", "%s=%s" % (k, v)]
    return ProxiedLauncher(argv + [SMTPD, "-c", config], port, host, mode)


# ---- a client that tells what it saw ------------------------------------------

def send_once(port, source, sender, rcpt, body, host="127.0.0.1", helo=launch.HELO,
              limit=30.0):
    """One message on one connection from source, by hand, so that every
    outcome is seen: {"ok": bool, "port": our port, "greeting": the 220 line
    or None, "stage": where it ended, "reply": the last reply or None}.
    ok is True only after the 250 to the final dot (QUIT may fail after)."""
    out = {"ok": False, "port": None, "greeting": None, "stage": "connect", "reply": None}
    try:
        with socket.create_connection((host, port), timeout=limit,
                                      source_address=(source, 0)) as c:
            out["port"] = c.getsockname()[1]
            f = c.makefile("rb")

            def reply():
                line = b""
                while True:
                    line = f.readline(1024)
                    if len(line) < 4 or line[3:4] != b"-":
                        break
                out["reply"] = line.decode("latin-1").rstrip("\r\n") or None
                return out["reply"] or ""

            out["stage"] = "greeting"
            out["greeting"] = reply()
            if not out["greeting"].startswith("220 "):
                out["greeting"] = None
                return out
            for stage, line, want in (("EHLO", b"EHLO %s" % helo.encode(), "250"),
                                      ("MAIL", b"MAIL FROM:<%s>" % sender.encode(), "250"),
                                      ("RCPT", b"RCPT TO:<%s>" % rcpt.encode(), "250"),
                                      ("DATA", b"DATA", "354"),
                                      ("dot", body + b".", "250")):
                out["stage"] = stage
                c.sendall(line + b"\r\n")
                if not reply().startswith(want):
                    return out
            out["ok"] = True
            out["stage"] = "QUIT"
            c.sendall(b"QUIT\r\n")
            reply()
    except OSError as e:
        if out["reply"] is None:
            out["reply"] = "%s: %s" % (type(e).__name__, e)
    return out
