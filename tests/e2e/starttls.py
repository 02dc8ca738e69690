#!/usr/bin/env python3
"""STARTTLS (RFC 3207) end to end, against the real ./smtpd over loopback TCP.

A throw-away CA (tests/make-test-ca) signs an ECDSA and an RSA certificate
for localhost, 127.0.0.1 and ::1; every client verifies against it, given
the address (no name is looked up). The real clients (openssl s_client,
swaks, Python's smtplib, curl, msmtp, and Postfix relaying with
smtp_tls_security_level = encrypt) each deliver a message; raw sockets with
Python's ssl module drive the protocol cases: the injection of commands
after STARTTLS (CVE-2011-0411), the replies of RFC 3207 4, the session
starting over after the handshake (4.2), handshakes that never start or
stop half way, the key gone at the moment of STARTTLS, require-tls,
certificate renewal, session tickets across processes and rotations, the
trace and log fields, and close_notify after 221.

Log lines are read from a journal socket of our own: as root the test runs
itself in a private mount namespace with a tmpfs over /run, binds
/run/systemd/journal/socket there, and gives smtpd a stderr file named by
JOURNAL_STREAM, so log.c sends its structured entries to us (nothing of the
machine's /run is touched, and no other test sees them). Without root the
log checks are skipped with a note. The namespace's /etc/resolv.conf names
127.0.0.1, so no name query could leave the machine. Every server is
started here and stopped by its pid; waits are bounded and end on an
event (a reply, EOF, a process exit, a marker through the log socket).
"""
import os
import re
import shutil
import select
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)

if os.geteuid() == 0 and os.environ.get("SMTPD_STARTTLS_NS") != "1":
    env = dict(os.environ, SMTPD_STARTTLS_NS="1")
    os.execvpe("unshare", ["unshare", "--mount", "--propagation", "private",
                           sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)

sys.path.insert(0, TESTS)
import smtpdtest as t  # noqa: E402
from smtpdtest import Box, Failed, check  # noqa: E402

IN_NS = os.environ.get("SMTPD_STARTTLS_NS") == "1"
IO_LIMIT = 20		# seconds: a bound on every wait, never a threshold tested
HELO = "client.example"
CA_DIR = tempfile.mkdtemp(prefix="smtpd-tls-ca.")
subprocess.run([os.path.join(TESTS, "make-test-ca"), CA_DIR], check=True, timeout=60)
CA = os.path.join(CA_DIR, "ca.pem")
SAN = "127.0.0.1"	# the address every client verifies the certificate against


def pem(kind):
    return os.path.join(CA_DIR, kind + ".pem"), os.path.join(CA_DIR, kind + ".key")


def tls_config(kind="ecdsa", extra=""):
    cert, key = pem(kind)
    return "tls-cert %s\ntls-key %s\n%s" % (cert, key, extra)


# ---- the log ----------------------------------------------------------------

class Journal:
    """The journal's native socket, ours alone in this mount namespace. A
    thread drains it (a full queue would block smtpd's sendmsg); sync()
    sends a marker and waits for it, so every entry sent before is in."""

    PATH = "/run/systemd/journal/socket"

    def __init__(self):
        self.entries, self.marks = [], 0
        self.cond = threading.Condition()
        self.sock = None
        if not IN_NS:
            return
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True, timeout=10)
        os.makedirs(os.path.dirname(self.PATH))
        resolv = "/run/resolv.conf"
        with open(resolv, "w") as f:
            f.write("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")
        subprocess.run(["mount", "--bind", resolv, "/etc/resolv.conf"], check=True, timeout=10)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.bind(self.PATH)
        threading.Thread(target=self.drain, daemon=True).start()

    def drain(self):
        while True:
            data = self.sock.recv(1 << 16)
            with self.cond:
                if data == b"MARK\n":
                    self.marks += 1
                    self.cond.notify_all()
                    continue
                entry = {}
                for line in data.decode("utf-8", "replace").split("\n"):
                    k, eq, v = line.partition("=")
                    if eq:
                        entry[k] = v
                self.entries.append(entry)

    def take(self):
        """Every entry since the last take(), or None when logs are not seen."""
        if self.sock is None:
            return None
        with self.cond:
            want = self.marks + 1
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(b"MARK\n", self.PATH)
        s.close()
        with self.cond:
            if not self.cond.wait_for(lambda: self.marks >= want, IO_LIMIT):
                raise Failed("the log socket did not return our marker")
            out, self.entries = self.entries, []
        return out


JOURNAL = Journal()


def messages(entries):
    return [e.get("MESSAGE", "") for e in entries]


def log_has(entries, pattern, what):
    """Some log line matches pattern (skipped when logs are not seen)."""
    if entries is None:
        return None
    found = [m for m in messages(entries) if re.search(pattern, m)]
    check(found, "%s: no log line matches %r in:\n  %s"
          % (what, pattern, "\n  ".join(messages(entries))))
    return found


# ---- the server ---------------------------------------------------------------

