#!/usr/bin/env python3
"""bench/filter/filter.py REPS DIR SHM: the figures of bench/RESULTS-filter.md
(started by bench/filter/run, which builds ./smtpd and DIR/machine).

Throughput: W1 and W2 as bench/bench.py runs them (smtp-source over
127.0.0.1, 4 KiB, one message per connection or 50, 8 connections at a
time), through `tcpserver ... smtpd -c CONF`, for three configurations: no
filter, `filter /bin/true`, `filter filters/spamassassin` with a spamd
started here. A run counts until every message is a file in new/.

The hook alone: one smtpd session over a pipe, 200 messages of 4 KiB, the
Maildir on tmpfs (fsync costs nothing there, so the hook is what differs),
with no filter, with /bin/true and with a statically linked true (DIR/
true-static: the exec without the dynamic loader), alternating; wall and
CPU time per message, perf's page faults and context switches (smtpd and
the filters), and strace's count of smtpd's own system calls (the filter's
not included: only what the hook makes smtpd do).
"""
import os
import re
import signal
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests"))
import launch  # noqa: E402
from filtertest import Daemon  # noqa: E402

SMTPD = os.path.join(TOP, "smtpd")
SPAMASSASSIN = os.path.join(TOP, "filters", "spamassassin")
DOMAIN = "bench.example"
CLIENT = "client.example"
SENDER = "source@" + CLIENT
RCPT = "benchmail@" + DOMAIN
MSG_SIZE = 4096
RUN_TIMEOUT = 600
N = {"W1": 500, "W2": 500}              # messages per run
N_SPAM = {"W1": 100, "W2": 400}         # spamd scans a few a second here: fewer
HOOK_MESSAGES = 200
HOOK_ROUNDS = 5

started = []    # Popen objects of the servers started here, stopped by pid


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def spamd_argv(port, workdir):
    argv = ["spamd", "--listen", "127.0.0.1:%d" % port, "--local", "--nouser-config",
            "--max-children", "2", "--min-children", "2", "--max-spare", "2",
            "--syslog", "stderr", "--pidfile", os.path.join(workdir, "spamd.pid")]
    if os.geteuid() == 0:
        argv += ["--username", "nobody"]
    return argv


