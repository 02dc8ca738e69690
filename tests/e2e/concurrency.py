#!/usr/bin/env python3
"""50 clients at once, each sending several messages in its session, through
systemd-socket-activate --accept: every message stored exactly once, whole,
with its own Return-Path, and nothing left in tmp/."""
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import launch  # noqa: E402
from smtpdtest import Box, Failed, check, main  # noqa: E402

CLIENTS = 50
MESSAGES = 3


def client(port, n, start, errors):
    import smtplib
    try:
        start.wait(timeout=30)
        with smtplib.SMTP("127.0.0.1", port, local_hostname=launch.HELO, timeout=60) as s:
            for m in range(MESSAGES):
                token = b"C%02dM%d" % (n, m)
                rcpts = ["a@example.org"] + (["b@example.org"] if m % 2 else [])
                refused = s.sendmail("c%d@client.example" % n, rcpts,
                                     launch.message(token, eight_bit=(m == 0)))
                if refused:
                    errors.append("%s refused %r" % (token, refused))
    except Exception as e:  # noqa: BLE001 - any failure of a client is the test's failure
        errors.append("client %d: %r" % (n, e))


def fifty_at_once():
    box = Box(timeout=60)
    server = launch.socket_activate(box, inetd=True)
    errors = []
    try:
        start = threading.Barrier(CLIENTS)
        threads = [threading.Thread(target=client, args=(server.port, n, start, errors))
                   for n in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        check(not any(t.is_alive() for t in threads), "clients still running after 120 s")
    finally:
        server.stop()
    try:
        if errors:
            raise Failed("%d client errors, first: %s" % (len(errors), errors[0]))
        expected = []
        for n in range(CLIENTS):
            for m in range(MESSAGES):
                token = b"C%02dM%d" % (n, m)
                expected.append((token, "c%d@client.example" % n,
                                 launch.stored(launch.message(token, eight_bit=(m == 0)))))
        launch.expect_delivered(box, expected)
    finally:
        box.close()


main([("%d clients x %d messages at once" % (CLIENTS, MESSAGES), fifty_at_once)])