class Server:
    """A small tcpserver on 127.0.0.1, port chosen by the kernel: each
    connection runs ./smtpd with the socket as stdin and stdout and a
    stderr file that JOURNAL_STREAM names (so it logs to our journal; the
    file must stay empty). connect() accepts in the caller's thread and
    returns (client socket, process); serve() accepts in a thread, for
    clients that connect by themselves."""

    def __init__(self, box):
        self.box = box
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.procs = []
        self.err_path = os.path.join(box.dir, "stderr")
        self.err = open(self.err_path, "wb")
        st = os.fstat(self.err.fileno())
        self.env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
        self.env.pop("LISTEN_FDS", None)
        self.wake = None
        self.thread = None

    def spawn(self, conn):
        p = subprocess.Popen(t.argv(self.box), stdin=conn, stdout=conn, stderr=self.err,
                             env=self.env)
        conn.close()
        self.procs.append(p)
        return p

    def connect(self):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(IO_LIMIT)
        c.connect(("127.0.0.1", self.port))
        conn, _ = self.sock.accept()
        return c, self.spawn(conn)

    def serve(self):
        self.wake = os.pipe()

        def loop():
            while True:
                ready, _, _ = select.select([self.sock, self.wake[0]], [], [])
                if self.wake[0] in ready:
                    return
                conn, _ = self.sock.accept()
                self.spawn(conn)
        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Stop accepting; wait for every smtpd by its pid (bounded)."""
        if self.thread is not None:
            os.write(self.wake[1], b"x")
            self.thread.join(IO_LIMIT)
            os.close(self.wake[0])
            os.close(self.wake[1])
            self.thread = None
        self.sock.close()
        stuck = []
        for p in self.procs:
            try:
                p.wait(timeout=IO_LIMIT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                stuck.append(p.pid)
        self.err.close()
        check(not stuck, "smtpd pids %r did not end" % stuck)
        with open(self.err_path, "rb") as f:
            err = f.read()
        check(err == b"", "smtpd wrote to stderr: %r" % err[-2000:])


# ---- a raw client -------------------------------------------------------------

def client_context(maximum=None):
    """Verifies the chain against the test CA and the address 127.0.0.1."""
    ctx = ssl.create_default_context(cafile=CA)
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


class Client:
    """SMTP over one socket, plain and then through TLS; every read is
    bounded by the socket's timeout and ends on a complete reply or EOF."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise Failed("EOF after %r" % self.buf[-200:])
        self.buf += chunk

    def reply(self):
        """One whole reply: its lines, as str, CRLF removed."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                self.fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("latin-1"))
            if len(line) < 4 or line[3:4] != b"-":
                return lines

    def last(self):
        return self.reply()[-1]

    def expect(self, prefix, what=""):
        r = self.reply()
        check(r[-1].startswith(prefix), "%s: %r, expected %s" % (what or prefix, r, prefix))
        return r

    def starttls(self, ctx=None, session=None):
        """After 220: nothing more may have come in plain text; then the
        handshake. Any plain reply that arrives later breaks it."""
        check(self.buf == b"", "plain bytes after 220 Ready to start TLS: %r" % self.buf)
        self.sock = (ctx or client_context()).wrap_socket(
            self.sock, server_hostname=SAN, suppress_ragged_eofs=False, session=session)
        return self.sock

    def rest(self):
        """Everything until the server closes. Inside TLS the end must be a
        close_notify: a bare TCP FIN raises SSLEOFError here."""
        out = self.buf
        self.buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ssl.SSLEOFError:
                raise Failed("TCP closed without close_notify after %r" % out[-200:])
            if not chunk:
                return out
            out += chunk


def greet_ehlo(c, name=HELO):
    """Greeting and EHLO; the extensions offered."""
    c.expect("220 ", "greeting")
    c.send(b"EHLO %s\r\n" % name.encode())
    r = c.expect("250", "EHLO")
    return [x[4:] for x in r]


def into_tls(c, ctx=None, session=None):
    """Greeting, EHLO, STARTTLS, handshake: ready for the new EHLO."""
    c.expect("220 ", "greeting")
    c.send(b"EHLO %s\r\n" % HELO.encode())
    check("STARTTLS" in [x[4:] for x in c.expect("250", "EHLO")], "STARTTLS not offered")
    c.send(b"STARTTLS\r\n")
    r = c.reply()
    check(r == ["220 2.0.0 Ready to start TLS"], "STARTTLS: %r" % r)
    return c.starttls(ctx, session)


MESSAGE = (b"MAIL FROM:<a@client.example>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"
           b"Subject: tls\r\n\r\nover TLS\r\n.\r\n")


def send_message(c):
    """A pipelined transaction after EHLO; the queue id of the 250."""
    c.send(MESSAGE)
    c.expect("250 ", "MAIL")
    c.expect("250 ", "RCPT")
    c.expect("354 ", "DATA")
    r = c.expect("250 2.0.0 ", "end of data")
    return r[-1].split()[2]


def quit_tls(c):
    """QUIT inside TLS: 221, then close_notify, then the server's FIN."""
    c.send(b"QUIT\r\n")
    r = t.replies(c.rest())
    check(r == ["221 2.0.0 Bye"], "after QUIT: %r" % r)


def received(msg):
    """The Received field smtpd wrote, unfolded."""
    _, rec, _ = split_trace(msg)
    return re.sub(r"\n[ \t]+", " ", rec)


def split_trace(msg):
    m = re.match(rb"Return-Path: (<[^>\n]*>)\n(Received: [^\n]*\n(?:[ \t][^\n]*\n)*)", msg)
    check(m is not None, "no Return-Path and Received at the top: %r" % msg[:300])
    return m.group(1).decode(), m.group(2).decode(), msg[m.end():]


def expect_tls_trace(msg, version, cipher, with_="ESMTPS"):
    rec = received(msg)
    check(re.search(r"\bwith %s\b" % with_, rec), "not 'with %s': %r" % (with_, rec))
    check("(%s %s)" % (version, cipher) in rec, "no (%s %s) comment: %r" % (version, cipher, rec))


# ---- the real clients ----------------------------------------------------------

def body(token):
    return (b"From: <s@client.example>\r\nTo: <a@example.org>\r\nSubject: " + token +
            b"\r\nMessage-ID: <" + token + b"@client.example>\r\n\r\ntoken " + token +
            b"\r\n.leading dot\r\nlast line\r\n")


def run(argv, data=None, limit=60):
    p = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=limit)
    out = p.stdout.decode("latin-1")
    check(p.returncode == 0, "%s exited %d:\n%s" % (argv[0], p.returncode, out[-3000:]))
    return out


def one_message(box, token):
    """The one stored message holding token."""
    found = [m for m in box.messages() if b"token " + token in m]
    check(len(found) == 1, "%r stored %d times" % (token, len(found)))
    check(box.files("tmp") == [], "left in tmp/: %r" % box.files("tmp"))
    return found[0]


def expect_tls_delivery(box, token, entries, what):
    """The message arrived through TLS: ESMTPS and a (version cipher)
    comment in Received, and its log line carries the same tls= and cipher=."""
    msg = one_message(box, token)
    rec = received(msg)
    m = re.search(r"\((TLSv1\.[23]) ([A-Za-z0-9_.-]+)\)", rec)
    check(m is not None and re.search(r"\bwith (ESMTPS|UTF8SMTPS)\b", rec),
          "%s: Received shows no TLS: %r" % (what, rec))
    if entries is not None:
        mid = re.search(r" id (\S+)", rec).group(1).rstrip(";")
        line = [e for e in entries if e.get("SMTPD_ID") == mid and "SMTPD_NRCPT" in e]
        check(len(line) == 1, "%s: %d log lines for id %s" % (what, len(line), mid))
        text = line[0].get("MESSAGE", "")
        check(" tls=%s " % m.group(1) in text + " " and " cipher=%s" % m.group(2) in text,
              "%s: log line %r lacks tls=%s cipher=%s" % (what, text, m.group(1), m.group(2)))
    return msg


