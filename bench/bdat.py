#!/usr/bin/env python3
"""bench/bdat.py: W3 by BDAT (RFC 3030), started by bench/bdat through bench/run.

One 50 MiB message per run, sent by the client below in 1 MiB BDAT chunks
(pipelined, RFC 3030 4.2) and, for comparison, by the same client with
DATA in 1 MiB writes, to smtpd under tcpserver and to a private Postfix,
which offers CHUNKING. Runs are interleaved in rotating order; the table
gives medians. Each rate is the message's size over the time from connect
until the file is in new/ (as in bench.py's W3), and until the client has
the final reply. The machine's page-fault and system-call costs come
first, peak RSS for one 25 MiB chunk last (bench/rss, with its DATA row).

A target that does not offer CHUNKING gets "not offered" in its BDAT row.
Servers, ports, Maildirs and the Postfix instance are bench.py's.
"""
import argparse
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

MiB = 1 << 20
LINE = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,:;-+=*/!?'0123\r\n"
TIMEOUT = 120


def load_rss():
    path = os.path.join(bench.HERE, "rss")
    loader = importlib.machinery.SourceFileLoader("rss", path)
    spec = importlib.util.spec_from_loader("rss", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def make_message(size):
    """Headers and 80-octet CRLF lines, size octets in all, as sent by BDAT.
    No line starts with a dot, so the DATA form is the same plus ".\\r\\n"."""
    head = ("From: <%s>\r\nTo: <%s>\r\nSubject: W3 by BDAT\r\n\r\n"
            % (bench.SENDER, bench.RCPT)).encode()
    body = LINE * ((size - len(head)) // len(LINE))
    return head + body + b"x" * (size - len(head) - len(body) - 2) + b"\r\n"


class Client:
    """Just enough SMTP for one message; every reply is checked."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self, want):
        """One whole reply; its lines. want: the code's first digit."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                more = self.sock.recv(65536)
                if not more:
                    raise RuntimeError("connection closed after %r" % lines)
                self.buf += more
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("latin-1"))
            if line[3:4] != b"-":
                break
        if not lines[-1].startswith(want):
            raise RuntimeError("got %r, want %s.." % (lines, want))
        return lines

    def command(self, line, want="2"):
        self.sock.sendall(line + b"\r\n")
        return self.reply(want)

    def close(self):
        try:
            self.sock.sendall(b"QUIT\r\n")
            self.reply("2")
        except OSError:
            pass
        self.sock.close()


def offers_chunking(port):
    c = Client(port)
    try:
        c.reply("2")
        return any(l[4:].upper() == "CHUNKING" for l in c.command(b"EHLO " + bench.CLIENT.encode()))
    finally:
        c.close()


def send(port, message, mode, chunk):
    """One message by BDAT or DATA; returns seconds until the final reply."""
    t0 = time.monotonic()
    c = Client(port)
    try:
        c.reply("2")
        c.command(b"EHLO " + bench.CLIENT.encode())
        c.command(b"MAIL FROM:<%s> SIZE=%d" % (bench.SENDER.encode(), len(message)))
        c.command(b"RCPT TO:<%s>" % bench.RCPT.encode())
        if mode == "BDAT":
            # Pipelined: every chunk goes out at once; 50 short replies
            # fit in the socket buffers, so nothing waits on them.
            n = (len(message) + chunk - 1) // chunk
            for i in range(n):
                piece = message[i * chunk:(i + 1) * chunk]
                c.sock.sendall(b"BDAT %d%s\r\n" % (len(piece), b" LAST" if i == n - 1 else b""))
                c.sock.sendall(piece)
            for _ in range(n):
                c.reply("2")
        else:
            c.command(b"DATA", "3")
            for i in range(0, len(message), chunk):
                c.sock.sendall(message[i:i + chunk])
            c.sock.sendall(b".\r\n")
            c.reply("2")
        return time.monotonic() - t0
    finally:
        c.close()


def run_once(target, port, mode, message, chunk):
    """(seconds until the file is in new/, seconds until the final reply)."""
    d = bench.fresh_maildir(target)
    t0 = time.monotonic()
    t_reply = send(port, message, mode, chunk)
    deadline = time.monotonic() + TIMEOUT
    while bench.count_new(d) < 1:
        if time.monotonic() > deadline:
            raise RuntimeError("%s %s: not delivered" % (target, mode))
        time.sleep(0.01)
    t_done = time.monotonic() - t0
    name = os.listdir(d + "/new")[0]
    size = os.path.getsize(os.path.join(d, "new", name))
    # Stored with LF line ends: one octet less per 80-octet line.
    if size < len(message) * 0.98:
        raise RuntimeError("%s %s: stored %d octets of %d" % (target, mode, size, len(message)))
    return t_done, t_reply


def start_smtpd(smtpd):
    conf = bench.smtpd_config()
    target = "smtpd/tcpserver"
    bench.fresh_maildir(target)
    # -R -H -l: no ident, no reverse DNS, no local name look-up (as bench.py).
    bench.start(target, ["tcpserver", "-R", "-H", "-l", bench.DOMAIN, "-c", "10", "127.0.0.1",
                         str(bench.PORTS[target]), smtpd, "-c", conf, "-m",
                         bench.maildir(target)])
    bench.wait_port(bench.PORTS[target], target)


def peak_rss(smtpd, chunking):
    """Peak RSS of one session: a 25 MiB BDAT chunk, and bench/rss's 25 MiB DATA."""
    rss = load_rss()
    top = tempfile.mkdtemp(prefix="smtpd-bdat-rss.")
    out = {}
    try:
        for name, data in (("BDAT 26214400 LAST", rss.chunk(25 * MiB)),
                           ("DATA, 25 MiB (bench/rss)", rss.message(25 * MiB))):
            if name.startswith("BDAT") and not chunking:
                out[name] = "not offered"
                continue
            try:
                out[name] = [rss.peak_kib(top, data, smtpd) for _ in range(3)]
            except RuntimeError as e:
                out[name] = str(e)[:80]
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return out


def report(res, args, size):
    lines = []
    p = lines.append
    commit = subprocess.run(["git", "-C", bench.TOP, "describe", "--always", "--dirty"],
                            stdout=subprocess.PIPE).stdout.decode().strip()
    p("W3 by BDAT, %s UTC: smtpd at %s (%s), kernel %s, %d cores; %d runs per row, rotating "
      "order; one %d MiB message in %d KiB chunks.\n" % (
          time.strftime("%Y-%m-%d %H:%M", time.gmtime()), commit or "?", args.smtpd,
          os.uname().release, os.cpu_count(), args.reps, size // MiB, args.chunk // 1024))
    p("## The machine\n")
    p("| µs per anonymous page fault | µs per system call (getppid) |")
    p("|---|---|")
    p("| %s | %s |" % (bench.fmt_range([m[0] for m in res["machine"]], "%.2f"),
                      bench.fmt_range([m[1] for m in res["machine"]], "%.2f")))
    p("")
    p("## W3: one %d MiB message\n" % (size // MiB))
    p("| target | MiB/s until in new/, median (min–max) | MiB/s until the final reply | runs |")
    p("|---|---|---|---|")
    rates = {}
    for key in res["order"]:
        runs = res["runs"].get(key)
        if isinstance(runs, str):
            p("| %s, %s | %s | | 0 |" % (key[0], key[1], runs))
            continue
        done = [size / MiB / r[0] for r in runs]
        reply = [size / MiB / r[1] for r in runs]
        rates[key] = bench.med(done)
        p("| %s, %s | %s | %s | %d |" % (key[0], key[1], bench.fmt_range(done, "%.1f"),
                                         bench.fmt_range(reply, "%.1f"), len(runs)))
    p("")
    sb, sd, pb = (rates.get(("smtpd", "BDAT")), rates.get(("smtpd", "DATA")),
                  rates.get(("postfix", "BDAT")))
    p("Goals: smtpd BDAT ≥ 1.0 × smtpd DATA: %s; ≥ 2.5 × Postfix BDAT: %s.\n" % (
        "%.2f ×" % (sb / sd) if sb and sd else "n/a",
        "%.2f ×" % (sb / pb) if sb and pb else "n/a"))
    p("## Peak RSS of one session (VmHWM, KiB, 3 sessions each)\n")
    p("| session | peak RSS KiB |")
    p("|---|---|")
    for name, xs in res["rss"].items():
        p("| %s | %s |" % (name, " ".join(str(x) for x in xs) if isinstance(xs, list) else xs))
    p("")
    text = "\n".join(lines)
    with open(args.out, "w") as f:
        f.write(text + "\n")
    print(text)
    bench.log("written to", args.out)


def main():
    signal.signal(signal.SIGINT, bench.on_signal)
    signal.signal(signal.SIGTERM, bench.on_signal)
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smoke test: 5 MiB, 1 run")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--size", type=int, default=50, help="MiB per message")
    ap.add_argument("--chunk", type=int, default=MiB, help="octets per BDAT chunk and DATA write")
    ap.add_argument("--smtpd", default=bench.BIN + "/smtpd")
    ap.add_argument("--targets", default="smtpd,postfix")
    ap.add_argument("--out", default=bench.ROOT + "/bdat-results.md")
    args = ap.parse_args()
    args.reps = args.reps or (1 if args.quick else 5)
    size = (5 if args.quick else args.size) * MiB
    targets = args.targets.split(",")
    ports = {"smtpd": bench.PORTS["smtpd/tcpserver"], "postfix": bench.PORTS["postfix"]}
    message = make_message(size)
    os.makedirs(bench.ROOT + "/log", exist_ok=True)
    for d in (bench.MAIL, bench.USED):
        os.makedirs(d, exist_ok=True)
    res = {"runs": {}, "order": [(t, m) for t in targets for m in ("BDAT", "DATA")]}
    try:
        bench.log("machine: page fault and system call cost")
        res["machine"] = [tuple(float(x) for x in subprocess.run(
            [bench.BIN + "/machine"], stdout=subprocess.PIPE, check=True).stdout.split())
            for _ in range(3)]
        bench.log("starting servers")
        if "smtpd" in targets:
            start_smtpd(args.smtpd)
        if "postfix" in targets:
            bench.setup_postfix()
            bench.start_postfix()
        keys = []
        for key in res["order"]:
            if key[1] == "BDAT" and not offers_chunking(ports[key[0]]):
                res["runs"][key] = "not offered (no CHUNKING in EHLO)"
                bench.log("%s does not offer CHUNKING" % key[0])
            else:
                keys.append(key)
        for rep in range(args.reps):
            for key in keys[rep % len(keys):] + keys[:rep % len(keys)]:
                target = "smtpd/tcpserver" if key[0] == "smtpd" else key[0]
                t_done, t_reply = run_once(target, ports[key[0]], key[1], message, args.chunk)
                res["runs"].setdefault(key, []).append((t_done, t_reply))
                bench.log("%-8s %s rep %d: %.2f s (reply %.2f s)" % (key[0], key[1], rep + 1,
                                                                    t_done, t_reply))
    finally:
        bench.stop_all()
    bench.log("peak RSS")
    res["rss"] = peak_rss(args.smtpd, not isinstance(res["runs"].get(("smtpd", "BDAT")), str))
    report(res, args, size)


if __name__ == "__main__":
    main()
