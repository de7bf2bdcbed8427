"""Real processes for integration tests: a tracker and peers driven through their shells.

Every process is started with ports the OS picks (port 0) and is killed at teardown. Waits are
bounded polls on a condition, never a bare sleep.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable

from launch.processes import Output, Process, ShellProcess, TrackerProcess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_until(cond: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class PeerProc(ShellProcess):
    """A peer shell with assertions for tests."""

    def ok(self, command: str, timeout: float = 30.0) -> Output:
        """Run a command that must succeed."""
        r = self.run(command, timeout)
        assert not r.errors, f"{self.name}: {command!r} failed: {r.errors}"
        return r

    def refused(self, command: str, reason: str) -> str:
        """Run a command that must fail with an error matching ``reason``."""
        r = self.run(command)
        assert r.errors, f"{self.name}: {command!r} should have failed; printed {r.lines}"
        assert re.search(reason, r.errors[0]), f"{command!r}: {r.errors[0]!r} does not match {reason!r}"
        return r.errors[0]


class Swarm:
    """Starts processes for one test and kills every one of them at the end."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.procs: list[Process] = []
        self.tracker: TrackerProcess | None = None
        self.trackers: list[TrackerProcess] = []  # a cluster's, in the order peers list them

    def start_tracker(
        self, bind: str = "tcp://127.0.0.1:0", db: str = "", key_service: bool = False
    ) -> TrackerProcess:
        """A tracker on ``db`` (default: a SQLite file of this test); all of one test's trackers
        share one key pair, as the trackers of a cluster do. ``key_service``: it also hands its
        key out in the clear (trust on first use), on a port of its own."""
        db = db or os.path.join(self.tmp, "tracker", "state.db")
        # The key service on a free port of its own: the default, the tracker's port + 1, may be
        # taken when a test restarts a tracker on the port it had.
        key_bind = "tcp://127.0.0.1:0" if key_service else "none"
        keys = ("--keys", self.tracker_keys, "--key-bind", key_bind)
        self.tracker = TrackerProcess(db, bind, *keys, cwd=ROOT)
        self.procs.append(self.tracker)
        return self.tracker

    @property
    def tracker_keys(self) -> str:
        """The folder of the key pair every tracker of this test uses."""
        return os.path.join(self.tmp, "tracker-keys")

    def restart_tracker(self) -> TrackerProcess:
        assert self.tracker is not None
        return self.start_tracker(self.tracker.endpoint, self.tracker.db)

    def cluster(self, db: str, count: int = 2) -> list[TrackerProcess]:
        """``count`` trackers on one PostgreSQL database; peers get all of them, in order."""
        self.trackers = [self.start_tracker(db=db) for _ in range(count)]
        self.tracker = self.trackers[0]
        return self.trackers

    def restart(self, t: TrackerProcess) -> TrackerProcess:
        """Start a tracker again on the same port and database (after a kill)."""
        again = TrackerProcess(t.db, t.endpoint, "--keys", self.tracker_keys, "--key-bind", "none", cwd=ROOT)
        self.procs.append(again)
        self.trackers = [again if x is t else x for x in self.trackers]
        return again

    @property
    def tracker_arg(self) -> str:
        """What peers get as --tracker: the cluster's list, or the one tracker."""
        assert self.tracker is not None
        return ",".join(t.endpoint for t in self.trackers) or self.tracker.endpoint

    def peer(
        self, name: str, *extra: str, login: bool = True, create: bool = True, user: str = ""
    ) -> PeerProc:
        assert self.tracker is not None
        home = os.path.join(self.tmp, name)
        p = PeerProc(
            self.tracker_arg,
            home,
            "--piece-timeout",
            "3",
            *extra,
            key=self.tracker.key,
            name=name,
            cwd=ROOT,
        )
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
    data = random.Random(seed).randbytes(size)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return data


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
