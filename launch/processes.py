"""Driving tracker and peer processes from another program (tests, demo, bench).

A ``ShellProcess`` is a peer started with its shell on a pipe: ``run`` sends one command and
returns what it printed, up to an ``echo`` marker, so callers never guess how long a command
takes. Output of both streams is merged in order and collected by a reader thread.

The tracker's readiness line (``TRACKER_READY``) is the contract with ``tracker/cli.py``: it
says where the tracker listens once it does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

DEFAULT_TIMEOUT = 30.0
TRACKER_READY = r"tracker listening on (tcp://\S+) key (\S+)"


class Process:
    """A child process whose merged stdout/stderr lines are collected by a reader thread."""

    def __init__(
        self,
        argv: list[str],
        name: str,
        *,
        stdin: bool = False,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            cwd=cwd,
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
        """The first line (from index ``start``) matching ``pattern``; raises TimeoutError."""
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
                    raise TimeoutError(f"{self.name}: no line matching {pattern!r} in {timeout}s:\n{tail}")
                self._cond.wait(min(left, 0.2))

    def json_line(self, key: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """A child's JSON report line that starts with ``key`` (see ``report``)."""
        m = self.wait_for(rf'^\{{"{key}":.*\}}$', timeout=max(0.1, timeout))
        return orjson.loads(m.group(0))

    def send_line(self, obj: Any) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(orjson.dumps(obj).decode() + "\n")
        self.p.stdin.flush()

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 10) -> None:
        if self.p.poll() is None:
            self.p.send_signal(sig)
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def report(**fields: Any) -> None:
    """In a child process: one JSON line its parent reads with ``Process.json_line``."""
    sys.stdout.write(orjson.dumps(fields).decode() + "\n")
    sys.stdout.flush()


class TrackerProcess(Process):
    """A tracker that is listening when the constructor returns (or killed, if it never does)."""

    def __init__(
        self,
        db: str,
        bind: str = "tcp://127.0.0.1:0",
        *extra: str,
        cwd: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        wrap: Sequence[str] = (),
    ) -> None:
        """``wrap``: a command to run it under (say ``ip netns exec NS``)."""
        argv = [*wrap, sys.executable, "-m", "tracker", "--bind", bind, "--db", db, *extra]
        super().__init__(argv, "tracker", cwd=cwd)
        self.db = db
        try:
            m = self.wait_for(TRACKER_READY, timeout)
            self.endpoint, self.key = m.group(1), m.group(2)
        except BaseException:
            self.kill()
            raise


@dataclass
class Output:
    lines: list[str]  # everything printed while the command ran, stdout and stderr in order

    @property
    def errors(self) -> list[str]:
        return [line for line in self.lines if line.startswith("error: ")]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class ShellProcess(Process):
    """A peer whose shell reads commands from a pipe, one at a time."""

    def __init__(
        self,
        tracker: str,
        home: str,
        *extra: str,
        key: str | None = None,
        name: str = "peer",
        cwd: str | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        """A peer of the tracker(s) at ``tracker`` whose public key is ``key`` (learned on first
        use when None); ``wrap``: a command to run it under (say ``ip netns exec NS``)."""
        argv = [*wrap, sys.executable, "-m", "peer", "--tracker", tracker, "--home", home, *extra]
        if key is not None:
            argv.append(f"--tracker-key={key}")  # a Z85 key may start with "-"
        super().__init__(argv, name, stdin=True, cwd=cwd)
        self.home = home
        self._marks = 0

    def run(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> Output:
        """Send one command and collect what it printed."""
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
        return Output(out[: out.index(marker)])

    def progress(self, name: str) -> float:
        """Fraction done of a download, from show_downloads; 1.0 once complete."""
        for line in self.run("show_downloads").lines:
            if line.startswith("[C]") and line.endswith(f"] {name}"):
                return 1.0
            m = re.match(rf"\[D\] \[\S+\] {re.escape(name)} \d+% \((\d+)/(\d+) pieces", line)
            if m:
                return int(m.group(1)) / int(m.group(2))
        return 0.0

    def finish(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        """End of script: close stdin and return the exit status."""
        assert self.p.stdin is not None
        self.p.stdin.close()
        return self.p.wait(timeout=timeout)
