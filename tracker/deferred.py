"""Requests that wait for a password hash, computed off the tracker's loop.

A scrypt hash costs tens of milliseconds; done in the loop, one burst of logins holds back
every other reply, heartbeats included. So a login or create_user handler returns a
``Deferred``: the hash to compute (a ``HashJob``) and what to do with it. The core keeps the
request here while a worker pool hashes (see ``hashpool``), then runs the continuation in a
transaction of its own and replies.

The queue is bounded: past ``limit`` hashes waiting, or with one already waiting for the same
user (so throttling sees every guess before the next one), the request is refused BUSY at once
and the client tries again shortly; a burst of logins costs waiting time, never memory. A retry
of a request that is still waiting (same client id and request id) only moves where the reply
goes.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from broker.service import Inbound
from messages.control import Request
from messages.errors import Code, Refused

from .call import Deferred


@dataclass(frozen=True, slots=True)
class HashJob:
    id: int
    password: bytes
    salt: bytes


@dataclass(slots=True)
class Waiting:
    job: HashJob
    deferred: Deferred
    message: Inbound
    request: Request
    fingerprint: bytes  # for the reply cache ("" when the reply is not cached)
    since: float = field(default_factory=time.monotonic)


HASH_DEADLINE = 30.0  # seconds a request waits for its hash before it is answered with an error


class HashQueue:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.waiting: dict[int, Waiting] = {}
        self.new: list[HashJob] = []  # to hand to the pool after this batch
        self._ids = itertools.count(1)
        self._by_request: dict[tuple[str, int], int] = {}
        self._users: set[str] = set()

    def retry_of(self, m: Inbound, req: Request) -> bool:
        """A retry of a request still waiting: its reply now goes where this one came from."""
        job = self._by_request.get((req.cid, req.id)) if req.cid else None
        if job is None:
            return False
        self.waiting[job].message = m
        return True

    def add(self, d: Deferred, m: Inbound, req: Request, fingerprint: bytes) -> None:
        if d.user in self._users:
            raise Refused(Code.BUSY, f"a login for {d.user!r} is being checked; try again in a moment")
        if len(self.waiting) >= self.limit:
            raise Refused(Code.BUSY, "the tracker is checking many passwords; try again in a moment")
        job = HashJob(next(self._ids), d.password.encode(), d.salt)
        self.waiting[job.id] = Waiting(job, d, m, req, fingerprint)
        self._users.add(d.user)
        if req.cid:
            self._by_request[(req.cid, req.id)] = job.id
        self.new.append(job)

    def take_new(self) -> list[HashJob]:
        jobs, self.new = self.new, []
        return jobs

    def done(self, job_id: int) -> Waiting | None:
        w = self.waiting.pop(job_id, None)
        if w is not None:
            self._users.discard(w.deferred.user)
            self._by_request.pop((w.request.cid, w.request.id), None)
        return w

    def overdue(self, now: float | None = None) -> list[Waiting]:
        """Requests waiting longer than HASH_DEADLINE, taken out of the queue."""
        now = time.monotonic() if now is None else now
        late = [job for job, w in self.waiting.items() if now - w.since > HASH_DEADLINE]
        return [w for job in late if (w := self.done(job)) is not None]
