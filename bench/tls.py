#!/usr/bin/env python3
"""bench/tls.py: the STARTTLS figures behind bench/RESULTS-tls.md (started by bench/tls).

Side by side in one run, for an ECDSA P-256 and an RSA 2048 certificate from
one throw-away CA (tests/make-test-ca):
  - smtpd under tcpserver (tls-cert, tls-key, tls-ticket-keys) and a private
    Postfix 3.7 (smtpd_tls_security_level = may, the same key and chain);
  - W1 through STARTTLS: bench/tlsload, 4 KiB messages, one per
    connection, 8 connections at once, full handshakes, then resumed ones
    (each connection offers the ticket of the one before it, which another
    smtpd process issued); the rate counts until every message is in new/;
  - peak RSS (VmHWM) of one TLS session and of one plain session, and the
    instructions of each (callgrind, exec to exit);
  - the plain session of the commit that wired STARTTLS in, of its parent
    and of this tree (bench/tls builds the first two): exec-to-greeting and
    peak RSS (bench/probe, interleaved), instructions (callgrind);
  - with bench/tls TLS_BEFORE=COMMIT, that commit's smtpd beside this
    tree's in every TLS figure above, started and measured in turn with it.
The machine's page-fault and system-call costs (bench/machine.c) and its
load come first. Reuses bench.py's Postfix set-up, server start and stop,
Maildirs, probe and callgrind; every server is started here and stopped by
its pid; every run is bounded. Standard library only.
"""
import argparse
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench as B  # noqa: E402

ROOT = "/var/tmp/smtpd-bench-tls"
B.ROOT, B.BIN, B.MAIL, B.USED = ROOT, ROOT + "/bin", ROOT + "/mail", ROOT + "/used"
BIN = B.BIN
CA = ROOT + "/ca"
BEFORE = BIN + "/smtpd-tlsbefore"	# built by bench/tls when TLS_BEFORE is set
KINDS = ("ecdsa", "rsa")
MSG_SIZE = 4096
CONCURRENCY = 8


def log(*a):
    B.log(*a)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- the load

class Load:
    """procs_running from /proc/stat twice a second while we run: what the
    other engineers' work adds to ours on the shared cores."""

    def __init__(self):
        self.samples, self.stop = [], threading.Event()
        self.loadavg = [self.read_loadavg()]
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @staticmethod
    def read_loadavg():
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])

    def run(self):
        while not self.stop.wait(0.5):
            with open("/proc/stat") as f:
                for line in f:
                    if line.startswith("procs_running"):
                        self.samples.append(int(line.split()[1]))

    def end(self):
        self.stop.set()
        self.thread.join()
        self.loadavg.append(self.read_loadavg())


# ---------------------------------------------------------------- servers

SERVERS = {}	# target: the pid of its tcpserver or Postfix master


