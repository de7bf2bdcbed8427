"""Upload slots: a seeder serves a few requesters at a time, and every requester gets its turn."""

from __future__ import annotations

from peer.slots import UploadSlots


def test_fewer_requesters_than_slots_are_never_refused() -> None:
    s = UploadSlots(slots=2, turn=1.0, idle=0.5)
    for step in range(100):
        now = step * 0.1
        assert s.admit("a", now) and s.admit("b", now)


def test_a_requester_past_the_slots_is_refused_until_a_slot_frees() -> None:
    s = UploadSlots(slots=2, turn=10.0, idle=0.5)
    assert s.admit("a", 0.0) and s.admit("b", 0.0)
    assert not s.admit("c", 0.1)
    s.admit("a", 0.4)  # a keeps asking, b goes quiet
    assert not s.admit("c", 0.45)
    assert s.admit("c", 0.7)  # b's slot is free: b was idle for more than 0.5 s
    assert s.serving() == ["a", "c"]


def test_while_others_wait_a_turn_ends_and_the_requester_queues_behind_them() -> None:
    s = UploadSlots(slots=1, turn=1.0, idle=0.5)
    assert s.admit("a", 0.0)
    now = 0.0
    while now < 0.95:  # a asks steadily; b is refused meanwhile
        now += 0.1
        assert s.admit("a", now)
        assert not s.admit("b", now)
    now = 1.05
    assert not s.admit("a", now)  # turn over: a queues behind b
    assert not s.admit("a", now + 0.01)
    assert s.admit("b", now + 0.02)
    assert not s.admit("a", now + 0.1)


def test_a_free_slot_goes_to_who_waited_longest() -> None:
    s = UploadSlots(slots=1, turn=10.0, idle=0.5)
    assert s.admit("a", 0.0)
    assert not s.admit("b", 0.1)
    assert not s.admit("c", 0.2)
    for now in (0.3, 0.4, 0.5, 0.6):  # a went quiet; b and c keep asking
        s.admit("c", now)
        s.admit("b", now + 0.01)
    assert not s.admit("c", 0.7)  # a's slot is free, but b waited longer
    assert s.admit("b", 0.71)


def test_every_requester_gets_served_in_turn() -> None:
    s = UploadSlots(slots=2, turn=1.0, idle=0.5)
    served: set[str] = set()
    who = [f"d{i}" for i in range(10)]
    for step in range(200):  # 20 s of everybody asking every 0.1 s
        now = step * 0.1
        served |= {w for w in who if s.admit(w, now)}
    assert served == set(who)


def test_without_contention_a_requester_keeps_its_slot_past_its_turn() -> None:
    s = UploadSlots(slots=1, turn=1.0, idle=0.5)
    assert all(s.admit("a", step * 0.1) for step in range(100))
