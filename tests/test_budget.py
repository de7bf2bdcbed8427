"""The seeder's buffer pool and send budget, with plain callables standing in for trackers."""

from __future__ import annotations

from peer.budget import IDLE_TRIM, TAIL_TTL, SendBudget

K = 1024


class Sent:
    """What ZeroMQ would tell through a MessageTracker: done once the bytes left."""

    def __init__(self) -> None:
        self.done = False

    def __call__(self) -> bool:
        return self.done


def test_one_requester_is_capped_others_still_served() -> None:
    b = SendBudget(total=10 * K, per_requester=3 * K)
    held = []
    for _ in range(3):
        buf = b.take("mallory", K, now=0)
        assert buf is not None and len(buf) == K
        b.hold("mallory", buf, (s := Sent()))
        held.append(s)
    assert b.take("mallory", K, now=0) is None  # her share is used up
    assert b.take("alice", K, now=0) is not None  # others are not held back by her
    assert b.in_use == 3 * K


def test_the_whole_pool_is_capped_and_freed_buffers_are_reused() -> None:
    b = SendBudget(total=2 * K, per_requester=2 * K)
    first, second = b.take("a", K, 0), b.take("b", K, 0)
    assert first is not None and second is not None
    sent_a, sent_b = Sent(), Sent()
    b.hold("a", first, sent_a)
    b.hold("b", second, sent_b)
    assert b.take("c", K, 0) is None  # nothing left anywhere
    sent_a.done = True
    again = b.take("c", K, 0)
    assert again is first  # the same buffer, reused
    assert b.allocated == 2 * K


def test_a_new_size_evicts_free_buffers_of_other_sizes() -> None:
    b = SendBudget(total=4 * K, per_requester=4 * K)
    bufs = [b.take("a", K, 0) for _ in range(4)]
    for buf in bufs:
        assert buf is not None
        b.give_back(buf)  # reads that failed: free again
    big = b.take("a", 4 * K, 0)
    assert big is not None and len(big) == 4 * K
    assert b.allocated == 4 * K


def test_free_buffers_are_dropped_after_a_quiet_spell() -> None:
    b = SendBudget(total=8 * K, per_requester=8 * K)
    buf = b.take("a", 2 * K, now=100)
    assert buf is not None
    b.hold("a", buf, lambda: True)
    b.trim(now=100 + IDLE_TRIM / 2)
    assert b.allocated == 2 * K  # still warm: kept for the next piece
    b.trim(now=100 + IDLE_TRIM)
    assert b.allocated == 0


# --- pieces that leave encrypted: the copy ZeroMQ keeps is charged too -------------------------


def test_an_encrypted_piece_is_charged_twice_then_as_its_connections_tail() -> None:
    b = SendBudget(total=10 * K, per_requester=4 * K)
    buf = b.take("bob", K, now=0, conn=b"c1")
    assert buf is not None
    sent = Sent()
    b.hold("bob", buf, sent, conn=b"c1")
    assert b.in_use == 2 * K  # the buffer, and the encrypted copy to come
    sent.done = True  # ZeroMQ encrypted it: our buffer is free, its copy waits to be written
    b.reap(now=1)
    assert b.in_use == K and b.tails == K
    again = b.take("bob", K, now=2, conn=b"c1")
    assert again is buf  # the buffer itself is reused
    later = Sent()
    b.hold("bob", again, later, conn=b"c1")
    later.done = True  # the connection moved on: the first copy was written out
    b.reap(now=3)
    assert b.in_use == K and b.tails == K  # only the newest copy is still charged


def test_tails_count_against_the_requester_and_the_whole_pool() -> None:
    b = SendBudget(total=4 * K, per_requester=3 * K)
    for conn in (b"a", b"b"):  # two connections that never read: a copy stuck in each
        buf = b.take("mallory", K, now=0, conn=conn)
        assert buf is not None
        b.hold("mallory", buf, lambda: True, conn=conn)
    b.reap(now=1)
    assert b.tails == 2 * K and b.in_use == 2 * K
    assert b.take("mallory", K, now=1, conn=b"c") is None  # 2 stuck + 2 for this one: over 3
    alice = b.take("alice", K, now=1, conn=b"d")
    assert alice is not None  # room for one more piece and its copy: 2 stuck + 1 + 1 = 4
    b.hold("alice", alice, Sent(), conn=b"d")
    assert b.take("carol", K, now=1) is None  # the pool is full, copies included


def test_a_tail_is_let_go_after_its_ttl() -> None:
    b = SendBudget(total=4 * K, per_requester=4 * K)
    buf = b.take("a", K, now=0, conn=b"c")
    assert buf is not None
    b.hold("a", buf, lambda: True, conn=b"c")
    b.reap(now=1)
    assert b.tails == K
    b.reap(now=1 + TAIL_TTL)
    assert b.tails == 0 and b.in_use == 0