def tree_cpu_ms(root):
    """User and system time (ms) of root and every descendant, alive or
    reaped (cutime, cstime): what the server spent, whatever else ran."""
    procs, kids = {}, {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                st = f.read()
        except OSError:
            continue
        w = st[st.rindex(")") + 2:].split()	# w[0] is field 3 of proc(5)
        procs[int(pid)] = sum(int(x) for x in w[11:15])	# utime stime cutime cstime
        kids.setdefault(int(w[1]), []).append(int(pid))
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += procs.get(p, 0)
        todo.extend(kids.get(p, []))
    return total * 1000.0 / os.sysconf("SC_CLK_TCK")


def children_gone(root, deadline):
    """Wait (bounded) until tcpserver has reaped every smtpd it started."""
    while time.monotonic() < deadline:
        if not [p for p in os.listdir("/proc") if p.isdigit() and parent_of(p) == root]:
            return
        time.sleep(0.01)


def parent_of(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            st = f.read()
        return int(st[st.rindex(")") + 2:].split()[1])
    except (OSError, ValueError):
        return None

def smtpd_conf(kind):
    path = "%s/smtpd-%s.conf" % (ROOT, kind)
    B.write(path, "hostname %s\nmax-message-size %d\ntls-cert %s/%s.pem\ntls-key %s/%s.key\n"
            "tls-ticket-keys %s/ticket-keys\n" % (B.DOMAIN, B.LIMIT, CA, kind, CA, kind, ROOT))
    return path


def start_smtpd(kind, port, who="smtpd", binary=BIN + "/smtpd"):
    t = who + "-" + kind
    B.fresh_maildir(t)
    # -R -H -l: no ident, no reverse DNS, no local name look-up (as bench.py).
    p = B.start(t, ["tcpserver", "-R", "-H", "-l", B.DOMAIN, "-c", "100", "127.0.0.1",
                    str(port), binary, "-c", smtpd_conf(kind), "-m", B.maildir(t)])
    SERVERS[t] = p.pid
    B.wait_port(port, t)


def start_postfix(kind, port):
    """bench.py's private Postfix, with the same key and chain and
    smtpd_tls_security_level = may, delivering into its own Maildir."""
    t = "postfix-" + kind
    B.PF = "%s/postfix-%s" % (ROOT, kind)
    B.PORTS["postfix"] = port
    B.setup_postfix()
    B.sh(["postconf", "-c", B.PF + "/etc", "-e",
          "smtpd_tls_security_level = may",
          "smtpd_tls_chain_files = %s/%s.key, %s/%s.pem" % (CA, kind, CA, kind),
          "virtual_mailbox_maps = static:%s/" % t])
    B.sh(["postfix", "-c", B.PF + "/etc", "check"], stdout=subprocess.DEVNULL)
    B.fresh_maildir(t)
    p = B.start(t, ["/usr/lib/postfix/sbin/master", "-d", "-c", B.PF + "/etc"],
                env={"MAIL_CONFIG": B.PF + "/etc"})
    B.wait_port(port, t)
    SERVERS[t] = p.pid
    return p


def postfix_smtpd_rss(master_pid):
    """Peak RSS (KiB) of each smtpd process of a Postfix master (each one
    serves many sessions before it exits)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                st = f.read()
            comm = st[st.index("(") + 1:st.rindex(")")]
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            if comm != "smtpd" or ppid != master_pid:
                continue
            with open("/proc/%s/status" % pid) as f:
                out += [int(line.split()[1]) for line in f if line.startswith("VmHWM:")]
        except (OSError, ValueError):
            continue
    return out


# ---------------------------------------------------------------- W1 over STARTTLS

def w1(target, port, n, resume):
    """One run: (connections per second until all n are in new/, by tlsload's
    own exit, handshakes resumed, the server's CPU ms per connection)."""
    d = B.fresh_maildir(target)
    cpu0 = tree_cpu_ms(SERVERS[target])
    argv = [BIN + "/tlsload", "-n", str(n), "-c", str(CONCURRENCY), "-s", str(MSG_SIZE),
            "-h", B.CLIENT] + (["-r"] if resume else []) + ["127.0.0.1", str(port)]
    t0 = time.monotonic()
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=B.RUN_TIMEOUT)
    t_src = time.monotonic() - t0
    out = r.stdout.decode(errors="replace").strip()
    if r.returncode != 0:
        raise RuntimeError("%s: tlsload failed: %s" % (target, out[-500:]))
    deadline = time.monotonic() + B.RUN_TIMEOUT
    while B.count_new(d) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("%s: only %d of %d delivered" % (target, B.count_new(d), n))
        time.sleep(0.01)
    t_done = time.monotonic() - t0
    if not target.startswith("postfix-"):	# its smtpd processes stay for the next run
        children_gone(SERVERS[target], time.monotonic() + B.RUN_TIMEOUT)
    cpu = (tree_cpu_ms(SERVERS[target]) - cpu0) / n
    resumed = int(out.split(" resumed")[0].rsplit(" ", 1)[1])
    return n / t_done, n / t_src, resumed, cpu


def w1_plain(target, port, n):
    """W1 without STARTTLS (smtp-source, as bench.py runs it), for scale."""
    d = B.fresh_maildir(target)
    t0 = time.monotonic()
    errors = B.run_sources([[B.source_argv(port, n, MSG_SIZE, CONCURRENCY, False)]],
                           time.time() + B.RUN_TIMEOUT)
    if errors:
        raise RuntimeError("%s: smtp-source failed: %s" % (target, errors[0]))
    deadline = time.monotonic() + B.RUN_TIMEOUT
    while B.count_new(d) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("%s: only %d of %d delivered" % (target, B.count_new(d), n))
        time.sleep(0.01)
    return n / (time.monotonic() - t0)


# ---------------------------------------------------------------- one session

_client_ctx = []


def client_context():
    """One context for every session: a ticket resumes only in its own."""
    if not _client_ctx:
        _client_ctx.append(ssl.create_default_context(cafile=CA + "/ca.pem"))
    return _client_ctx[0]


def session_rss(argv, tls, valgrind_out=None, resume=None, keep=None):
    """One session on a socketpair (as under inetd): EHLO, STARTTLS if tls,
    EHLO, a 4 KiB message; the server's VmHWM once the 250 is in, then QUIT.
    Under callgrind when valgrind_out is given (then VmHWM is valgrind's).
    resume: a TLS session (ticket) to offer; keep: a dict that gets this
    one's session and whether it was resumed, and the server's CPU time
    (user + system, ms) and minor page faults from its rusage."""
    if valgrind_out:
        argv = ["/usr/bin/valgrind", "-q", "--tool=callgrind",
                "--callgrind-out-file=" + valgrind_out] + argv
    ours, theirs = socket.socketpair()
    p = subprocess.Popen(argv, stdin=theirs, stdout=theirs, stderr=subprocess.DEVNULL)
    theirs.close()
    ours.settimeout(120)
    f = {"sock": ours, "buf": b""}

    def reply():
        while True:
            while b"\r\n" not in f["buf"]:
                chunk = f["sock"].recv(65536)
                if not chunk:
                    raise RuntimeError("session ended early: %r" % f["buf"][-200:])
                f["buf"] += chunk
            line, f["buf"] = f["buf"].split(b"\r\n", 1)
            if line[3:4] != b"-":
                return line

    def send(data):
        f["sock"].sendall(data)

    try:
        reply()
        send(b"EHLO probe.example\r\n")
        reply()
        if tls:
            send(b"STARTTLS\r\n")
            if not reply().startswith(b"220 "):
                raise RuntimeError("STARTTLS refused")
            f["sock"] = client_context().wrap_socket(ours, server_hostname="localhost",
                                                     session=resume)
            send(b"EHLO probe.example\r\n")
            reply()
        body = b"Subject: probe\r\n\r\n" + (b"x" * 76 + b"\r\n") * (MSG_SIZE // 78) + b".\r\n"
        send(b"MAIL FROM:<probe@probe.example>\r\nRCPT TO:<bench@bench.example>\r\nDATA\r\n")
        for want in (b"250", b"250", b"354"):
            if not reply().startswith(want):
                raise RuntimeError("expected %s" % want)
        send(body)
        if not reply().startswith(b"250 2.0.0"):
            raise RuntimeError("message refused")
        if keep is not None and tls:	# the ticket came right after the handshake
            keep["session"], keep["reused"] = f["sock"].session, f["sock"].session_reused
        with open("/proc/%d/status" % p.pid) as st:
            kib = [int(line.split()[1]) for line in st if line.startswith("VmHWM:")][0]
        send(b"QUIT\r\n")
        reply()
        _, status, ru = os.wait4(p.pid, 0)	# bounded: the server got QUIT
        p.returncode = os.waitstatus_to_exitcode(status)
        if keep is not None:
            keep["cpu_ms"] = (ru.ru_utime + ru.ru_stime) * 1000
            keep["minflt"] = ru.ru_minflt
        return kib
    finally:
        f["sock"].close()
        if p.poll() is None:
            p.kill()
            p.wait()


def plain_conf():
    path = ROOT + "/plain.conf"
    B.write(path, "hostname %s\nmax-message-size %d\n" % (B.DOMAIN, B.LIMIT))
    return path


# ---------------------------------------------------------------- report

med = B.med
rng = B.fmt_range	# "median (min–max)"


def on_signal(sig, frame):
    raise SystemExit("bench/tls: stopped by signal %d" % sig)


def main():
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny runs")
    ap.add_argument("--reps", type=int)
    ap.add_argument("-n", type=int, help="connections per W1 run")
    ap.add_argument("--out", default=ROOT + "/results-tls.md")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    n = args.n or (40 if args.quick else 300)

    os.makedirs(ROOT + "/log", exist_ok=True)
    old = "%s/old-%s" % (ROOT, B.STAMP)
    for d in (B.MAIL, B.USED):
        if os.path.exists(d):
            os.makedirs(old, exist_ok=True)
            os.rename(d, "%s/%s" % (old, os.path.basename(d)))
    os.makedirs(B.MAIL)
    os.makedirs(B.USED)
    if not os.path.exists(CA + "/ca.pem"):
        B.sh([os.path.join(B.TOP, "tests", "make-test-ca"), CA])
    for kind in KINDS:		# Postfix's smtpd reads the key as root, then drops
        os.chmod("%s/%s.key" % (CA, kind), 0o600)
    B.sh([BIN + "/smtpd", "-T", ROOT + "/ticket-keys"])

    res = {"start": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    before = None
    if os.path.exists(BEFORE):
        with open(ROOT + "/tlsbefore-rev") as f:
            before = f.read().strip()
    res["before"] = before
    load = Load()
    log("machine: page fault and system call cost")
    res["machine"] = [tuple(float(x) for x in subprocess.run(
        [BIN + "/machine"], stdout=subprocess.PIPE, check=True).stdout.split()) for _ in range(3)]
    masters = {}
    try:
        log("starting smtpd under tcpserver and Postfix, ECDSA and RSA")
        ports = {}
        for kind in KINDS:
            ports["smtpd-" + kind] = free_port()
            start_smtpd(kind, ports["smtpd-" + kind])
            ports["postfix-" + kind] = free_port()
            masters[kind] = start_postfix(kind, ports["postfix-" + kind])
            if before:
                ports["before-" + kind] = free_port()
                start_smtpd(kind, ports["before-" + kind], "before", BEFORE)
        runs = {}
        for rep in range(reps):
            for kind in KINDS:
                targets = ["smtpd-" + kind, "postfix-" + kind] + (["before-" + kind] if before else [])
                if rep % 2:
                    targets.reverse()
                for resume in (False, True):
                    for t in targets:
                        r = w1(t, ports[t], n, resume)
                        runs.setdefault((t, resume), []).append(r)
                        log("%-14s %-7s rep %d: %.1f conn/s (tlsload %.1f), %d resumed, "
                            "server %.2f CPU ms per connection"
                            % (t, "resumed" if resume else "full", rep + 1, r[0], r[1], r[2], r[3]))
                if kind == "ecdsa":	# the plain path is the same for both keys
                    for t in [x for x in targets if not x.startswith("before-")]:
                        r = w1_plain(t, ports[t], n)
                        runs.setdefault((t, "plain"), []).append((r, r, 0, 0))
                        log("%-14s plain   rep %d: %.1f conn/s" % (t, rep + 1, r))
        res["runs"] = runs
        res["postfix_rss"] = {k: postfix_smtpd_rss(m.pid) for k, m in masters.items()}
    finally:
        B.stop_all()

    log("one session: peak RSS, TLS and plain")
    md = B.fresh_maildir("rss")
    new_tls = {k: [BIN + "/smtpd", "-c", smtpd_conf(k), "-m", md] for k in KINDS}
    builds = [("", new_tls)]
    if before:
        builds.append(("before (%s): " % before,
                       {k: [BEFORE, "-c", smtpd_conf(k), "-m", md] for k in KINDS}))
    rev = {v: open("%s/%s-rev" % (ROOT, v)).read().strip() for v in ("base", "wired")}
    # The plain session of each build: with no TLS configured, and with TLS
    # configured but never used (EHLO offers it, the client never says
    # STARTTLS), the deployment the promise is about.
    plain = [
        ("before STARTTLS (%s)" % rev["base"], [BIN + "/smtpd-base", "-c", plain_conf()]),
        ("STARTTLS commit (%s), no TLS configured" % rev["wired"],
         [BIN + "/smtpd-wired", "-c", plain_conf()]),
        ("STARTTLS commit (%s), TLS configured" % rev["wired"],
         [BIN + "/smtpd-wired", "-c", smtpd_conf("ecdsa")]),
        ("this tree, no TLS configured", [BIN + "/smtpd", "-c", plain_conf()]),
        ("this tree, TLS configured", [BIN + "/smtpd", "-c", smtpd_conf("ecdsa")]),
    ]
    plain = [(name, argv + ["-m", md]) for name, argv in plain]
    k = 3 if args.quick else 9
    rss, usage = {}, {}

    def one(name, argv, tls, resume=None):
        got = {}
        rss.setdefault(name, []).append(session_rss(argv, tls, resume=resume, keep=got))
        usage.setdefault(name, []).append((got["cpu_ms"], got["minflt"]))
        return got
    for _ in range(k):
        for name, argv in plain:
            one("plain, " + name, argv, False)
        for label, argvs in builds:
            for kind in KINDS:
                first = one(label + "STARTTLS %s, full handshake" % kind, argvs[kind], True)
                one(label + "STARTTLS %s, resumed" % kind, argvs[kind], True, first["session"])
    res["rss"], res["usage"] = rss, usage

    log("plain session: exec-to-greeting and peak RSS (probe), interleaved")
    per = {}
    count = 20 if args.quick else 100
    for _ in range(3):
        for name, argv in plain:
            lat, prss = B.probe(count, MSG_SIZE, argv)
            per.setdefault(name, ([], []))
            per[name][0].extend(lat)
            per[name][1].extend(prss)
    res["per"] = per
    res["plain"] = [name for name, _ in plain]

    log("callgrind: a plain session (probe), and a TLS session")
    cg = {}
    for i, (name, argv) in enumerate(plain):
        total, by_obj, _ = B.callgrind(argv, "plain-%d" % i)
        cg["plain, " + name] = (total, by_obj)
    for label, argvs in builds:
        for kind in KINDS:
            out = "%s/callgrind.tls-%s%s" % (ROOT, "before-" if label else "", kind)
            first = {}
            session_rss(argvs[kind], True, valgrind_out=out, keep=first)
            cg[label + "STARTTLS " + kind + ", full handshake"] = B.self_cost_by_object(out)
            out += "-resumed"
            again = {}
            session_rss(argvs[kind], True, valgrind_out=out, resume=first["session"], keep=again)
            if not again["reused"]:
                raise RuntimeError("%s: the ticket was not taken" % kind)
            cg[label + "STARTTLS " + kind + ", resumed (ticket of another process)"] = \
                B.self_cost_by_object(out)
    res["callgrind"] = cg
    load.end()
    res["load"] = load
    report(args, res, reps, n)


def report(args, res, reps, n):
    lines = []
    p = lines.append
    commit = subprocess.run(["git", "-C", B.TOP, "describe", "--always", "--dirty"],
                            stdout=subprocess.PIPE).stdout.decode().strip()
    postfix = subprocess.run(["postconf", "-d", "-h", "mail_version"],
                             stdout=subprocess.PIPE).stdout.decode().strip()
    ossl = subprocess.run(["openssl", "version"], stdout=subprocess.PIPE).stdout.decode().strip()
    p("Run of %s UTC: smtpd at %s, Postfix %s, %s, kernel %s, "
      "%d cores; %d repetitions, %d connections per W1 run, %d at once, %d-byte messages."
      % (res["start"], commit or "?", postfix, ossl, os.uname().release,
         os.cpu_count(), reps, n, CONCURRENCY, MSG_SIZE))
    p("")
    p("## The machine\n")
    p("| µs per anonymous page fault | µs per system call (getppid) | load average at start, end "
      "| runnable tasks during the run, median (max) |")
    p("|---|---|---|---|")
    ld = res["load"]
    p("| %s | %s | %s; %s | %s (%s) |" % (
        rng([m[0] for m in res["machine"]], "%.2f"), rng([m[1] for m in res["machine"]], "%.2f"),
        ld.loadavg[0], ld.loadavg[1], med(ld.samples) if ld.samples else "?",
        max(ld.samples) if ld.samples else "?"))
    p("")
    p("## W1 through STARTTLS: connections (one 4 KiB message each) per second until all in new/\n")
    bf = res["before"]
    p("| certificate | handshake | smtpd, median (min–max) | Postfix, median (min–max) "
      "| smtpd / Postfix | resumed of %d (smtpd, Postfix) |" % n +
      (" smtpd before (%s), median (min–max) | before / Postfix | smtpd / before |" % bf
       if bf else ""))
    p("|---|---|---|---|---|---|" + ("---|---|---|" if bf else ""))
    runs = res["runs"]
    for kind in KINDS:
        for resume in (False, True):
            s = runs[("smtpd-" + kind, resume)]
            q = runs[("postfix-" + kind, resume)]
            extra = ""
            if bf:
                b = runs[("before-" + kind, resume)]
                extra = " %s | %.2f | %.2f |" % (
                    rng([r[0] for r in b], "%.1f"), med([r[0] for r in b]) / med([r[0] for r in q]),
                    med([r[0] for r in s]) / med([r[0] for r in b]))
            p("| %s | %s | %s | %s | %.2f | %d, %d |" % (
                "ECDSA P-256" if kind == "ecdsa" else "RSA 2048",
                "resumed (ticket)" if resume else "full",
                rng([r[0] for r in s], "%.1f"), rng([r[0] for r in q], "%.1f"),
                med([r[0] for r in s]) / med([r[0] for r in q]),
                med([r[2] for r in s]), med([r[2] for r in q])) + extra)
    s = runs[("smtpd-ecdsa", "plain")]
    q = runs[("postfix-ecdsa", "plain")]
    p("| (none) | plain W1, no STARTTLS (smtp-source) | %s | %s | %.2f | |" % (
        rng([r[0] for r in s], "%.1f"), rng([r[0] for r in q], "%.1f"),
        med([r[0] for r in s]) / med([r[0] for r in q])) + (" | | |" if bf else ""))
    p("")
    p("| certificate | resumed / full, smtpd | resumed / full, Postfix |" +
      (" resumed / full, smtpd before |" if bf else ""))
    p("|---|---|---|" + ("---|" if bf else ""))
    for kind in KINDS:
        ratio = {}
        for t in ("smtpd-", "postfix-") + (("before-",) if bf else ()):
            ratio[t] = (med([r[0] for r in runs[(t + kind, True)]]) /
                        med([r[0] for r in runs[(t + kind, False)]]))
        p("| %s | %.2f | %.2f |" % ("ECDSA P-256" if kind == "ecdsa" else "RSA 2048",
                                    ratio["smtpd-"], ratio["postfix-"]) +
          (" %.2f |" % ratio["before-"] if bf else ""))
    p("")
    p("Server CPU per connection: user and system time of the server's processes "
      "(tcpserver and every smtpd it started; Postfix's master and all its children) "
      "over a W1 run, divided by its connections, median of the runs; unlike the rates "
      "above it hardly moves with the other work on the machine.\n")
    p("| certificate | handshake | smtpd, CPU ms | Postfix, CPU ms |" +
      (" smtpd before (%s), CPU ms |" % bf if bf else ""))
    p("|---|---|---|---|" + ("---|" if bf else ""))
    for kind in KINDS:
        for resume in (False, True):
            cells = [med([r[3] for r in runs[(t + kind, resume)]])
                     for t in ("smtpd-", "postfix-") + (("before-",) if bf else ())]
            p("| %s | %s | " % ("ECDSA P-256" if kind == "ecdsa" else "RSA 2048",
                                "resumed (ticket)" if resume else "full") +
              " | ".join("%.2f" % c for c in cells) + " |")
    p("")
    p("## One session: peak RSS (VmHWM once the 4 KiB message is accepted), CPU, page faults\n")
    p("| session | peak RSS KiB, median (min–max) | CPU ms (user+sys), median "
      "| minor page faults, median |")
    p("|---|---|---|---|")
    for name, xs in res["rss"].items():
        u = res["usage"][name]
        p("| smtpd, %s | %s | %.2f | %d |" % (name, rng(xs), med([x[0] for x in u]),
                                             med([x[1] for x in u])))
    for kind, xs in res["postfix_rss"].items():
        if xs:
            p("| Postfix smtpd processes after the %s runs (each served many sessions) | %s "
              "| | |" % (kind.upper(), rng(xs)))
    p("")
    p("## The plain session, before and after STARTTLS (bench/probe, interleaved)\n")
    p("| build | exec-to-greeting µs, median (min–max) | peak RSS KiB, median "
      "| instructions (callgrind) | after / before: greeting, RSS, instructions |")
    p("|---|---|---|---|---|")
    first = res["plain"][0]
    b_lat, b_rss = res["per"][first]
    b_ins = res["callgrind"]["plain, " + first][0]
    for name in res["plain"]:
        lat, prss = res["per"][name]
        ins = res["callgrind"]["plain, " + name][0]
        p("| %s | %s | %d | %d | %.3f, %.3f, %.4f |" % (
            name, rng(lat), med(prss), ins, med(lat) / med(b_lat), med(prss) / med(b_rss),
            ins / b_ins))
    p("")
    p("## Instructions per session (callgrind, exec to exit)\n")
    p("| session | instructions | by object (self cost) |")
    p("|---|---|---|")
    for name, (total, by_obj) in res["callgrind"].items():
        objs = ", ".join("%s %d" % (o, c) for o, c in
                         sorted(by_obj.items(), key=lambda x: -x[1])[:6])
        p("| %s | %d | %s |" % (name, total, objs))
    text = "\n".join(lines)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    print(text)
    log("written to", args.out)


if __name__ == "__main__":
    main()
