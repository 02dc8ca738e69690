#!/usr/bin/env python3
"""Many machines on one: four smtpd "hosts" (tcpserver on 127.0.0.11-14,
each with its own hostname and Maildir root standing for its own disk,
proxy-protocol v2) behind one HAProxy (balance leastconn, send-proxy-v2,
option smtpchk, option redispatch). Clients on eight loopback addresses
send one message per connection; after a third of the messages, host 3 is
taken down (its tcpserver and its sessions get SIGTERM, as a machine being
shut down). Clients retry what failed and count what they saw.

Shown: every message in exactly one host's Maildir, none lost; its Received
names the address its client connected from and the host holding it;
HAProxy marks host 3 down; every failure a client saw was temporary: on a
connection host 3 had (by HAProxy's own log), no more of them than host 3's
connections that did not deliver, or, on a loaded machine, a connection to
another host that HAProxy closed before any greeting."""
import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import haproxy  # noqa: E402
from smtpdtest import Box, Failed, check, main  # noqa: E402

HOSTS = ["127.0.0.%d" % (11 + i) for i in range(4)]
CLIENTS = ["127.0.0.%d" % (21 + i) for i in range(8)]
MESSAGES = 240
ATTEMPTS = 10		# per message; each failure is counted
DOWN = 2		# index of the host taken down: 127.0.0.13, h3
LIMIT = 60.0
TCPLOG = re.compile(r"^(\S+):(\d+) \[[^\]]*\] \S+ hosts/(\S+) ")


def body(token, source):
    return (b"From: <load@client.example>\r\nSubject: %s\r\nX-Client: %s\r\n\r\n"
            b"token %s\r\n" % (token, source.encode(), token))


def group_members(pgid):
    """Live (not zombie) processes of a process group: {pid: command name}."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out[int(d)] = name
    return out


def take_down(server):
    """SIGTERM to the host's listener and sessions, as a shutdown would, and
    wait (bounded) until every one has ended: each session answers 421 4.3.2
    or has already sent its 250. No SIGKILL: one between a message reaching
    the disk and its 250 would make the client's retry a duplicate."""
    sessions = [p for p, name in group_members(server.proc.pid).items() if name == "smtpd"]
    os.killpg(server.proc.pid, signal.SIGTERM)
    end = time.monotonic() + LIMIT
    while group_members(server.proc.pid) and time.monotonic() < end:
        time.sleep(0.02)
    left = group_members(server.proc.pid)
    check(not left, "host still running after SIGTERM: %r" % left)
    server.proc.wait()
    server.log.close()
    return len(sessions)


def connections(balancer, wanted):
    """{(client address, port): server} from HAProxy's log, once every
    connection in wanted has its line (logged as it ends: bounded wait)."""
    end = time.monotonic() + LIMIT
    while True:
        by_port = {}
        for line in balancer.log_lines():
            m = TCPLOG.match(line)
            if m and m.group(1) in CLIENTS:
                by_port[(m.group(1), int(m.group(2)))] = m.group(3)
        missing = [w for w in wanted if w not in by_port]
        if not missing:
            return by_port
        if time.monotonic() > end:
            raise Failed("HAProxy logged no line for %r" % missing[:5])
        time.sleep(0.05)


class Load:
    """MESSAGES tokens shared by one thread per client address."""

    def __init__(self, port):
        self.port = port
        self.todo = [b"MH%04d" % i for i in range(MESSAGES)]
        self.lock = threading.Condition()
        self.sent = {}		# token -> client address of the 250
        self.failures = []	# send_once outcomes that were not ok
        self.hard = []		# 5xx: never retried, fails the test

    def worker(self, source):
        while True:
            with self.lock:
                if not self.todo:
                    return
                token = self.todo.pop()
            for _ in range(ATTEMPTS):
                r = haproxy.send_once(self.port, source, "load@client.example",
                                      "a@example.org", body(token, source))
                with self.lock:
                    if r["ok"]:
                        self.sent[token] = source
                        self.lock.notify_all()
                        break
                    r["token"], r["source"] = token, source
                    if (r["reply"] or "").startswith("5"):
                        self.hard.append(r)
                        break
                    self.failures.append(r)
            else:
                with self.lock:
                    self.hard.append({"token": token, "reply": "gave up"})

    def wait_sent(self, n):
        with self.lock:
            self.lock.wait_for(lambda: len(self.sent) >= n or not self.todo and
                               len(self.sent) + len(self.hard) == MESSAGES, timeout=LIMIT)


