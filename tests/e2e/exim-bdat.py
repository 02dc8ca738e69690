#!/usr/bin/env python3
"""A real MTA that sends BDAT by itself: Exim 4 relays to smtpd over loopback.

Exim uses CHUNKING (RFC 3030) whenever the server offers it and the
transport allows it (hosts_try_chunking). Its Debian package conflicts with
Postfix, so it is fetched with `apt-get download`, unpacked with dpkg -x
(cached under /var/tmp/smtpd-test-exim/VERSION) and run by hand as root
with a configuration of its own (-C): a manualroute router to 127.0.0.1
and an smtp transport to smtpd's port. smtpd runs under strace, started
here for each connection on a socket bound to port 0.

Two messages go through: a small one with leading-dot lines and 8-bit
text, and a 2 MiB one. Each must be in the Maildir with
exactly the body Exim was given, Exim's delivery line must carry the K
flag (CHUNKING used) and C="250 2.0.0 <id>", and smtpd must have read a
BDAT command. Needs root (Exim's -C as root, apt-get, useradd).
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import smtpdtest as t  # noqa: E402
from smtpdtest import check  # noqa: E402

CACHE = "/var/tmp/smtpd-test-exim"
PACKAGES = ["exim4-daemon-light", "exim4-base"]


def candidate_version():
    out = subprocess.run(["apt-cache", "policy", PACKAGES[0]], stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    m = re.search(r"Candidate: (\S+)", out)
    return m.group(1) if m and m.group(1) != "(none)" else None


def exim_binary():
    """Exim's files unpacked under CACHE/VERSION, fetched once per version."""
    version = candidate_version()
    if version is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=300)
        version = candidate_version()
    check(version is not None, "apt knows no %s" % PACKAGES[0])
    root = os.path.join(CACHE, version.replace(":", "_").replace("/", "_"))
    binary = os.path.join(root, "usr/sbin/exim4")
    if os.path.exists(binary):
        return binary
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="unpack.", dir=CACHE)
    try:
        # As root in a root-owned directory apt downloads without its _apt
        # sandbox, and says so on stderr: shown only if the download fails.
        r = subprocess.run(["apt-get", "download", "-q"] +
                           ["%s=%s" % (p, version) for p in PACKAGES], cwd=work, timeout=300,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        check(r.returncode == 0, "apt-get download: %s" % r.stdout.decode(errors="replace"))
        for deb in os.listdir(work):
            if deb.endswith(".deb"):
                subprocess.run(["dpkg-deb", "-x", os.path.join(work, deb),
                                os.path.join(work, "root")], check=True, timeout=120)
        try:
            os.rename(os.path.join(work, "root"), root)	# a racing run may have won
        except OSError:
            pass
    finally:
        shutil.rmtree(work, ignore_errors=True)
    check(os.path.exists(binary), "no %s after unpacking" % binary)
    return binary


def exim_user():
    """The binary insists on its compiled-in user existing."""
    if subprocess.run(["getent", "passwd", "Debian-exim"], stdout=subprocess.DEVNULL).returncode:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", "Debian-exim"], check=True)


class Server:
    """Accepts on 127.0.0.1, port 0, and runs smtpd under strace for each
    connection; stopped by close(), which waits for every smtpd."""

    def __init__(self, box, trace_dir):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.box, self.trace_dir, self.procs = box, trace_dir, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set() and len(self.procs) < 20:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            trace = os.path.join(self.trace_dir, "trace.%d" % len(self.procs))
            self.procs.append(subprocess.Popen(
                ["strace", "-qq", "-o", trace, "-e", "trace=read,recvfrom", "-s", "64"] +
                t.argv(self.box), stdin=conn, stdout=conn, stderr=subprocess.DEVNULL))
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        for p in self.procs:
            t.wait(p, 30)

    def traces(self):
        text = ""
        for name in sorted(os.listdir(self.trace_dir)):
            with open(os.path.join(self.trace_dir, name), errors="replace") as f:
                text += f.read()
        return text


def exim_config(d, binary, port):
    return """\
exim_path = {binary}
exim_user = nobody
exim_group = nogroup
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
primary_hostname = client.example
qualify_domain = client.example
host_lookup =
rfc1413_hosts =
never_users =
keep_environment =
log_selector = +smtp_confirmation
begin routers
to_smtpd:
  driver = manualroute
  route_list = * 127.0.0.1
  self = send
  transport = to_smtpd
begin transports
to_smtpd:
  driver = smtp
  port = {port}
  allow_localhost
  hosts_try_chunking = *
  hosts_avoid_tls = *
""".format(d=d, binary=binary, port=port)


def messages():
    small = (b"Subject: small\n\nfirst line\n.a line with a leading dot\n..two dots\n"
             b"8-bit: \xc3\xa9t\xc3\xa9\n\nlast line\n")
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-=+*/0123456789\n"
    big = b"Subject: big\n\n" + line * ((2 << 20) // len(line))
    return [small, big]


def body(text):
    return text[text.index(b"\n\n") + 2:]


def exim_delivers_by_bdat():
    check(os.geteuid() == 0, "needs root: Exim's -C as root, apt-get download, useradd")
    binary = exim_binary()
    exim_user()
    box = t.Box(extra="max-message-size 10485760\n", timeout=10)
    d = box.dir
    os.chmod(d, 0o755)	# Exim works in spool/ as nobody
    for sub in ("spool", "log", "trace"):
        os.mkdir(os.path.join(d, sub))
        shutil.chown(os.path.join(d, sub), "nobody", "nogroup")
    srv = Server(box, os.path.join(d, "trace"))
    conf = os.path.join(d, "exim.conf")
    with open(conf, "w") as f:
        f.write(exim_config(d, binary, srv.port))
    stderr = b""
    try:
        for text in messages():
            r = subprocess.run([binary, "-C", conf, "-odf", "-i", "-f", "s@client.example",
                                "a@example.org"], input=text, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=120)
            stderr += r.stdout + r.stderr
            check(r.returncode == 0, "exim exited %d: %r" % (r.returncode, stderr[-500:]))
    finally:
        srv.close()
    try:
        # Exim gives up root for -C and then writes its delivery lines to
        # stderr, not mainlog: read both.
        with open(os.path.join(d, "log", "mainlog"), "rb") as f:
            log = f.read() + stderr
        deliveries = [l for l in log.decode(errors="replace").splitlines() if " => " in l]
        check(len(deliveries) == 2, "Exim's delivery lines: %r" % log.decode(errors="replace"))
        for line in deliveries:
            check(re.search(r' K C="250 2\.0\.0 \S+"', line),
                  "not delivered by BDAT (no K flag; is CHUNKING offered?): %s" % line)
        check(re.search(r'read\(0, "[^"]*BDAT \d+ LAST', srv.traces()),
              "smtpd never read a BDAT command")
        stored = box.messages()
        check(len(stored) == 2, "%d messages in the Maildir" % len(stored))
        got = sorted(body(m) for m in stored)
        want = sorted(body(m) for m in messages())
        check(got == want, "bodies differ from what Exim was given: %r" %
              [g[:120] for g in got])
    finally:
        box.close()


t.main([("exim_delivers_by_bdat", exim_delivers_by_bdat)])
