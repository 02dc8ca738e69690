"""logsink: smtpd's log lines, received by the test itself.

private_namespace() re-runs the calling test inside a private mount
namespace (unshare -m, root only) with a tmpfs over /run, so the journal
socket it binds there, /run/systemd/journal/socket, is its own and the
machine's /run is never touched. Every smtpd started with JOURNAL_ENV in its
environment and /dev/null as its stderr (what launch.Launcher gives) takes
that stderr for a journal stream (systemd.exec(5) JOURNAL_STREAM) and sends
each line there as a native-protocol entry: MESSAGE, PRIORITY and the
SMTPD_* fields, which JournalSink collects in order.
"""
import os
import socket
import struct
import sys
import threading

SOCKET = "/run/systemd/journal/socket"
_null = os.stat(os.devnull)
JOURNAL_ENV = {"JOURNAL_STREAM": "%d:%d" % (_null.st_dev, _null.st_ino)}


def private_namespace(script):
    """Re-exec script in its own mount namespace with /run a fresh tmpfs;
    returns only inside it. Without root: prints a skip line and exits 0."""
    if os.environ.get("SMTPD_LOGSINK_NS") == "1":
        return
    if os.geteuid() != 0:
        print("%s: skipped, needs root for a private mount namespace"
              % os.path.basename(script))
        print("0 passed, 0 failed")
        sys.exit(0)
    env = dict(os.environ, SMTPD_LOGSINK_NS="1")
    os.execvpe("unshare", ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                           'mount -t tmpfs tmpfs /run && exec "$@"', "sh",
                           sys.executable, os.path.abspath(script)] + sys.argv[1:], env)


class JournalSink:
    """A datagram socket at the journal's path; a thread keeps draining it
    (a full queue would make smtpd's sendmsg fail and fall back to syslog)."""

    def __init__(self):
        os.makedirs(os.path.dirname(SOCKET), exist_ok=True)
        if os.path.exists(SOCKET):
            os.unlink(SOCKET)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(SOCKET)
        # The sender's pid with each entry, as journald records _PID.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.entries = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        threading.Thread(target=self.drain, daemon=True).start()

    def drain(self):
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(12))
            except OSError:
                return
            entry = {}
            for level, kind, cred in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    entry["_PID"] = str(struct.unpack("=iII", cred[:12])[0])
            for line in data.decode("utf-8", "replace").split("\n"):
                key, eq, value = line.partition("=")
                if eq:
                    entry[key] = value
            with self.cond:
                self.entries.append(entry)
                self.cond.notify_all()

    def mark(self):
        """A position: entries_since(mark) are those that came after it."""
        with self.lock:
            return len(self.entries)

    def entries_since(self, mark=0):
        with self.lock:
            return list(self.entries[mark:])

    def wait_for(self, predicate, mark=0, limit=20.0):
        """Bounded: until predicate(entries since mark) is true; those entries.
        A session's lines are sent before it exits, so waiting is only for
        this thread to have read them."""
        with self.cond:
            self.cond.wait_for(lambda: predicate(self.entries[mark:]), timeout=limit)
            return list(self.entries[mark:])

    def close(self):
        self.sock.close()


def events(entries, name):
    return [e for e in entries if e.get("SMTPD_EVENT") == name]


def by_process(entries):
    """{pid: [entries]}: one smtpd process is one connection."""
    out = {}
    for e in entries:
        out.setdefault(e.get("_PID"), []).append(e)
    return out
