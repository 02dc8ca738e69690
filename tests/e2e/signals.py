#!/usr/bin/env python3
"""Signals: SIGTERM (a service stop) gets 421 4.3.2 before exit, idle or in
the middle of DATA, and leaves nothing half-delivered; a client that goes
away is never a silent death by SIGPIPE; stopping a launcher's whole group
mid-DATA, as systemd does, still tells the client."""
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import launch  # noqa: E402
from smtpdtest import (Box, argv, check, main, read_all, read_until,  # noqa: E402
                       send_while_open, shut, spawn_socket, wait, wait_idle)

HEAD = b"EHLO client.example\r\nMAIL FROM:<s@client.example>\r\nRCPT TO:<a@example.org>\r\nDATA\r\n"


def nothing_delivered(box):
    check(box.files("new") == [], "delivered: %r" % box.files("new"))
    check(box.files("tmp") == [], "left in tmp/: %r" % box.files("tmp"))


def idle():
    box = Box(timeout=30)
    try:
        p, c = spawn_socket(box)
        check(read_until(c, b"\r\n").startswith(b"220 "), "no greeting")
        wait_idle(p.pid, c)
        p.send_signal(signal.SIGTERM)
        out = read_all(c)
        shut(c)
        status = wait(p, 30)
        check(re.search(rb"^421 4\.3\.2 ", out, re.M), "no 421 4.3.2: %r" % out)
        check(status == 1, "exit status %r" % status)
    finally:
        box.close()


def mid_data():
    box = Box(timeout=30)
    try:
        p, c = spawn_socket(box)
        c.sendall(HEAD)
        check(b"354 " in read_until(c, b"354 "), "no 354")
        c.sendall(b"Subject: half\r\n\r\nfirst half of the body\r\n")
        wait_idle(p.pid, c)	# it has read the half and waits for more
        p.send_signal(signal.SIGTERM)
        out = read_all(c)
        shut(c)
        wait(p, 30)
        check(re.search(rb"^421 4\.3\.2 ", out, re.M), "no 421 4.3.2: %r" % out)
        check(b"250 2.0.0" not in out, "a 250 for a half message: %r" % out)
        nothing_delivered(box)
    finally:
        box.close()


def pipelined_stop():
    """Many messages in flight, SIGTERM at a random moment: every 250 after
    DATA is a file in new/, and there is no other file and nothing in tmp/."""
    rng = random.Random(os.getpid())
    msg = (b"MAIL FROM:<s@client.example>\r\nRCPT TO:<a@example.org>\r\nDATA\r\n"
           b"Subject: many\r\n\r\n" + b"x" * 2000 + b"\r\n.\r\n")
    for _ in range(8):
        box = Box(timeout=30)
        try:
            p, c = spawn_socket(box)
            c.sendall(b"EHLO client.example\r\n")
            read_until(c, b"250 ")
            c.settimeout(30)
            for i in range(30):
                # Once SIGTERM is sent smtpd may be gone before our next
                # write: a broken pipe then is the expected end, not a fault.
                if not send_while_open(c, msg):
                    break
                if i == 10:
                    time.sleep(rng.random() * 0.02)	# a random moment, not a wait
                    p.send_signal(signal.SIGTERM)
            out = read_all(c)
            shut(c)
            wait(p, 30)
            ids = re.findall(rb"^250 2\.0\.0 (\S+)\r$", out, re.M)
            files = box.files("new")
            check(len(files) == len(ids), "%d ids acknowledged, %d files" % (len(ids), len(files)))
            check(box.files("tmp") == [], "left in tmp/")
            check(b"421 4.3.2" in out, "no 421 4.3.2")
        finally:
            box.close()