def tls_clients(box, port, ca, bodies):
    """openssl s_client, swaks, curl and msmtp, each trusting only ca, as
    name -> (argv, stdin); bodies gives each one's message (CRLF lines)."""
    rc = os.path.join(box.dir, "msmtprc")
    with open(rc, "w") as f:
        f.write("account default\nhost 127.0.0.1\nport %s\ndomain %s\nauth off\n"
                "tls on\ntls_starttls on\ntls_trust_file %s\nfrom s5@client.example\n"
                % (port, HELO, ca))
    os.chmod(rc, 0o600)
    # s_client: -nocommands, or a line starting with R (RCPT) renegotiates.
    script = (b"EHLO %s\nMAIL FROM:<s1@client.example>\nRCPT TO:<a@example.org>\nDATA\n"
              % HELO.encode()) + bodies["s_client"].replace(b"\r\n", b"\n") + b".\nQUIT\n"
    return {
        "s_client": (["openssl", "s_client", "-starttls", "smtp", "-name", HELO,
                      "-connect", "127.0.0.1:" + port, "-CAfile", ca, "-verify_return_error",
                      "-verify_ip", SAN, "-crlf", "-ign_eof", "-nocommands", "-brief"], script),
        "swaks": (["swaks", "--server", "127.0.0.1", "--port", port, "--helo", HELO,
                   "--tls", "--tls-verify", "--tls-ca-path", ca,
                   "--from", "s2@client.example", "--to", "a@example.org",
                   "--data", "-", "--timeout", "20"], bodies["swaks"][:-2]),
        "curl": (["curl", "--silent", "--show-error", "--max-time", "20", "--ssl-reqd",
                  "--cacert", ca, "smtp://127.0.0.1:%s/%s" % (port, HELO),
                  "--mail-from", "s4@client.example", "--mail-rcpt", "a@example.org",
                  "--upload-file", "-"], bodies["curl"]),
        "msmtp": (["msmtp", "-C", rc, "a@example.org"], bodies["msmtp"]),
    }


def clients_deliver():
    """openssl s_client, swaks, smtplib, curl and msmtp: each verifies our
    certificate against the test CA and delivers one message through TLS."""
    box = Box(extra=tls_config(), timeout=10)
    srv = Server(box).serve()
    try:
        JOURNAL.take()
        clients = tls_clients(box, str(srv.port), CA, {
            "s_client": body(b"SCLIENT1"), "swaks": body(b"SWAKS1"),
            "curl": body(b"CURL1"), "msmtp": body(b"MSMTP1")})
        out = run(clients["s_client"][0], data=clients["s_client"][1])
        check("221 2.0.0 Bye" in out, "s_client: no 221:\n%s" % out[-2000:])
        out = run(clients["swaks"][0], data=clients["swaks"][1])
        check("TLS started" in out, "swaks: TLS not started:\n%s" % out[-2000:])
        with smtplib.SMTP("127.0.0.1", srv.port, local_hostname=HELO, timeout=IO_LIMIT) as s:
            s.starttls(context=client_context())
            check(not s.has_extn("starttls"), "EHLO inside TLS offers STARTTLS")
            refused = s.sendmail("s3@client.example", ["a@example.org"], body(b"SMTPLIB1"))
            check(refused == {}, "smtplib: refused %r" % refused)
        for name in ("curl", "msmtp"):
            run(clients[name][0], data=clients[name][1])
        srv.stop()
        entries = JOURNAL.take()
        for token in (b"SCLIENT1", b"SWAKS1", b"SMTPLIB1", b"CURL1", b"MSMTP1"):
            expect_tls_delivery(box, token, entries, token.decode())
        check(len(box.messages()) == 5, "%d messages stored" % len(box.messages()))
    finally:
        srv.stop() if srv.thread is not None else None
        box.close()


