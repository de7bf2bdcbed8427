"""The tracker under load: password hashes wait off the loop in a bounded queue, and a busy (or
another) tracker's peers are not dropped for heartbeats it has not read yet."""

from __future__ import annotations

import os
import time

import zmq
from stores import Backend
from tracker_pair import SIGNER, TrackerPair, key_of

from broker.service import Inbound
from messages import protocol as P
from messages.control import Reply
from messages.errors import Code
from tracker.core import TrackerCore
from tracker.deferred import HASH_DEADLINE, HashJob
from tracker.hashpool import NICE, HashPool
from tracker.passwords import scrypt

# --- leases ---------------------------------------------------------------------------------


def test_a_busy_tracker_drops_nobody_for_heartbeats_it_has_not_read(t: TrackerPair) -> None:
    t.user("bob")
    t.online("bob", 7002)
    t.clock.now += 10  # twice the expiry, all of it spent on other work (lag: queue never empty)
    t.core.tick(lag=10)
    assert t.core.presence.is_online(t.core.env.rules.session(t.tokens["bob"], key_of("bob")).token_hash)
    assert t.ok(P.OP_HEARTBEAT, as_user="bob")["online"]  # the heartbeat that was waiting
    t.clock.now += 10  # now really silent: the queue was empty all along
    t.core.tick(lag=0)
    assert not t.ok(P.OP_HEARTBEAT, as_user="bob")["online"]


def test_another_trackers_peers_are_its_to_expire_until_it_stops_working(t: TrackerPair) -> None:
    other = TrackerCore(t.store, SIGNER, expiry=5.0, clock=t.clock, wall=t.wall)
    t.user("bob")
    args = {"endpoint": "tcp://127.0.0.1:7002", "plain": False, "shares": []}
    req = t.request(P.OP_ANNOUNCE, args, token=t.tokens["bob"])
    assert Reply.decode(other.handle_batch([Inbound(b"r", req.encode(), key_of("bob"))])[0][1]).ok
    session = t.core.env.rules.session(t.tokens["bob"], key_of("bob")).token_hash
    t.clock.now += 8
    other.tick(lag=8)  # the other tracker is busy: bob's heartbeats wait in its queue
    t.core.tick()  # ours leaves bob alone: the other tracker is alive and working
    assert t.core.presence.is_online(session)
    t.clock.now += 15  # the other tracker has processed nothing for 15 s: gone
    t.core.tick()
    assert not t.core.presence.is_online(session)


# --- password hashes ------------------------------------------------------------------------


def code_of(frames: list[bytes]) -> str | None:
    err = Reply.decode(frames).error
    return None if err is None else err.code


def login_frames(t: TrackerPair, user: str, rid: int, cid: str = "c") -> list[bytes]:
    return t.request(P.OP_LOGIN, {"user": user, "password": f"pw-{user}"}, cid=cid, rid=rid).encode()


def test_hashes_wait_in_a_bounded_queue_and_the_overflow_is_told_busy(backend: Backend) -> None:
    t = TrackerPair(backend.open())
    try:
        t.core.hashes.limit = 3
        for name in ("u1", "u2", "u3", "u4"):
            t.user(name, login=False)
        msgs = [Inbound(f"r{i}".encode(), login_frames(t, f"u{i}", i), "k" * 40) for i in (1, 2, 3, 4)]
        out = t.core.handle_batch(msgs)
        assert [(ident, code_of(f)) for ident, f in out] == [(b"r4", Code.BUSY)]
        jobs = t.core.take_jobs()
        assert len(jobs) == 3 and t.core.take_jobs() == []
    finally:
        t.close()


def test_one_password_check_at_a_time_per_user(t: TrackerPair) -> None:
    """So throttling sees every guess before the next one is checked."""
    t.user("bob", login=False)
    out = t.core.handle_batch([Inbound(b"a", login_frames(t, "bob", 1, "c1"), "k" * 40)])
    assert out == [] and len(t.core.take_jobs()) == 1
    out = t.core.handle_batch([Inbound(b"b", login_frames(t, "bob", 1, "c2"), "k" * 40)])
    assert code_of(out[0][1]) == Code.BUSY


def test_a_retry_of_a_waiting_login_is_not_hashed_twice_and_gets_the_reply(t: TrackerPair) -> None:
    t.user("bob", login=False)
    assert t.core.handle_batch([Inbound(b"old", login_frames(t, "bob", 7), "k" * 40)]) == []
    (job,) = t.core.take_jobs()
    assert t.core.handle_batch([Inbound(b"new", login_frames(t, "bob", 7), "k" * 40)]) == []
    assert t.core.take_jobs() == []
    ((ident, frames),) = t.core.finish([(job.id, scrypt(job.password, job.salt))])
    assert ident == b"new" and Reply.decode(frames).result["token"]


def test_a_hash_that_never_comes_back_is_answered_with_an_error(t: TrackerPair) -> None:
    t.user("bob", login=False)
    t.core.handle_batch([Inbound(b"r", login_frames(t, "bob", 1), "k" * 40)])
    t.core.take_jobs()
    for w in t.core.hashes.waiting.values():
        w.since -= HASH_DEADLINE + 1
    replies = [(i, Reply.decode(f)) for i, f in t.core.tick()]
    assert [(i, r.error.code) for i, r in replies if r.error] == [(b"r", Code.INTERNAL)]
    out = t.core.handle_batch([Inbound(b"r2", login_frames(t, "bob", 2), "k" * 40)])
    assert out == []  # bob may try again: nothing is left waiting in his name


def test_the_pool_hashes_on_its_own_threads() -> None:
    ctx = zmq.Context()
    pool = HashPool(ctx, workers=2, hasher=lambda password, salt: salt + password, processes=False)
    try:
        pool.submit([HashJob(i, f"pw{i}".encode(), b"s") for i in range(1, 6)])
        done: dict[int, bytes] = {}
        deadline = time.monotonic() + 10
        while len(done) < 5 and time.monotonic() < deadline:
            if pool.results.poll(100):
                done.update(pool.drain())
        assert done == {i: f"spw{i}".encode() for i in range(1, 6)}
    finally:
        pool.close()
        ctx.term()


def test_hashing_runs_in_processes_at_the_lowest_cpu_priority_and_the_loop_does_not() -> None:
    """A burst of logins must take only the CPU the request loop leaves."""
    ctx = zmq.Context()
    pool = HashPool(ctx, workers=2)
    try:
        pool.submit([HashJob(1, b"pw", b"salt")])
        assert pool.results.poll(30_000)
        assert pool.drain() == [(1, scrypt(b"pw", b"salt"))]
        pids = pool.pids()
        assert len(pids) == 2 and os.getpid() not in pids
        assert all(os.getpriority(os.PRIO_PROCESS, pid) == NICE for pid in pids)
        assert all(os.sched_getscheduler(pid) == os.SCHED_IDLE for pid in pids)
        assert os.getpriority(os.PRIO_PROCESS, 0) < NICE
    finally:
        pool.close()
        ctx.term()
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
