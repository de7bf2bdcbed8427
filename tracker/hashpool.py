"""The password-hashing pool: worker threads beside the tracker's loop (ventilator and sink).

The loop PUSHes ``HashJob``s over inproc to the workers' PULL sockets; each worker hashes (scrypt
releases the GIL, so another core does it while the loop serves on) and PUSHes the digest to
the loop's PULL socket, which the service polls beside the ROUTER. The workers run at the lowest
CPU priority (nice 19, a per-thread attribute on Linux): a burst of logins then takes whatever
CPU the loop leaves, instead of taking half of it from the loop on a 2-core machine (where 500
logins at once made every other request wait up to a second). Every socket belongs to one
thread. Frames: a job is [id (8 bytes), salt, password]; a result is [id, digest]; an empty
frame tells a worker to stop.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable

import zmq

from .deferred import HashJob
from .passwords import scrypt

log = logging.getLogger(__name__)
_pools = itertools.count(1)
STOP = b""
NICE = 19  # hashing yields the CPU to everything else the machine does


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
    ) -> None:
        n = next(_pools)
        self._jobs_ep, self._results_ep = f"inproc://hash-jobs-{n}", f"inproc://hash-results-{n}"
        self.ctx, self.hasher = ctx, hasher
        self.jobs = ctx.socket(zmq.PUSH)
        self.jobs.linger = 0
        self.jobs.bind(self._jobs_ep)
        self.results = ctx.socket(zmq.PULL)
        self.results.linger = 0
        self.results.bind(self._results_ep)
        self.threads = [
            threading.Thread(target=self._work, name=f"hash-{i}", daemon=True)
            for i in range(workers or default_workers())
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
        for _ in self.threads:
            self.jobs.send(STOP)
        for t in self.threads:
            t.join(timeout=2.0)
        self.jobs.close(linger=0)
        self.results.close(linger=0)

    def _work(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        except OSError:  # not Linux, or not allowed: hash at the loop's priority
            pass
        jobs, results = self.ctx.socket(zmq.PULL), self.ctx.socket(zmq.PUSH)
        try:
            jobs.connect(self._jobs_ep)
            results.connect(self._results_ep)
            while True:
                frames = jobs.recv_multipart()
                if frames == [STOP]:
                    return
                job, salt, password = frames
                results.send_multipart([job, self.hasher(password, salt)])
        except zmq.ContextTerminated:
            return
        except Exception:  # a worker that dies would leave logins waiting: say so loudly
            log.exception("password hashing worker failed")
        finally:
            jobs.close(linger=0)
            results.close(linger=0)