def clients_check_the_certificate():
    """The same clients given another CA's certificate: each refuses to send
    (so each really verifies), and nothing is stored."""
    other = tempfile.mkdtemp(prefix="smtpd-tls-ca2.")
    box = Box(extra=tls_config(), timeout=10)
    srv = Server(box).serve()
    try:
        subprocess.run([os.path.join(TESTS, "make-test-ca"), other], check=True, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wrong = os.path.join(other, "ca.pem")
        clients = tls_clients(box, str(srv.port), wrong,
                              dict.fromkeys(("s_client", "swaks", "curl", "msmtp"),
                                            b"Subject: x\r\n\r\nx\r\n"))
        for name, (argv, data) in clients.items():
            p = subprocess.run(argv, input=data, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            out = p.stdout.decode("latin-1")
            # curl says nothing with --silent: its status 60 is "peer certificate
            # cannot be authenticated with given CA certificates".
            why = p.returncode == 60 if name == "curl" else re.search(r"(?i)verif", out)
            check(p.returncode != 0 and why, "%s: not refused for the certificate (%d):\n%s"
                  % (name, p.returncode, out[-1000:]))
        ctx = ssl.create_default_context(cafile=wrong)
        with smtplib.SMTP("127.0.0.1", srv.port, local_hostname=HELO, timeout=IO_LIMIT) as s:
            try:
                s.starttls(context=ctx)
                raise Failed("smtplib accepted a certificate from another CA")
            except ssl.SSLCertVerificationError:
                pass
        srv.stop()
        check(box.messages() == [], "stored %d messages" % len(box.messages()))
    finally:
        if srv.thread is not None:
            srv.stop()
        shutil.rmtree(other, ignore_errors=True)
        box.close()


# ---- Postfix as the relaying client ---------------------------------------------

POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"


def postfix_relay():
    """A private Postfix (own config and queue directories, no chroot, no
    listener, no DNS) relays one message to smtpd with
    smtp_tls_security_level = encrypt and the test CA; its log shows the
    TLS connection, ours the delivery."""
    if not os.path.exists(POSTFIX_MASTER) or shutil.which("postconf") is None:
        print("skip postfix_relay: Postfix is not installed (bench/run installs it)")
        return
    if os.geteuid() != 0:
        print("skip postfix_relay: a Postfix instance needs root")
        return
    box = Box(extra=tls_config(), timeout=10)
    srv = Server(box).serve()
    pf = os.path.join(box.dir, "postfix")
    etc, spool, data = pf + "/etc", pf + "/spool", pf + "/data"
    plog = pf + "/postfix.log"
    master = None
    try:
        for d in (etc, spool, data):
            os.makedirs(d)
        os.chmod(box.dir, 0o755)
        shutil.chown(data, "postfix")
        lines = []
        with open("/etc/postfix/master.cf") as f:
            for line in f:
                w = line.split()
                if line[:1].isalpha() and len(w) >= 8:
                    if w[1] == "inet":
                        continue	# no listener at all: we only send
                    w[4] = "n"		# no chroot
                    line = " ".join(w) + "\n"
                lines.append(line)
        with open(etc + "/master.cf", "w") as f:
            f.write("".join(lines))
        with open(etc + "/main.cf", "w") as f:
            f.write("""\
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = {helo}
mydomain = client.example
myorigin = client.example
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
smtp_dns_support_level = disabled
smtp_host_lookup = native
relayhost = [127.0.0.1]:{port}
smtp_tls_security_level = encrypt
smtp_tls_CAfile = {ca}
smtp_tls_loglevel = 1
maillog_file = {log}
maillog_file_prefixes = {pf}
alias_maps =
alias_database =
biff = no
""".format(spool=spool, data=data, helo=HELO, port=srv.port, ca=CA, log=plog, pf=pf))
        p = subprocess.run(["postfix", "-c", etc, "check"], timeout=60,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        check(p.returncode == 0, "postfix check: %s" % p.stdout.decode("latin-1")[-2000:])
        # master -d: in the foreground, so the pid we hold is the master's.
        master = subprocess.Popen([POSTFIX_MASTER, "-d", "-c", etc],
                                  env=dict(os.environ, MAIL_CONFIG=etc),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        subprocess.run(["/usr/sbin/sendmail", "-C", etc, "-f", "pf@client.example",
                        "a@example.org"], input=body(b"POSTFIX1"), check=True, timeout=60)
        # Postfix delivers on its own schedule: wait for its log to say how
        # it went (bounded), then read what arrived.
        text = ""
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if os.path.exists(plog):
                with open(plog, errors="replace") as f:
                    text = f.read()
            if re.search(r"status=(sent|deferred|bounced)", text):
                break
            time.sleep(0.1)
        check("status=sent" in text, "Postfix did not deliver:\n%s" % text[-3000:])
        m = re.search(r"Trusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:%d: "
                      r"(TLSv1\.[23]) with cipher (\S+)" % srv.port, text)
        check(m is not None, "Postfix log shows no trusted TLS connection:\n%s" % text[-3000:])
        srv.stop()
        msg = expect_tls_delivery(box, b"POSTFIX1", JOURNAL.take(), "postfix")
        check("(%s %s)" % (m.group(1), m.group(2)) in received(msg),
              "Received %r, Postfix says %s %s" % (received(msg), m.group(1), m.group(2)))
    finally:
        if master is not None:
            master.send_signal(signal.SIGTERM)
            try:
                master.wait(timeout=IO_LIMIT)
            except subprocess.TimeoutExpired:
                os.killpg(master.pid, signal.SIGKILL)
                master.wait()
        if srv.thread is not None:
            srv.stop()
        box.close()


# ---- the protocol ---------------------------------------------------------------

def session(box, fn):
    """Run fn(client, proc) on one connection; returns the log entries."""
    srv = Server(box)
    try:
        JOURNAL.take()
        sock, p = srv.connect()
        c = Client(sock)
        try:
            fn(c, p)
        finally:
            c.sock.close()
        srv.stop()
        return JOURNAL.take()
    finally:
        if srv.procs and srv.procs[-1].poll() is None:
            srv.procs[-1].kill()
            srv.procs[-1].wait()


def ehlo_offers_starttls_only_when_configured():
    """Not configured: no STARTTLS in EHLO and 502 5.5.1. Configured: offered
    and the reply is 220; HELO sessions may use it too."""
    box = Box()
    try:
        def plain(c, p):
            check("STARTTLS" not in greet_ehlo(c), "STARTTLS offered without tls-cert")
            c.send(b"STARTTLS\r\n")
            check(c.last() == "502 5.5.1 Command not implemented", "not configured: 502")
            c.send(b"QUIT\r\n")
            c.expect("221 ")
        session(box, plain)
    finally:
        box.close()
    box = Box(extra=tls_config())
    try:
        def helo(c, p):
            c.expect("220 ")
            c.send(b"HELO c.example\r\nSTARTTLS\r\n")
            c.expect("250 ")
            check(c.reply() == ["220 2.0.0 Ready to start TLS"], "STARTTLS after HELO")
            c.starttls()
            c.send(b"EHLO c.example\r\n")
            check("STARTTLS" not in [x[4:] for x in c.expect("250")], "offered inside TLS")
            quit_tls(c)
        session(box, helo)
    finally:
        box.close()


def starttls_with_argument():
    """501 5.5.4, and the session goes on in plain text."""
    box = Box(extra=tls_config())
    try:
        def fn(c, p):
            c.expect("220 ")
            c.send(b"EHLO c.example\r\nSTARTTLS now\r\nNOOP\r\n")
            c.expect("250")
            r = c.last()
            check(r.startswith("501 5.5.4 "), "STARTTLS with an argument: %r" % r)
            c.expect("250 ", "NOOP: still plain text")
            c.send(b"QUIT\r\n")
            c.expect("221 ")
        session(box, fn)
    finally:
        box.close()


def starttls_twice_and_new_ehlo():
    """Inside TLS: MAIL before the new EHLO is 503 (the session started over,
    RFC 3207 4.2), the new EHLO lists no STARTTLS, STARTTLS again is
    503 5.5.1; then a message goes through with ESMTPS in Received."""
    box = Box(extra=tls_config())
    try:
        got = {}

        def fn(c, p):
            s = into_tls(c)
            got["v"], got["c"] = s.version(), s.cipher()[0]
            c.send(b"MAIL FROM:<a@client.example>\r\n")
            r = c.last()
            check(r.startswith("503 "), "MAIL before the new EHLO: %r" % r)
            c.send(b"EHLO c.example\r\n")
            ext = [x[4:] for x in c.expect("250")]
            check("STARTTLS" not in ext, "STARTTLS listed inside TLS: %r" % ext)
            check("PIPELINING" in ext, "no PIPELINING inside TLS: %r" % ext)
            c.send(b"STARTTLS\r\n")
            r = c.last()
            check(r.startswith("503 5.5.1 "), "STARTTLS twice: %r" % r)
            send_message(c)
            quit_tls(c)
        entries = session(box, fn)
        msg = box.messages()
        check(len(msg) == 1, "%d messages" % len(msg))
        expect_tls_trace(msg[0], got["v"], got["c"])
        rec = received(msg[0])
        check(rec.startswith("Received: from c.example "), "HELO name of the new EHLO: %r" % rec)
        if entries is not None:
            line = [e for e in entries if "SMTPD_NRCPT" in e]
            check(len(line) == 1, "transaction log lines %r" % messages(entries))
            text = line[0]["MESSAGE"]
            check(" tls=%s" % got["v"] in text and " cipher=%s" % got["c"] in text,
                  "log line %r" % text)
            check(line[0].get("SMTPD_TLS_VERSION") == got["v"] and
                  line[0].get("SMTPD_TLS_CIPHER") == got["c"],
                  "journal fields SMTPD_TLS_VERSION/SMTPD_TLS_CIPHER: %r" % line[0])
            hs = [m for m in messages(entries) if re.match(r"tls |tls-failed ", m)]
            check(hs == ["tls peer=127.0.0.1 tls=%s cipher=%s resumed=no" % (got["v"], got["c"])],
                  "the handshake is logged once: %r" % hs)
    finally:
        box.close()


def injection_is_discarded():
    """CVE-2011-0411: STARTTLS\\r\\nRSET\\r\\n in one write. Only the 220; RSET is
    answered neither in plain text (anything after the 220 would break the
    handshake here) nor inside TLS (the first reply there is our EHLO's);
    the log says 6 bytes were dropped."""
    box = Box(extra=tls_config())
    try:
        def fn(c, p):
            c.expect("220 ")
            c.send(b"EHLO c.example\r\n")
            c.expect("250")
            c.send(b"STARTTLS\r\nRSET\r\n")
            check(c.reply() == ["220 2.0.0 Ready to start TLS"], "STARTTLS reply")
            c.starttls()
            c.send(b"EHLO c.example\r\nQUIT\r\n")
            r = t.replies(c.rest())
            check(len(r) == 2 and r[0].startswith("250 ") and r[1] == "221 2.0.0 Bye",
                  "inside TLS: %r (RSET answered?)" % r)
        entries = session(box, fn)
        log_has(entries, r"^starttls peer=127\.0\.0\.1 dropped=6$", "dropped byte count")
    finally:
        box.close()


def injection_with_a_transaction():
    """The classic attack: STARTTLS and a whole transaction in one write; no
    message is stored, nothing is answered but the 220, and a message sent
    properly inside TLS afterwards is the only one."""
    box = Box(extra=tls_config())
    try:
        def fn(c, p):
            c.expect("220 ")
            c.send(b"EHLO c.example\r\n")
            c.expect("250")
            c.send(b"STARTTLS\r\n" + t.SMUGGLED)
            check(c.reply() == ["220 2.0.0 Ready to start TLS"], "STARTTLS reply")
            c.starttls()
            c.send(b"EHLO c.example\r\n")
            c.expect("250")
            send_message(c)
            quit_tls(c)
        entries = session(box, fn)
        msgs = box.messages()
        check(len(msgs) == 1 and b"smuggled" not in msgs[0], "stored %r" % msgs)
        log_has(entries, r"^starttls peer=127\.0\.0\.1 dropped=%d$" % len(t.SMUGGLED),
                "dropped byte count")
    finally:
        box.close()


def handshake_never_starts():
    """220, then silence: after `timeout` the connection ends with no byte
    of plain text (not even 421) and a log line."""
    box = Box(extra=tls_config(), timeout=1)
    try:
        def fn(c, p):
            greet_ehlo(c)
            c.send(b"STARTTLS\r\n")
            check(c.reply() == ["220 2.0.0 Ready to start TLS"], "STARTTLS reply")
            rest = t.read_all(c.sock, IO_LIMIT)
            check(rest == b"", "after the handshake timeout the client got %r" % rest)
            t.wait(p, IO_LIMIT)
        entries = session(box, fn)
        log_has(entries, r"^tls-failed peer=127\.0\.0\.1 reason=timeout$", "handshake timeout")
    finally:
        box.close()


def timeout_inside_tls():
    """A client silent inside TLS: 421 4.4.2 after `timeout`, then our
    close_notify (RFC 8446 6.1), then the close."""
    box = Box(extra=tls_config(), timeout=1)
    try:
        def fn(c, p):
            into_tls(c)
            c.send(b"EHLO c.example\r\n")
            c.expect("250")
            r = t.replies(c.rest())
            check(len(r) == 1 and r[0].startswith("421 4.4.2 "), "after silence: %r" % r)
            t.wait(p, IO_LIMIT)
        session(box, fn)
    finally:
        box.close()


def client_hello_prefix():
    """The first bytes a TLS client sends (half a ClientHello)."""
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(inc, outg, server_hostname=SAN)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outg.read()
    check(len(hello) > 40 and hello[0] == 0x16, "ClientHello %r" % hello[:8])
    return hello[:len(hello) // 2]


def closes_mid_handshake():
    """Half a ClientHello and EOF: smtpd ends at once, with no plain-text
    reply (a TLS alert is fine) and a log line with the reason."""
    box = Box(extra=tls_config(), timeout=10)
    try:
        def fn(c, p):
            greet_ehlo(c)
            c.send(b"STARTTLS\r\n")
            check(c.reply() == ["220 2.0.0 Ready to start TLS"], "STARTTLS reply")
            c.send(client_hello_prefix())
            c.sock.shutdown(socket.SHUT_WR)
            rest = t.read_all(c.sock, IO_LIMIT)
            check(rest == b"" or rest[0] == 0x15, "after half a handshake: %r" % rest[:80])
            t.wait(p, IO_LIMIT)
        entries = session(box, fn)
        log_has(entries, r"^tls-failed peer=127\.0\.0\.1 reason=(?!timeout)\S+",
                "failed handshake, OpenSSL's reason")
    finally:
        box.close()


def not_tls_after_220():
    """Plain SMTP after 220 instead of a ClientHello: the handshake fails,
    nothing is answered in plain text, nothing is stored."""
    box = Box(extra=tls_config(), timeout=10)
    try:
        def fn(c, p):
            greet_ehlo(c)
            c.send(b"STARTTLS\r\n")
            check(c.reply() == ["220 2.0.0 Ready to start TLS"], "STARTTLS reply")
            c.send(b"EHLO c.example\r\n" + MESSAGE + b"QUIT\r\n")
            rest = t.read_all(c.sock, IO_LIMIT)
            check(rest == b"" or rest[0] == 0x15, "plain text after a failed handshake: %r"
                  % rest[:80])
            t.wait(p, IO_LIMIT)
        entries = session(box, fn)
        check(box.messages() == [], "stored a message sent in plain text after STARTTLS")
        log_has(entries, r"^tls-failed peer=127\.0\.0\.1 reason=(?!timeout)\S+",
                "failed handshake, OpenSSL's reason")
    finally:
        box.close()


def key_gone_at_starttls():
    """The key disappears between EHLO and STARTTLS (a renewal half done):
    454 4.7.0, an error log line, and the session goes on in plain text."""
    box = Box(extra="", timeout=10)
    try:
        cert, key = pem("ecdsa")
        mine = os.path.join(box.dir, "key.pem")
        shutil.copy(key, mine)
        box.write_config("tls-cert %s\ntls-key %s\n" % (cert, mine), timeout=10)

        def fn(c, p):
            check("STARTTLS" in greet_ehlo(c), "STARTTLS not offered")
            os.unlink(mine)
            c.send(b"STARTTLS\r\n")
            r = c.last()
            check(r == "454 4.7.0 TLS not available due to local problem", "reply %r" % r)
            send_message(c)
            c.send(b"QUIT\r\n")
            check(t.replies(c.rest()) == ["221 2.0.0 Bye"], "QUIT in plain text")
        entries = session(box, fn)
        msgs = box.messages()
        check(len(msgs) == 1, "%d messages" % len(msgs))
        rec = received(msgs[0])
        check(re.search(r"\bwith ESMTP\b", rec) and "TLS" not in rec, "Received %r" % rec)
        if entries is not None:
            errs = [e["MESSAGE"] for e in entries if e.get("PRIORITY") == "3"]
            check(len(errs) == 1 and errs[0].startswith("tls-unavailable peer=127.0.0.1 "),
                  "error log lines %r" % errs)
            line = [e["MESSAGE"] for e in entries if "SMTPD_NRCPT" in e]
            check(len(line) == 1 and "tls=" not in line[0], "plain log line %r" % line)
    finally:
        box.close()


def garbage_cert_at_starttls():
    """A certificate file that is not PEM: 454 4.7.0, session goes on."""
    box = Box(timeout=10)
    try:
        bad = os.path.join(box.dir, "cert.pem")
        with open(bad, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        box.write_config("tls-cert %s\ntls-key %s\n" % (bad, pem("ecdsa")[1]), timeout=10)

        def fn(c, p):
            greet_ehlo(c)
            c.send(b"STARTTLS\r\nNOOP\r\n")
            r = c.last()
            check(r == "454 4.7.0 TLS not available due to local problem", "reply %r" % r)
            c.expect("250 ", "NOOP after 454")
            c.send(b"QUIT\r\n")
            c.expect("221 ")
        session(box, fn)
    finally:
        box.close()


def wrong_pair():
    """smtpd -C: the ECDSA certificate with the RSA key exits 78 with the
    reason; the right pair exits 0; one of the two alone is a configuration
    error (421 4.3.0, exit 78)."""
    box = Box()
    try:
        cert, _ = pem("ecdsa")
        _, rsa_key = pem("rsa")
        box.write_config("tls-cert %s\ntls-key %s\n" % (cert, rsa_key))
        p = subprocess.run([t.SMTPD, "-C", box.config], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=IO_LIMIT, stdin=subprocess.DEVNULL)
        err = p.stderr.decode("latin-1")
        check(p.returncode == 78, "-C with a wrong pair: exit %d (%s)" % (p.returncode, err))
        check(err.strip() != "" and re.search(r"(?i)match|key|cert", err),
              "-C with a wrong pair gives no reason: %r" % err)
        box.write_config(tls_config())
        p = subprocess.run([t.SMTPD, "-C", box.config], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=IO_LIMIT, stdin=subprocess.DEVNULL)
        check(p.returncode == 0, "-C with the right pair: exit %d %r" % (p.returncode, p.stderr))
        box.write_config("tls-cert %s\n" % cert)
        out, status, _ = t.run_pipe(box, b"QUIT\r\n")
        r = t.replies(out)
        check(status == 78 and r and r[0].startswith("421 4.3.0 "),
              "tls-cert alone: status %d %r" % (status, r))
        box.write_config("tls-key %s\n" % rsa_key)
        out, status, _ = t.run_pipe(box, b"QUIT\r\n")
        r = t.replies(out)
        check(status == 78 and r and r[0].startswith("421 4.3.0 "),
              "tls-key alone: status %d %r" % (status, r))
    finally:
        box.close()


def require_tls():
    """require-tls yes: MAIL before STARTTLS is 530 5.7.0; inside TLS it works."""
    box = Box(extra=tls_config(extra="require-tls yes\n"))
    try:
        def fn(c, p):
            greet_ehlo(c)
            c.send(b"MAIL FROM:<a@client.example>\r\n")
            r = c.last()
            check(r == "530 5.7.0 Must issue a STARTTLS command first", "MAIL in plain: %r" % r)
            c.send(b"STARTTLS\r\n")
            check(c.reply() == ["220 2.0.0 Ready to start TLS"], "STARTTLS reply")
            c.starttls()
            c.send(b"EHLO c.example\r\n")
            c.expect("250")
            send_message(c)
            quit_tls(c)
        session(box, fn)
        check(len(box.messages()) == 1, "%d messages" % len(box.messages()))
    finally:
        box.close()


def der_of(path):
    with open(path) as f:
        first = f.read().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    return ssl.PEM_cert_to_DER_cert(first)


def certificate_renewal():
    """Replace the certificate and key (rename over them) between two
    connections, no restart: the second connection gets the new one."""
    box = Box(timeout=10)
    try:
        cert, key = os.path.join(box.dir, "cert.pem"), os.path.join(box.dir, "key.pem")
        shutil.copy(pem("ecdsa")[0], cert)
        shutil.copy(pem("ecdsa")[1], key)
        box.write_config("tls-cert %s\ntls-key %s\n" % (cert, key), timeout=10)
        srv = Server(box).serve()
        seen = []
        try:
            for kind in ("ecdsa", "rsa"):
                for src, dst in zip(pem(kind), (cert, key)):
                    shutil.copy(src, dst + ".new")
                    os.rename(dst + ".new", dst)
                with smtplib.SMTP("127.0.0.1", srv.port, local_hostname=HELO,
                                  timeout=IO_LIMIT) as s:
                    s.starttls(context=client_context())
                    seen.append(s.sock.getpeercert(binary_form=True))
                    s.ehlo(HELO)
        finally:
            srv.stop()
        check(seen[0] == der_of(pem("ecdsa")[0]), "first connection: not the ECDSA certificate")
        check(seen[1] == der_of(pem("rsa")[0]), "second connection: not the renewed RSA one")
    finally:
        box.close()


def s_client(port, sess_in=None, sess_out=None, extra=()):
    """One session through openssl s_client; its output (-brief is not used:
    the "Reused"/"New" line is the point)."""
    argv = ["openssl", "s_client", "-starttls", "smtp", "-name", HELO,
            "-connect", "127.0.0.1:%d" % port, "-CAfile", CA, "-verify_return_error",
            "-verify_ip", SAN, "-crlf", "-ign_eof", "-nocommands"] + list(extra)
    if sess_in:
        argv += ["-sess_in", sess_in]
    if sess_out:
        argv += ["-sess_out", sess_out]
    return run(argv, data=b"EHLO %s\nQUIT\n" % HELO.encode())


def reused(out):
    m = re.search(r"^(New|Reused), (TLSv1\.[23])", out, re.M)
    check(m is not None, "s_client printed no New/Reused line:\n%s" % out[-2000:])
    return m.group(1) == "Reused"


def tickets_across_processes():
    """A ticket issued by one smtpd process resumes in another (the key file
    is shared), still after one and two `smtpd -T` rotations, and no more
    after three (only the two previous keys decrypt). TLS 1.3 and 1.2."""
    for version, extra in (("1.3", []), ("1.2", ["-tls1_2"])):
        box = Box(timeout=10)
        try:
            keys = os.path.join(box.dir, "ticket-keys")
            p = subprocess.run([t.SMTPD, "-T", keys], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=IO_LIMIT)
            check(p.returncode == 0, "smtpd -T (create): %d %r" % (p.returncode, p.stdout))
            st = os.stat(keys)
            check(st.st_mode & 0o777 == 0o600 and st.st_size == 240,
                  "ticket key file mode %o size %d" % (st.st_mode & 0o777, st.st_size))
            box.write_config(tls_config(extra="tls-ticket-keys %s\n" % keys), timeout=10)
            JOURNAL.take()
            srv = Server(box).serve()
            sess = os.path.join(box.dir, "session.pem")
            try:
                check(not reused(s_client(srv.port, sess_out=sess, extra=extra)),
                      "TLS %s: the first session was resumed" % version)
                check(os.path.getsize(sess) > 0, "no session written by s_client")
                check(reused(s_client(srv.port, sess_in=sess, extra=extra)),
                      "TLS %s: ticket not resumed by another process" % version)
                for rotation in (1, 2, 3):
                    before = open(keys, "rb").read()
                    p = subprocess.run([t.SMTPD, "-T", keys], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       timeout=IO_LIMIT)
                    check(p.returncode == 0, "smtpd -T: %d %r" % (p.returncode, p.stdout))
                    after = open(keys, "rb").read()
                    check(after[80:240] == before[0:160] and after[:80] != before[:80],
                          "rotation %d: not a new key first and the two previous kept"
                          % rotation)
                    got = reused(s_client(srv.port, sess_in=sess, extra=extra))
                    check(got == (rotation < 3), "TLS %s: after %d rotations %s" % (
                        version, rotation, "resumed" if got else "not resumed"))
            finally:
                srv.stop()
            entries = JOURNAL.take()
            if entries is not None:
                hs = [re.sub(r" cipher=\S+", "", m) for m in messages(entries)
                      if m.startswith("tls ")]
                want = "tls peer=127.0.0.1 tls=TLSv%s resumed=" % version
                check(hs == [want + r for r in ("no", "yes", "yes", "yes", "no")],
                      "TLS %s: handshake log lines %r" % (version, hs))
        finally:
            box.close()


def trace_and_logs_tls12_and_smtputf8():
    """TLS 1.2: Received says (TLSv1.2 CIPHER); SMTPUTF8 inside TLS is
    UTF8SMTPS; a plain session's log line has no tls=."""
    box = Box(extra=tls_config("rsa"))
    try:
        got = {}

        def fn(c, p):
            s = into_tls(c, client_context(ssl.TLSVersion.TLSv1_2))
            got["v"], got["c"] = s.version(), s.cipher()[0]
            c.send(b"EHLO c.example\r\n")
            c.expect("250")
            c.send("MAIL FROM:<\u00e5@client.example> SMTPUTF8\r\nRCPT TO:<b@example.org>\r\n"
                   "DATA\r\nSubject: utf8\r\n\r\nutf8 over TLS 1.2\r\n.\r\n".encode())
            c.expect("250 ")
            c.expect("250 ")
            c.expect("354 ")
            c.expect("250 2.0.0 ")
            quit_tls(c)
        entries = session(box, fn)
        check(got["v"] == "TLSv1.2", "negotiated %s" % got["v"])
        msgs = box.messages()
        check(len(msgs) == 1, "%d messages" % len(msgs))
        expect_tls_trace(msgs[0], got["v"], got["c"], "UTF8SMTPS")
        if entries is not None:
            line = [e["MESSAGE"] for e in entries if "SMTPD_NRCPT" in e]
            check(len(line) == 1 and " tls=TLSv1.2 " in line[0] + " ", "log %r" % line)
    finally:
        box.close()
    box = Box(extra=tls_config())
    try:
        def plain(c, p):
            c.expect("220 ")
            c.send(t.HELLO + b"DATA\r\nSubject: p\r\n\r\nx\r\n.\r\nQUIT\r\n")
            r = t.replies(c.rest())
            check(r[-2].startswith("250 2.0.0 ") and r[-1] == "221 2.0.0 Bye", "plain %r" % r)
        entries = session(box, plain)
        msgs = box.messages()
        check(len(msgs) == 1 and re.search(r"\bwith ESMTP\b", received(msgs[0])) and
              "TLS" not in received(msgs[0]), "plain Received %r" % msgs)
        if entries is not None:
            line = [e for e in entries if "SMTPD_NRCPT" in e]
            check(len(line) == 1 and "tls=" not in line[0]["MESSAGE"] and
                  "cipher=" not in line[0]["MESSAGE"] and "SMTPD_TLS_VERSION" not in line[0],
                  "plain log line %r" % line)
            check(not [m for m in messages(entries) if re.match(r"(starttls|tls|tls-)", m)],
                  "TLS log lines in a plain session: %r" % messages(entries))
    finally:
        box.close()


def old_protocols_refused():
    """TLS 1.1 is not offered: a client limited to it gets a failed
    handshake, never a session (skipped when this OpenSSL cannot even try)."""
    box = Box(extra=tls_config(), timeout=10)
    try:
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(CA)
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError):
            print("skip old_protocols_refused: no TLS 1.1 in this OpenSSL")
            return

        def fn(c, p):
            greet_ehlo(c)
            c.send(b"STARTTLS\r\n")
            check(c.reply() == ["220 2.0.0 Ready to start TLS"], "STARTTLS reply")
            try:
                c.starttls(ctx)
            except (ssl.SSLError, OSError):
                t.wait(p, IO_LIMIT)
                return
            raise Failed("a TLS 1.1 handshake succeeded: %s" % c.sock.version())
        entries = session(box, fn)
        log_has(entries, r"^tls-failed peer=127\.0\.0\.1 reason=\S*(?i:protocol|version)",
                "TLS 1.1 refused by the server")
    finally:
        box.close()


def host_openssl_cnf_ignored():
    """An openssl.cnf that would leave TLS 1.3 one cipher suite only (as
    $OPENSSL_CONF, so the machine's file is left alone) changes nothing:
    smtpd does not read it, and the client's first choice is still served."""
    box = Box(extra=tls_config())
    try:
        cnf = os.path.join(box.dir, "openssl.cnf")
        with open(cnf, "w") as f:
            f.write("openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\n"
                    "system_default = tls\n[tls]\nCiphersuites = TLS_AES_128_GCM_SHA256\n")
        srv = Server(box)
        srv.env["OPENSSL_CONF"] = cnf
        try:
            sock, p = srv.connect()
            c = Client(sock)
            try:
                into_tls(c)
                got = c.sock.cipher()[0]
                c.send(b"EHLO c.example\r\n")
                c.expect("250")
                quit_tls(c)
            finally:
                c.sock.close()
        finally:
            srv.stop()
        check(got == "TLS_AES_256_GCM_SHA384", "with the host's openssl.cnf: %s" % got)
    finally:
        box.close()


def truncated_mid_message():
    """Inside TLS, half a message then a TCP close without close_notify, or
    a forged record: the transaction is void, nothing stays in new/ or tmp/."""
    for how in ("fin", "bad record"):
        box = Box(extra=tls_config(), timeout=10)
        try:
            def fn(c, p):
                into_tls(c)
                c.send(b"EHLO c.example\r\nMAIL FROM:<a@client.example>\r\n"
                       b"RCPT TO:<b@example.org>\r\nDATA\r\n")
                c.expect("250")
                c.expect("250 ")
                c.expect("250 ")
                c.expect("354 ")
                c.send(b"Subject: cut\r\n\r\n" + b"half a message\r\n" * 100)
                raw = socket.socket(fileno=os.dup(c.sock.fileno()))
                if how == "fin":
                    raw.shutdown(socket.SHUT_WR)
                else:
                    # An application-data record whose MAC cannot check out.
                    raw.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))
                    raw.sendall(b".\r\n")
                raw.close()
                t.wait(p, IO_LIMIT)
            session(box, fn)
            check(box.messages() == [] and box.files("tmp") == [],
                  "%s: new/ %r tmp/ %r" % (how, box.files("new"), box.files("tmp")))
        finally:
            box.close()


def pipelining_inside_tls():
    """RFC 2920 inside TLS: a whole transaction in one TLS write, each reply
    in order; the last reply is followed by close_notify."""
    box = Box(extra=tls_config())
    try:
        def fn(c, p):
            into_tls(c)
            c.send(b"EHLO c.example\r\n" + MESSAGE + b"RSET\r\nNOOP\r\nQUIT\r\n")
            r = t.replies(c.rest())
            check([x[:3] for x in r] == ["250", "250", "250", "354", "250", "250", "250", "221"],
                  "replies %r" % r)
        session(box, fn)
        check(len(box.messages()) == 1, "not delivered")
    finally:
        box.close()


def guarded(fn):
    """Any exception is that test's failure, not the end of the run."""
    def run_one():
        try:
            fn()
        except Failed:
            raise
        except Exception as e:
            import traceback
            raise Failed("%s: %s\n%s" % (type(e).__name__, e,
                                         "".join(traceback.format_tb(e.__traceback__)[-3:])))
    return run_one


TESTS_LIST = [
    ("ehlo_offers_starttls_only_when_configured", ehlo_offers_starttls_only_when_configured),
    ("starttls_with_argument", starttls_with_argument),
    ("starttls_twice_and_new_ehlo", starttls_twice_and_new_ehlo),
    ("injection_is_discarded", injection_is_discarded),
    ("injection_with_a_transaction", injection_with_a_transaction),
    ("handshake_never_starts", handshake_never_starts),
    ("timeout_inside_tls", timeout_inside_tls),
    ("closes_mid_handshake", closes_mid_handshake),
    ("not_tls_after_220", not_tls_after_220),
    ("key_gone_at_starttls", key_gone_at_starttls),
    ("garbage_cert_at_starttls", garbage_cert_at_starttls),
    ("wrong_pair", wrong_pair),
    ("require_tls", require_tls),
    ("certificate_renewal", certificate_renewal),
    ("tickets_across_processes", tickets_across_processes),
    ("trace_and_logs_tls12_and_smtputf8", trace_and_logs_tls12_and_smtputf8),
    ("old_protocols_refused", old_protocols_refused),
    ("host_openssl_cnf_ignored", host_openssl_cnf_ignored),
    ("truncated_mid_message", truncated_mid_message),
    ("pipelining_inside_tls", pipelining_inside_tls),
    ("clients_deliver", clients_deliver),
    ("clients_check_the_certificate", clients_check_the_certificate),
    ("postfix_relay", postfix_relay),
]

if __name__ == "__main__":
    if JOURNAL.sock is None:
        print("note: not root, so no private journal socket: log lines not checked")
    try:
        t.main([(name, guarded(fn)) for name, fn in TESTS_LIST])
    finally:
        shutil.rmtree(CA_DIR, ignore_errors=True)
