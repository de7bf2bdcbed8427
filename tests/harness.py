"""Real processes for integration tests: a tracker and peers driven through their shells.

Every process is started with ports the OS picks (port 0) and is killed at teardown. Waits are
bounded polls on a condition, never a bare sleep.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TIMEOUT = 30.0


def wait_until(
    cond: Callable[[], object], timeout: float = DEFAULT_TIMEOUT, what: str = "condition"
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Proc:
    """A child process whose merged stdout/stderr lines are collected by a reader thread."""

    def __init__(self, argv: list[str], name: str, stdin: bool = False) -> None:
        self.name = name
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            cwd=ROOT,
            env=env,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = DEFAULT_TIMEOUT, start: int = 0) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not self._reader.is_alive()):
                    tail = "\n".join(self.lines[-30:])
                    raise AssertionError(
                        f"{self.name}: no line matching {pattern!r} in {timeout}s; last output:\n{tail}"
                    )
                self._cond.wait(min(left, 0.2))

    @property
    def pid(self) -> int:
        return self.p.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
        self.p.wait(timeout=10)

    def alive(self) -> bool:
        return self.p.poll() is None


class TrackerProc(Proc):
    def __init__(self, db: str, bind: str = "tcp://127.0.0.1:0") -> None:
        super().__init__([sys.executable, "-m", "tracker", "--bind", bind, "--db", db], "tracker")
        self.db = db
        self.endpoint = self.wait_for(r"tracker listening on (tcp://\S+)").group(1)


@dataclass
class Result:
    out: list[str]  # every line printed while the command ran (stdout and stderr, in order)

    @property
    def errors(self) -> list[str]:
        return [line for line in self.out if line.startswith("error: ")]

    @property
    def text(self) -> str:
        return "\n".join(self.out)


class PeerProc(Proc):
    """A peer whose shell reads commands from a pipe, one at a time."""

    def __init__(self, tracker: str, home: str, *extra: str, name: str = "peer") -> None:
        argv = [sys.executable, "-m", "peer", "--tracker", tracker, "--home", home, *extra]
        super().__init__(argv, name, stdin=True)
        self.home = home
        self._marks = 0

    def run(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> Result:
        """Send one command and collect what it printed (up to an echo marker)."""
        self._marks += 1
        marker = f"__done_{self._marks}__"
        with self._cond:
            start = len(self.lines)
        assert self.p.stdin is not None
        self.p.stdin.write(f"{command}\necho {marker}\n")
        self.p.stdin.flush()
        self.wait_for(re.escape(marker), timeout, start)
        with self._cond:
            out = self.lines[start:]
        return Result([line for line in out[: out.index(marker)]])

    def ok(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> Result:
        """Run a command that must succeed."""
        r = self.run(command, timeout)
        assert not r.errors, f"{self.name}: {command!r} failed: {r.errors}"
        return r

    def refused(self, command: str, reason: str) -> str:
        """Run a command that must fail with an error matching ``reason``."""
        r = self.run(command)
        assert r.errors, f"{self.name}: {command!r} should have failed; printed {r.out}"
        assert re.search(reason, r.errors[0]), f"{command!r}: {r.errors[0]!r} does not match {reason!r}"
        return r.errors[0]

    def progress(self, name: str) -> float:
        """Fraction done of a running download, from show_downloads; 1.0 once complete."""
        for line in self.run("show_downloads").out:
            if line.endswith(f"] {name}") and line.startswith("[C]"):
                return 1.0
            m = re.match(rf"\[D\] \[\S+\] {re.escape(name)} \d+% \((\d+)/(\d+) pieces", line)
            if m:
                return int(m.group(1)) / int(m.group(2))
        return 0.0

    def finish(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """Close stdin (end of script) and return the exit status."""
        assert self.p.stdin is not None
        self.p.stdin.close()
        return self.p.wait(timeout=timeout)


class Swarm:
    """Starts processes for one test and kills every one of them at the end."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.tracker: TrackerProc | None = None

    def start_tracker(self, bind: str = "tcp://127.0.0.1:0") -> TrackerProc:
        self.tracker = TrackerProc(os.path.join(self.tmp, "tracker", "state.db"), bind)
        self.procs.append(self.tracker)
        return self.tracker

    def restart_tracker(self) -> TrackerProc:
        assert self.tracker is not None
        return self.start_tracker(self.tracker.endpoint)

    def peer(self, name: str, *extra: str, login: bool = True, create: bool = True) -> PeerProc:
        assert self.tracker is not None
        home = os.path.join(self.tmp, name)
        p = PeerProc(self.tracker.endpoint, home, "--piece-timeout", "3", *extra, name=name)
        self.procs.append(p)
        if create:
            p.ok(f"create_user {name} pw-{name}")
        if login:
            p.ok(f"login {name} pw-{name}")
        return p

    def group(self, admin: PeerProc, group: str, *members: PeerProc) -> None:
        admin.ok(f"create_group {group}")
        for m in members:
            m.ok(f"join_group {group}")
            admin.ok(f"accept_request {group} {m.name}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.alive():
                proc.kill()


def make_file(path: str, size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random content (not zeros: zeros would hide offset bugs)."""
    import random

    data = random.Random(seed).randbytes(size)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return data


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