def stored(box):
    """{token: (Received text, X-Client)} of one host's Maildir."""
    out = {}
    for m in box.messages():
        token = re.search(rb"token (MH\d+)", m).group(1)
        rec = re.search(rb"Received: ([^\n]*\n\t[^\n]*)", m).group(1).decode()
        client = re.search(rb"X-Client: (\S+)", m).group(1).decode()
        check(token not in out, "%r twice in one Maildir" % token)
        out[token] = (rec, client)
    check(box.files("tmp") == [], "left in tmp/: %r" % box.files("tmp"))
    return out


def four_hosts_one_down():
    boxes = [Box(extra="hostname h%d.mx.example\nproxy-protocol v2\nproxy-from %s\n"
                 % (i + 1, haproxy.BALANCER), timeout=10) for i in range(4)]
    for b in boxes:	# Box writes its own hostname line first: keep ours only
        with open(b.config) as f:
            text = f.read().replace("hostname mx.example\n", "", 1)
        with open(b.config, "w") as f:
            f.write(text)
    servers, balancer = [], None
    try:
        for host, b in zip(HOSTS, boxes):
            servers.append(haproxy.tcpserver(b.config, "v2", host=host))
        balancer = haproxy.HAProxy([(s.host, s.port) for s in servers], send_proxy="v2",
                                   check="smtpchk", balance="leastconn",
                                   backend=["retries 3", "option redispatch 1"])
        for name in balancer.names:
            balancer.wait_check(name, "L7OK")
        load = Load(balancer.port)
        threads = [threading.Thread(target=load.worker, args=(c,), daemon=True)
                   for c in CLIENTS]
        for t in threads:
            t.start()
        load.wait_sent(MESSAGES // 3)
        in_flight = take_down(servers[DOWN])
        down = balancer.wait_down(balancer.names[DOWN])
        for t in threads:
            t.join(LIMIT * 4)
            check(not t.is_alive(), "a client is still sending")
        stats = balancer.servers()
        by_port = connections(balancer, [(f["source"], f["port"]) for f in load.failures
                                         if f["port"] is not None])
    finally:
        if balancer is not None:
            balancer.stop()
        for s in servers:
            s.stop()
    try:
        check(load.hard == [], "permanent failures: %r" % load.hard[:5])
        held = [stored(b) for b in boxes]
        everywhere = [t for h in held for t in h]
        check(len(everywhere) == MESSAGES and set(everywhere) == set(load.sent),
              "%d files for %d messages sent" % (len(everywhere), len(load.sent)))
        for i, h in enumerate(held):
            check(h, "host h%d delivered nothing" % (i + 1))
            for token, (rec, client) in h.items():
                want = "from client.example ([%s])\n\tby h%d.mx.example " % (client, i + 1)
                check(rec.startswith(want), "%r: Received %r, want %r" % (token, rec, want))
                check(load.sent[token] == client, "%r sent from %s" % (token, load.sent[token]))
        lost = int(stats[balancer.names[DOWN]]["stot"]) - len(held[DOWN])
        down_failures, elsewhere = [], []
        for f in load.failures:
            server = by_port.get((f["source"], f["port"]))	# None: no connection made
            if server in (None, balancer.names[DOWN]):
                down_failures.append(f)
                continue
            # On a loaded machine HAProxy may end a connection it gave to
            # another host before any greeting (a connect retried, a check
            # that timed out): a closed connection, which the client
            # retries. Anything that got a reply there is a real fault.
            check(f["stage"] == "greeting" and f["reply"] is None,
                  "a failure on %s, not the host taken down: %r" % (server, f))
            elsewhere.append(f)
        check(len(down_failures) <= lost,
              "%d failures, but host 3 had only %d connections that did not deliver"
              % (len(down_failures), lost))
        kinds = {}
        for f in load.failures:
            k = (f["reply"] or "closed")[:40]
            kinds[k] = kinds.get(k, 0) + 1
        print("     per host %r; host 3: %d sessions at the stop, HAProxy %s (%s); "
              "clients saw %d failures, all retried: %r; %d closed before a greeting "
              "elsewhere" % ([len(h) for h in held], in_flight, down["status"],
                             down["check_status"], len(load.failures), kinds, len(elsewhere)))
    finally:
        for b in boxes:
            b.close()


if __name__ == "__main__":
    main([("four hosts behind HAProxy, one taken down mid-run", four_hosts_one_down)])