def spamd_answers(port):
    return subprocess.run(["spamc", "-d", "127.0.0.1", "-p", str(port), "-K",
                           "--connect-retries=1"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=60).returncode == 0


def write_config(path, maildir, filt):
    with open(path, "w") as f:
        f.write("hostname %s\ndomain %s\nmaildir %s\nmax-message-size 104857600\n"
                % (DOMAIN, DOMAIN, maildir))
        if filt:
            f.write("filter %s\n" % " ".join(filt))


def fresh_maildir(d, serial=[0]):
    """Move a used Maildir aside (removed with DIR at the end) and make a new one."""
    if os.path.exists(d):
        serial[0] += 1
        os.rename(d, "%s.used.%d" % (d, serial[0]))
    for sub in ("", "/tmp", "/new", "/cur"):
        os.mkdir(d + sub, 0o700)


def count_new(d):
    with os.scandir(d + "/new") as it:
        return sum(1 for _ in it)


def start_tcpserver(conf):
    for _ in range(5):
        port = launch.free_port()
        p = subprocess.Popen(["tcpserver", "-R", "-H", "-l", DOMAIN, "-c", "100",
                              "127.0.0.1", str(port), SMTPD, "-c", conf],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        started.append(p)
        end = time.monotonic() + 20
        while time.monotonic() < end and p.poll() is None:
            if launch.greeting("127.0.0.1", port).startswith(b"220 "):
                return port
            time.sleep(0.05)
        stop(p)
    raise RuntimeError("tcpserver did not start")


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def source_argv(port, count, sessions, keep):
    argv = ["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(MSG_SIZE),
            "-M", CLIENT, "-f", SENDER, "-t", RCPT]
    return argv + (["-d"] if keep else []) + ["127.0.0.1:%d" % port]


def run_once(port, maildir, wl, n):
    """Seconds from the start of the load until all n messages are in new/."""
    fresh_maildir(maildir)
    if wl == "W1":
        workers = [[source_argv(port, n, 8, False)]]
    else:
        conns = n // 50
        workers = [[source_argv(port, 50, 1, True) for _ in range(i, conns, 8)]
                   for i in range(min(8, conns))]
    t0 = time.monotonic()
    deadline = t0 + RUN_TIMEOUT
    procs = []
    for argvs in workers:   # each worker's connections one after another, workers at once
        procs.append(subprocess.Popen(["sh", "-c", " && ".join(
            " ".join(a) for a in argvs)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=RUN_TIMEOUT)
        if p.returncode != 0:
            raise RuntimeError("smtp-source: %s" % err.decode(errors="replace")[-300:])
    while count_new(maildir) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("%s: %d of %d delivered" % (wl, count_new(maildir), n))
        time.sleep(0.01)
    return time.monotonic() - t0


def session_input(count):
    body = b"".join(b"line %04d of a message of about four KiB, padded to seventy-two\r\n" % i
                    for i in range(MSG_SIZE // 66))
    one = (b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\nSubject: hook\r\n\r\n" %
           (SENDER.encode(), RCPT.encode()) + body + b".\r\n")
    return b"EHLO " + CLIENT.encode() + b"\r\n" + one * count + b"QUIT\r\n"


def one_session(conf, maildir, data_path, count, perf=False, strace=None):
    """(wall s, cpu s of smtpd and its filters, perf counters) for one session;
    with strace, its -c summary of smtpd alone goes to that file."""
    fresh_maildir(maildir)
    argv = [SMTPD, "-c", conf]
    if perf:
        argv = ["perf", "stat", "-x,", "-e", "page-faults,context-switches,task-clock",
                "--"] + argv
    elif strace:
        argv = ["strace", "-c", "-o", strace, "--"] + argv
    before = os.times()
    t0 = time.monotonic()
    with open(data_path, "rb") as inp:
        p = subprocess.run(argv, stdin=inp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=RUN_TIMEOUT)
    wall = time.monotonic() - t0
    after = os.times()
    ok = p.stdout.count(b"\r\n250 2.0.0 ")
    if ok != count or count_new(maildir) != count:
        raise RuntimeError("session: %d of %d accepted, %d stored" %
                           (ok, count, count_new(maildir)))
    cpu = (after.children_user - before.children_user) + \
        (after.children_system - before.children_system)
    counters = {}
    for line in p.stderr.decode(errors="replace").splitlines():
        w = line.split(",")
        if len(w) > 2 and w[2] in ("page-faults", "context-switches", "task-clock"):
            counters[w[2]] = float(w[0])
    return wall, cpu, counters


def throughput(reps, work, variants):
    runs = {}
    ports = {}
    for name, filt in variants:
        conf = os.path.join(work, name + ".conf")
        write_config(conf, os.path.join(work, "mail-" + name), filt)
        ports[name] = start_tcpserver(conf)
    for rep in range(reps):
        k = rep % len(variants)
        for name, _ in variants[k:] + variants[:k]:
            for wl in ("W1", "W2"):
                n = (N_SPAM if name == "spamassassin" else N)[wl]
                secs = run_once(ports[name], os.path.join(work, "mail-" + name), wl, n)
                runs.setdefault((name, wl), []).append(n / secs)
                log("%-13s %s rep %d: %d msgs in %.2f s, %.0f msg/s, load %s"
                    % (name, wl, rep + 1, n, secs, n / secs, loadavg()))
    return runs


def have(program):
    return subprocess.run(["sh", "-c", "command -v " + program],
                          stdout=subprocess.DEVNULL).returncode == 0


def syscalls(path):
    """The calls column of strace -c's total line."""
    with open(path) as f:
        for line in f:
            w = line.split()
            if w and w[-1] == "total":
                return int(w[3])
    raise RuntimeError("no total in %s" % path)


def hook(shm, variants):
    data = os.path.join(shm, "session.in")
    with open(data, "wb") as f:
        f.write(session_input(HOOK_MESSAGES))
    res = {}
    for rnd in range(HOOK_ROUNDS):
        for name, filt in variants:
            conf = os.path.join(shm, name + ".conf")
            write_config(conf, os.path.join(shm, "mail-" + name), filt)
            wall, cpu, _ = one_session(conf, os.path.join(shm, "mail-" + name), data,
                                       HOOK_MESSAGES)
            res.setdefault(name, []).append((wall, cpu))
            log("hook %-6s round %d: %.3f ms wall, %.3f ms cpu per message"
                % (name, rnd + 1, wall / HOOK_MESSAGES * 1e3, cpu / HOOK_MESSAGES * 1e3))
    perf = {}
    for name, filt in variants:
        conf = os.path.join(shm, name + ".conf")
        mail = os.path.join(shm, "mail-" + name)
        perf[name] = {}
        if have("perf"):
            perf[name] = one_session(conf, mail, data, HOOK_MESSAGES, perf=True)[2]
        if have("strace"):
            out = os.path.join(shm, "strace." + name)
            one_session(conf, mail, data, HOOK_MESSAGES, strace=out)
            perf[name]["syscalls"] = syscalls(out)
    return res, perf


def main():
    reps, work, shm = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    log("start: %d cores, load average %s" % (os.cpu_count(), loadavg()))
    machine = [tuple(float(x) for x in subprocess.run(
        [os.path.join(work, "machine")], stdout=subprocess.PIPE, check=True).stdout.split())
        for _ in range(3)]
    fault = statistics.median(m[0] for m in machine)
    call = statistics.median(m[1] for m in machine)
    print("machine: %.2f us per page fault, %.2f us per system call (median of 3)"
          % (fault, call), flush=True)
    variants = [("none", None), ("true", ["/bin/true"])]
    runs = {}
    if reps > 0:    # 0: the hook alone
        spamd = Daemon(spamd_argv, spamd_answers)
        variants.append(("spamassassin",
                         [SPAMASSASSIN, "-d", "127.0.0.1", "-p", str(spamd.port)]))
        try:
            runs = throughput(reps, work, variants)
        finally:
            for p in started:
                stop(p)
            spamd.close()
    hook_variants = variants[:2]
    if os.path.exists(os.path.join(work, "true-static")):
        hook_variants.append(("static", [os.path.join(work, "true-static")]))
    res, perf = hook(shm, hook_variants)
    log("end: load average %s" % loadavg())

    if runs:
        throughput_table(runs, variants)
    hook_table(res, perf)


def throughput_table(runs, variants):
    print("\n| filter | W1 msg/s | W2 msg/s |\n| --- | ---: | ---: |")
    for name, _ in variants:
        print("| %s | %.0f | %.0f |" % (name, statistics.median(runs[(name, "W1")]),
                                        statistics.median(runs[(name, "W2")])))
    for wl in ("W1", "W2"):
        none = statistics.median(runs[("none", wl)])
        true = statistics.median(runs[("true", wl)])
        print("%s: /bin/true adds %.3f ms of wall time per message at 8 connections "
              "(1/rate difference)" % (wl, (1 / true - 1 / none) * 1e3))


def hook_table(res, perf):
    print("\nhook, one session over a pipe, %d messages, Maildir on tmpfs, median of %d:"
          % (HOOK_MESSAGES, HOOK_ROUNDS))
    med = {}
    for name in res:
        med[name] = (statistics.median(w for w, _ in res[name]) / HOOK_MESSAGES * 1e3,
                     statistics.median(c for _, c in res[name]) / HOOK_MESSAGES * 1e3)
        line = "  %-6s %.3f ms wall, %.3f ms cpu per message" % (name, med[name][0], med[name][1])
        if "page-faults" in perf[name]:
            line += "; perf: %.1f page faults, %.1f context switches, %.3f ms task-clock" % (
                perf[name]["page-faults"] / HOOK_MESSAGES,
                perf[name].get("context-switches", 0) / HOOK_MESSAGES,
                perf[name].get("task-clock", 0) / HOOK_MESSAGES)
        if "syscalls" in perf[name]:
            line += "; smtpd's own system calls: %.1f" % (perf[name]["syscalls"] / HOOK_MESSAGES)
        print(line)
    for name in med:
        if name != "none":
            print("  hook with %s: %.3f ms wall, %.3f ms cpu per message" % (
                name, med[name][0] - med["none"][0], med[name][1] - med["none"][1]))


if __name__ == "__main__":
    main()
