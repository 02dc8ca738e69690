#!/usr/bin/env python3
"""Real clients against smtpd under a real xinetd (units/xinetd.conf)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import launch  # noqa: E402
import smtpdtest  # noqa: E402

smtpdtest.main(launch.launcher_suite(launch.xinetd))
