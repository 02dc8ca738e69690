#!/usr/bin/env python3
"""The HAProxy helper (tests/haproxy.py) against a tiny server written here
that reads the PROXY header itself: HAProxy starts from its own
configuration, sends v1 and v2 headers naming the client at 127.0.0.2 (not
itself at 127.0.0.1), passes the client's bytes after the header, spreads
connections over several servers, runs its SMTP health check (v1: a TCP4
header with its own addresses; v2: LOCAL) to L7OK, and is gone once
stopped. The smtpd tests build on exactly this."""
import os
import queue
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import haproxy  # noqa: E402
from smtpdtest import Failed, check, main  # noqa: E402

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
LIMIT = 10.0


def parse_header(buf):
    """(header dict, rest) when buf starts with a whole PROXY header, else None."""
    if buf.startswith(b"PROXY "):
        end = buf.find(b"\r\n")
        if end == -1:
            check(len(buf) < 107, "v1 line over 107 octets: %r" % buf[:120])
            return None
        words = buf[:end].decode("ascii").split(" ")
        h = {"version": 1, "command": words[1]}
        if words[1] in ("TCP4", "TCP6"):
            check(len(words) == 6, "v1 line %r" % buf[:end])
            h.update(src=words[2], dst=words[3], sport=int(words[4]), dport=int(words[5]))
        return h, buf[end + 2:]
    if len(buf) < 16:
        check(V2_SIGNATURE.startswith(buf[:12]), "neither v1 nor v2: %r" % buf)
        return None
    check(buf[:12] == V2_SIGNATURE, "neither v1 nor v2: %r" % buf[:16])
    length = struct.unpack("!H", buf[14:16])[0]
    if len(buf) < 16 + length:
        return None
    h = {"version": 2, "command": {0x20: "LOCAL", 0x21: "PROXY"}[buf[12]], "family": buf[13]}
    block = buf[16:16 + length]
    if h["command"] == "PROXY" and buf[13] == 0x11:
        h.update(src=socket.inet_ntoa(block[0:4]), dst=socket.inet_ntoa(block[4:8]),
                 sport=struct.unpack("!H", block[8:10])[0],
                 dport=struct.unpack("!H", block[10:12])[0])
    return h, buf[16 + length:]


class TinyServer:
    """Accepts on host:0; each connection's PROXY header, peer and first line
    go to self.seen. smtp=True speaks just enough SMTP for `option smtpchk`;
    otherwise the first line after the header gets "250 tiny" and a close."""

    def __init__(self, host="127.0.0.1", smtp=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.smtp = smtp
        self.seen = queue.Queue()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn, peer), daemon=True).start()

    def read_line(self, conn, buf):
        while b"\r\n" not in buf:
            chunk = conn.recv(4096)
            if not chunk:
                return None, buf
            buf += chunk
        line, _, rest = buf.partition(b"\r\n")
        return line, rest

    def serve(self, conn, peer):
        record = {"peer": peer, "server": self.host}
        try:
            conn.settimeout(LIMIT)
            buf, parsed = b"", None
            while parsed is None:
                chunk = conn.recv(4096)
                if not chunk:
                    raise Failed("EOF before a whole header: %r" % buf)
                buf += chunk
                parsed = parse_header(buf)
            record["header"], rest = parsed
            if self.smtp:
                conn.sendall(b"220 tiny\r\n")
            line, rest = self.read_line(conn, rest)
            record["line"] = line
            while self.smtp and line is not None and line.upper() != b"QUIT":
                conn.sendall(b"250 tiny\r\n")
                line, rest = self.read_line(conn, rest)
            conn.sendall(b"221 tiny\r\n" if self.smtp else b"250 tiny\r\n")
        except (OSError, Failed) as e:
            record["error"] = str(e)
        finally:
            conn.close()
            self.seen.put(record)

    def next(self):
        try:
            record = self.seen.get(timeout=LIMIT)
        except queue.Empty:
            raise Failed("no connection reached %s:%d" % (self.host, self.port))
        check("error" not in record, "server saw %r" % record)
        return record

    def close(self):
        self.sock.close()


