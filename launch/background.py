"""Processes that outlive their launcher (``scripts/swarm``): own session, output to a log file.

``wait_line`` reads the log until a readiness line appears, so a caller knows the process is
serving before it records it.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

from .processes import TRACKER_READY

__all__ = ["TRACKER_READY", "spawn", "wait_line"]


def spawn(argv: list[str], log: str, cwd: str) -> subprocess.Popen[bytes]:
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )


def wait_line(log: str, pattern: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> re.Match[str]:
    """The first match of ``pattern`` in ``log``; SystemExit with the log's tail if none comes."""
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        if os.path.exists(log):
            with open(log, encoding="utf-8", errors="replace") as f:
                m = rx.search(f.read())
            if m:
                return m
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = ""
    if os.path.exists(log):
        with open(log, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-2000:]
    state = "exited" if proc.poll() is not None else "stuck"
    raise SystemExit(f"error: {log}: no {pattern!r} (process {state}):\n{tail}")