def sigpipe():
    """The client reads the greeting and goes; smtpd still delivers what it
    was sent, and ends by itself, not by SIGPIPE (Popen restores SIGPIPE's
    default in the child, as a launcher would)."""
    box = Box(timeout=30)
    try:
        p = subprocess.Popen(argv(box), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        check(p.stdout.read(4) == b"220 ", "no greeting")
        p.stdout.close()
        # smtpd may end at its first failed reply, before it read all of this.
        for step in (lambda: p.stdin.write(HEAD + b"Subject: gone\r\n\r\nclient left\r\n"
                                           b".\r\nQUIT\r\n"), p.stdin.close):
            try:
                step()
            except BrokenPipeError:
                pass
        status = wait(p, 30)
        check(status >= 0, "killed by signal %d" % -status)
        check(box.files("tmp") == [], "left in tmp/")
    finally:
        box.close()


def pipe_session():
    """SIGTERM while a pipe session waits for a command: 421 4.3.2 is still
    written (the stop ends waits, never the attempt to write), exit 1."""
    box = Box(timeout=30)
    try:
        p = subprocess.Popen(argv(box), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        try:
            check(p.stdout.readline().startswith(b"220 "), "no greeting")
            p.stdin.write(b"EHLO client.example\r\n")
            p.stdin.flush()
            line = b"250-"
            while line.startswith(b"250-"):
                line = p.stdout.readline()
            check(line.startswith(b"250 "), "EHLO reply ends %r" % line)
            # Now smtpd waits for the next command, with nothing to flush.
            wait_idle(p.pid, p.stdin)
            p.send_signal(signal.SIGTERM)
            out = p.stdout.read()
            status = wait(p, 30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdin.close()
            p.stdout.close()
        check(out.startswith(b"421 4.3.2 "), "after SIGTERM: %r" % out)
        check(status == 1, "exit status %r" % status)
    finally:
        box.close()


def while_configuring():
    """SIGTERM before the session, here while opening a FIFO that nobody
    writes as the configuration (-c): smtpd ends by the signal (or with 1,
    as for a stop), not with 78 for a config error and never by spinning on;
    no session has begun, so there is no one to send 421 to. -C compiles
    regular files only, so a FIFO there is a configuration error at once."""
    box = Box()
    try:
        fifo = os.path.join(box.dir, "smtpd.fifo")
        os.mkfifo(fifo)
        status = wait(subprocess.Popen([argv(box)[0], "-C", fifo], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), 30)
        check(status == 78, "-C on a FIFO: exit status %r" % status)
    finally:
        box.close()
    for opt in ("-c",):
        box = Box()
        fifo = os.path.join(box.dir, "smtpd.fifo")
        os.mkfifo(fifo)
        writer = None
        try:
            p = subprocess.Popen([argv(box)[0], opt, fifo], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # Opening the write end succeeds once smtpd holds the read end:
            # from then on smtpd is in open(2) or read(2) of its config.
            end = time.monotonic() + 60	# a guard against a hang, not a wait
            while writer is None and time.monotonic() < end and p.poll() is None:
                try:
                    writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:
                    time.sleep(0.01)
            check(writer is not None, "%s: smtpd never opened the FIFO" % opt)
            p.send_signal(signal.SIGTERM)
            status = wait(p, 30)
            check(status in (1, -signal.SIGTERM), "%s: exit status %r" % (opt, status))
        finally:
            if writer is not None:
                os.close(writer)
            box.close()


def launcher_stop():
    """systemctl stop: SIGTERM to the launcher and every session it started."""
    box = Box(timeout=30)
    try:
        server = launch.socket_activate(box, inetd=True)
        c = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        c.sendall(HEAD)
        check(b"354 " in read_until(c, b"354 "), "no 354")
        c.sendall(b"Subject: stop\r\n\r\npart\r\n")
        wait_idle(server.child(c), c)	# the session has read the part, waits for more
        os.killpg(server.proc.pid, signal.SIGTERM)
        out = read_all(c)
        shut(c)
        server.stop()
        check(re.search(rb"^421 4\.3\.2 ", out, re.M), "no 421 4.3.2: %r" % out)
        nothing_delivered(box)
    finally:
        box.close()


main([("SIGTERM while idle", idle),
      ("SIGTERM mid-DATA", mid_data),
      ("SIGTERM among pipelined messages", pipelined_stop),
      ("client gone: no death by SIGPIPE", sigpipe),
      ("SIGTERM on a pipe session", pipe_session),
      ("SIGTERM while reading the configuration", while_configuring),
      ("launcher group stopped mid-DATA", launcher_stop)])