def client_session(balancer):
    """Connect from 127.0.0.2, pipeline a line at once, read the answer."""
    with balancer.connect() as c:
        c.sendall(b"EHLO client.example\r\n")
        answer = b""
        while not answer.endswith(b"\r\n"):
            chunk = c.recv(512)
            if not chunk:
                break
            answer += chunk
        return c.getsockname()[1], answer


def relays_client(version):
    server = TinyServer()
    balancer = haproxy.HAProxy([("127.0.0.1", server.port)], send_proxy=version)
    try:
        cport, answer = client_session(balancer)
        check(answer == b"250 tiny\r\n", "client got %r" % answer)
        seen = server.next()
    finally:
        balancer.stop()
        server.close()
    h = seen["header"]
    want = {"version": int(version[1]), "command": "TCP4" if version == "v1" else "PROXY",
            "src": haproxy.CLIENT, "sport": cport, "dst": "127.0.0.1", "dport": balancer.port}
    got = {k: h.get(k) for k in want}
    check(got == want, "header %r, want %r" % (h, want))
    if version == "v2":
        check(h["family"] == 0x11, "v2 family/transport %#x, want TCP over IPv4" % h["family"])
    check(seen["peer"][0] == haproxy.BALANCER, "balancer connected from %r" % (seen["peer"],))
    check(seen["line"] == b"EHLO client.example", "after the header: %r" % seen["line"])


def spreads_over_servers():
    servers = [TinyServer("127.0.0.11"), TinyServer("127.0.0.12")]
    balancer = haproxy.HAProxy([(s.host, s.port) for s in servers], send_proxy="v2")
    try:
        for _ in range(4):
            _, answer = client_session(balancer)
            check(answer == b"250 tiny\r\n", "client got %r" % answer)
        for s in servers:
            records = [s.next(), s.next()]	# round robin: two each
            for r in records:
                check(r["header"].get("src") == haproxy.CLIENT, "header %r" % r["header"])
            check(s.seen.empty(), "server %s got more than its share" % s.host)
    finally:
        balancer.stop()
        for s in servers:
            s.close()


def health_check(version):
    server = TinyServer(smtp=True)
    balancer = haproxy.HAProxy([("127.0.0.1", server.port)], send_proxy=version,
                               check="smtpchk")
    try:
        row = balancer.wait_check("s1", "L7OK")
        check(row["status"] == "UP", "server status %r" % row["status"])
        seen = server.next()
    finally:
        balancer.stop()
        server.close()
    h = seen["header"]
    if version == "v2":
        check(h["command"] == "LOCAL", "v2 check header %r, want LOCAL" % h)
    else:
        # HAProxy fills a v1 check's line from the check connection itself.
        check(h["command"] == "TCP4" and h["src"] == haproxy.BALANCER and
              h["dport"] == server.port, "v1 check header %r" % h)
    check(seen["line"] == b"EHLO balancer.example", "check said %r" % seen["line"])


def stops_by_pid():
    server = TinyServer()
    balancer = haproxy.HAProxy([("127.0.0.1", server.port)], send_proxy="v1")
    pid = balancer.proc.pid
    balancer.stop()
    server.close()
    check(balancer.proc.returncode is not None, "haproxy pid %d still running" % pid)
    try:
        os.killpg(pid, 0)
        raise Failed("process group %d still has members" % pid)
    except ProcessLookupError:
        pass


def bad_configuration_is_reported():
    balancer = None
    try:
        balancer = haproxy.HAProxy([("127.0.0.1", 1)], send_proxy="v1", balance="nonsense")
    except Failed as e:
        check("haproxy exited" in str(e), "unexpected failure: %s" % e)
    else:
        balancer.stop()
        raise Failed("haproxy accepted balance nonsense")


main([
    ("send-proxy: v1 header names the client", lambda: relays_client("v1")),
    ("send-proxy-v2: v2 header names the client", lambda: relays_client("v2")),
    ("two servers share the connections", spreads_over_servers),
    ("smtpchk with send-proxy reaches L7OK", lambda: health_check("v1")),
    ("smtpchk with send-proxy-v2 sends LOCAL, reaches L7OK", lambda: health_check("v2")),
    ("stopped by pid, nothing of it is left", stops_by_pid),
    ("a configuration HAProxy refuses is reported", bad_configuration_is_reported),
])
