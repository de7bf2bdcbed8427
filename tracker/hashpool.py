"""The password-hashing pool: worker threads beside the tracker's loop (ventilator and sink).

The loop PUSHes ``HashJob``s over inproc to the workers' PULL sockets; each worker has the hash
computed and PUSHes the digest to the loop's PULL socket, which the service polls beside the
ROUTER. Every socket belongs to one thread. Frames: a job is [id (8 bytes), salt, password]; a
result is [id, digest]; an empty frame tells a worker to stop.

Each worker thread hands the hash itself to a child process that runs only when nothing else
wants the CPU (SCHED_IDLE, and nice 19 where that is missing) and waits for it with the GIL
released. Not a niced thread: a thread the kernel preempts while it holds the GIL stalls the
loop until it runs again (priority inversion). Measured with `scripts/bench --scale` (500
logins at once, 10,000 peers heartbeating, 2 cores): p99 of other requests about 1 s with
hashing at the loop's priority, 0.5-1 s in nice-19 processes, 62-82 ms with SCHED_IDLE.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import multiprocessing
import multiprocessing.pool
import os
import signal
import threading
from collections.abc import Callable

import zmq

from .deferred import HashJob
from .passwords import scrypt

log = logging.getLogger(__name__)
_pools = itertools.count(1)
STOP = b""
NICE = 19  # hashing yields the CPU to everything else the machine does
_PR_SET_PDEATHSIG = 1


def _hashing_process() -> None:
    """Runs first in each hashing process: lowest priority, and die with the tracker."""
    os.nice(NICE)
    try:  # below nice 19 too: the kernel preempts it at once for any other waking task
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):  # not Linux: nice alone
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the tracker handles Ctrl-C and stops us
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the pool's pipes closing ends us anyway
        pass


def default_workers() -> int:
    """One core for the loop, the rest for hashing (at least one worker)."""
    return max(1, (os.cpu_count() or 2) - 1)


class HashPool:
    """``submit`` jobs and ``drain`` results from the loop's thread; ``close`` from it too."""

    def __init__(
        self,
        ctx: zmq.Context,
        workers: int | None = None,
        hasher: Callable[[bytes, bytes], bytes] = scrypt,
        processes: bool = True,
    ) -> None:
        """``processes``: hash in child processes (``hasher`` must then be a module-level
        function); without, in the worker threads themselves (tests with a stand-in hasher)."""
        n = next(_pools)
        count = workers or default_workers()
        self.procs: multiprocessing.pool.Pool | None = None
        self._closing = False
        if processes:
            spawn = multiprocessing.get_context("spawn")  # never fork a process with ZeroMQ in it
            self.procs = spawn.Pool(count, initializer=_hashing_process)
        self._jobs_ep, self._results_ep = f"inproc://hash-jobs-{n}", f"inproc://hash-results-{n}"
        self.ctx, self.hasher = ctx, hasher
        self.jobs = ctx.socket(zmq.PUSH)
        self.jobs.linger = 0
        self.jobs.bind(self._jobs_ep)
        self.results = ctx.socket(zmq.PULL)
        self.results.linger = 0
        self.results.bind(self._results_ep)
        self.threads = [
            threading.Thread(target=self._work, name=f"hash-{i}", daemon=True) for i in range(count)
        ]
        for t in self.threads:
            t.start()

    def submit(self, jobs: list[HashJob]) -> None:
        for j in jobs:  # the PUSH queue is unbounded enough: the core keeps at most its limit
            self.jobs.send_multipart([j.id.to_bytes(8, "big"), j.salt, j.password])

    def drain(self) -> list[tuple[int, bytes]]:
        """The digests computed so far."""
        out: list[tuple[int, bytes]] = []
        while True:
            try:
                job, digest = self.results.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return out
            out.append((int.from_bytes(job, "big"), digest))

    def close(self) -> None:
        self._closing = True
        for _ in self.threads:
            self.jobs.send(STOP)
        if self.procs is not None:  # a hash under way is abandoned, not waited for
            self.procs.terminate()
            self.procs.join()
        for t in self.threads:
            t.join(timeout=2.0)
        self.jobs.close(linger=0)
        self.results.close(linger=0)

    def pids(self) -> list[int]:
        """The hashing processes (none when hashing in threads)."""
        return [p.pid for p in self.procs._pool] if self.procs is not None else []  # type: ignore[attr-defined]

    def _hash(self, password: bytes, salt: bytes) -> bytes:
        if self.procs is None:
            return self.hasher(password, salt)
        return bytes(self.procs.apply(self.hasher, (password, salt)))

    def _work(self) -> None:
        jobs, results = self.ctx.socket(zmq.PULL), self.ctx.socket(zmq.PUSH)
        try:
            jobs.connect(self._jobs_ep)
            results.connect(self._results_ep)
            while True:
                frames = jobs.recv_multipart()
                if frames == [STOP]:
                    return
                job, salt, password = frames
                results.send_multipart([job, self._hash(password, salt)])
        except zmq.ContextTerminated:
            return
        except Exception:  # a worker that dies would leave logins waiting: say so loudly
            if not self._closing:
                log.exception("password hashing worker failed")
        finally:
            jobs.close(linger=0)
            results.close(linger=0)
