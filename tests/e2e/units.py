#!/usr/bin/env python3
"""The files under units/: the systemd units' settings and security rating,
and each example run the way its launcher runs it, with a real client."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import launch  # noqa: E402
from smtpdtest import SMTPD, Box, check, main  # noqa: E402

UNITS = launch.UNITS


def settings(path):
    """{key: [values]} of a unit file, comments and sections ignored."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[":
                continue
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def one(s, key):
    check(key in s, "%s= is missing" % key)
    return s[key][-1]


def seconds(value):
    m = re.fullmatch(r"(\d+)(ms|s|min)?", value)
    check(m is not None, "cannot read the time span %r" % value)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "min": 60}[m.group(2)]


def socket_unit():
    s = settings(os.path.join(UNITS, "smtpd.socket"))
    check(one(s, "ListenStream") == "25", "ListenStream is not 25")
    check(one(s, "Accept") == "yes", "Accept=yes is missing")
    total, per_source = int(one(s, "MaxConnections")), int(one(s, "MaxConnectionsPerSource"))
    check(0 < per_source < total, "MaxConnectionsPerSource must be below MaxConnections")
    interval = seconds(s.get("TriggerLimitIntervalSec", ["2s"])[-1])
    burst = int(s.get("TriggerLimitBurst", ["200"])[-1])
    check(interval == 0 or burst / interval >= 1000,
          "trigger limit below 1000 activations per second: a burst switches the socket off")


def service_unit():
    s = settings(os.path.join(UNITS, "smtpd@.service"))
    check(one(s, "StandardInput") == "socket", "StandardInput=socket is missing")
    check(one(s, "StandardError") == "journal", "stderr must not default to the socket")
    check(one(s, "User") not in ("", "root", "0"), "runs as root")
    check(one(s, "ReadWritePaths") != "", "no ReadWritePaths for the Maildirs")
    check(one(s, "ProtectSystem") == "strict", "ProtectSystem is not strict")


def security_rating():
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                        os.path.join(UNITS, "smtpd@.service")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    check(m is not None, "no rating from systemd-analyze:\n" + out[-1000:])
    check(float(m.group(1)) <= 1.0, "exposure %s, want 1.0 or lower" % m.group(1))


def verify_units():
    """systemd-analyze verify, with ExecStart= pointing at the binary under test."""
    where = tempfile.mkdtemp(prefix="smtpd-units.")
    names = ("smtpd.socket", "smtpd@.service", "smtpd@.service.d/tls.conf",
             "smtpd-ticket-keys.service", "smtpd-ticket-keys.timer")
    try:
        os.mkdir(os.path.join(where, "smtpd@.service.d"))
        for name in names:
            with open(os.path.join(UNITS, name)) as f:
                text = f.read()
            with open(os.path.join(where, name), "w") as f:
                f.write(re.sub(r"(?m)^ExecStart=\S+", "ExecStart=" + SMTPD, text))
        p = subprocess.run(["systemd-analyze", "verify", "--man=no"] +
                           [os.path.join(where, n) for n in names if "/" not in n],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode("utf-8", "replace")
        check(p.returncode == 0 and "smtpd" not in out, "systemd-analyze verify:\n" + out)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def tls_units():
    """The TLS drop-in passes the key files as credentials, and the ticket
    keys it passes are the file the daily timer rotates."""
    creds = {}
    for value in settings(os.path.join(UNITS, "smtpd@.service.d", "tls.conf"))["LoadCredential"]:
        name, _, path = value.partition(":")
        creds[name] = path
    check(sorted(creds) == ["tls-cert", "tls-key", "tls-ticket-keys"],
          "LoadCredential names: %r" % sorted(creds))
    check(all(p.startswith("/") for p in creds.values()), "credential paths not absolute")
    service = settings(os.path.join(UNITS, "smtpd-ticket-keys.service"))
    check(one(service, "ExecStart").split()[1:] == ["-T", creds["tls-ticket-keys"]],
          "the timer rotates another file than smtpd@.service reads")
    timer = settings(os.path.join(UNITS, "smtpd-ticket-keys.timer"))
    check(one(timer, "OnCalendar") == "daily", "not daily")
    check(one(timer, "WantedBy") == "timers.target", "enable does not start it at boot")


def run_example(argv, box, stderr_is_socket):
    """argv (the example's command, our binary and config put in) started per
    connection on a loopback port; one message through it with swaks."""
    if stderr_is_socket:	# as inetd and systemd's default: fd 2 is the client too
        argv = ["sh", "-c", 'exec "$0" "$@" 2>&1'] + argv
    server = launch.Launcher(lambda port: (["systemd-socket-activate", "-l",
                                            "127.0.0.1:%d" % port, "--accept", "--inetd"]
                                           + argv, None))
    try:
        body = launch.message(b"EXAMPLE1", eight_bit=True)
        launch.send_swaks(server.port, "ex@client.example", "a@example.org", body)
    finally:
        server.stop()
    launch.expect_delivered(box, [(b"EXAMPLE1", "ex@client.example", launch.stored(body))])


def substitute(words, box):
    """Our binary for the installed path, our config for the installed one."""
    out = []
    for w in words:
        if w.endswith("/sbin/smtpd"):
            w = SMTPD
        elif w.endswith("/smtpd.conf"):
            w = box.config
        out.append(w)
    return out


def service_command():
    s = settings(os.path.join(UNITS, "smtpd@.service"))
    box = Box()
    try:
        run_example(substitute(one(s, "ExecStart").split(), box), box, stderr_is_socket=False)
    finally:
        box.close()


def inetd_line():
    with open(os.path.join(UNITS, "inetd.conf")) as f:
        lines = [ln.split() for ln in f if ln.strip() and not ln.startswith("#")]
    check(len(lines) == 1, "units/inetd.conf should hold one service line")
    service, socktype, proto, wait, user, program, *args = lines[0]
    check((service, socktype, proto, wait) == ("smtp", "stream", "tcp", "nowait"),
          "not an smtp stream tcp nowait line: %r" % lines[0])
    check(user not in ("root", "0"), "runs as root")
    check(args and args[0] == os.path.basename(program), "argv0 is not the program's name")
    box = Box()
    try:
        run_example(substitute([program] + args[1:], box), box, stderr_is_socket=True)
    finally:
        box.close()


def config_in_examples():
    """Every example names the same installed binary and configuration."""
    for name in ("smtpd@.service", "inetd.conf", "xinetd.conf", "tcpserver.run"):
        with open(os.path.join(UNITS, name)) as f:
            text = f.read()
        check("/usr/local/sbin/smtpd" in text, "%s: not /usr/local/sbin/smtpd" % name)
        check("/usr/local/etc/smtpd.conf" in text, "%s: not /usr/local/etc/smtpd.conf" % name)


if not os.path.exists(SMTPD):
    raise SystemExit("no %s" % SMTPD)
main([("smtpd.socket settings", socket_unit),
      ("smtpd@.service settings", service_unit),
      ("systemd-analyze security <= 1.0 (with the TLS drop-in)", security_rating),
      ("TLS drop-in and ticket key units", tls_units),
      ("systemd-analyze verify", verify_units),
      ("smtpd@.service ExecStart per connection", service_command),
      ("inetd.conf line, stderr on the socket", inetd_line),
      ("examples agree on paths", config_in_examples)])
