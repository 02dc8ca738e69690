"""filtertest: the shipped content filters (filters/) against real daemons.

A Daemon is started here on a loopback port the kernel chose, in its own
process group, waited for with a bounded loop of a real client probe, and
stopped by its pid (then its group, so no worker outlives the test). Should
another program take the port between our choice and the daemon's bind, the
daemon exits and is started again on another port. run_filter runs a filter
as smtpd does: the message file as stdin, only SMTPD_* and PATH set.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import launch  # noqa: E402
from smtpdtest import Failed  # noqa: E402

FILTERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "filters")

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(body, subject="Lunch"):
    """A message as smtpd stores it: our trace lines first, LF line ends."""
    return ("Return-Path: <alice@example.org>\n"
            "Received: from client.example ([127.0.0.1])\n"
            "\tby mx.example with ESMTP id 1700000000M1P1Q1\n"
            "\tfor <bob@example.org>; Sun, 29 Nov 2026 20:00:00 +0000\n"
            "From: Alice <alice@example.org>\nTo: Bob <bob@example.org>\n"
            "Subject: %s\nDate: Sun, 29 Nov 2026 19:59:58 +0000\n"
            "Message-ID: <lunch.1@example.org>\n\n%s\n" % (subject, body)).encode()


class Daemon:
    """argv_for(port) started on a free port until probe(port) says it answers."""

    def __init__(self, argv_for, probe, limit=180.0, tries=5):
        self.dir = tempfile.mkdtemp(prefix="smtpd-filter-e2e.")
        self.proc = None
        for _ in range(tries):
            self.port = launch.free_port()
            self.log = open(os.path.join(self.dir, "daemon.log"), "wb")
            self.proc = subprocess.Popen(argv_for(self.port, self.dir), stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=self.log,
                                         start_new_session=True)
            if self.wait_ready(probe, limit):
                return
            self.stop()	# it exited: most likely the port was taken meanwhile
        raise Failed("%s did not start:\n%s" % (self.proc.args[0], self.log_text()[-2000:]))

    def wait_ready(self, probe, limit):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            if probe(self.port):
                return True
            time.sleep(0.2)
        self.stop()
        raise Failed("%s not answering after %.0f s" % (self.proc.args[0], limit))

    def log_text(self):
        with open(os.path.join(self.dir, "daemon.log"), errors="replace") as f:
            return f.read()

    def stop(self):
        """SIGTERM to the daemon's pid, then SIGKILL to its group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)	# workers left behind
        except ProcessLookupError:
            pass
        self.log.close()

    def close(self):
        self.stop()
        subprocess.run(["rm", "-rf", self.dir], check=False)


def run_filter(name, args, msg, env=None, limit=60):
    """(exit status, stdout, stderr) of filters/NAME ARGS on msg, run as smtpd runs it."""
    full = {"PATH": "/usr/bin:/bin", "SMTPD_ID": "1700000000M1P1Q1", "SMTPD_PEER": "127.0.0.1",
            "SMTPD_HELO": "client.example", "SMTPD_FROM": "<alice@example.org>",
            "SMTPD_RCPTS": "<bob@example.org>", "SMTPD_SIZE": str(len(msg))}
    full.update(env or {})
    with tempfile.TemporaryFile() as f:
        f.write(msg)
        f.seek(0)
        p = subprocess.run([os.path.join(FILTERS, name)] + args, stdin=f,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full,
                           timeout=limit, cwd="/")
    return p.returncode, p.stdout.decode("latin-1"), p.stderr.decode("latin-1")
