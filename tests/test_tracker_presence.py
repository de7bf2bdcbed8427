"""Presence rules against the real presence tables, on both stores.

SQLite keeps them in memory beside the state file, PostgreSQL in UNLOGGED tables.

Time is passed in, so expiry is tested with plain numbers rather than a patched clock.
"""

from __future__ import annotations

import pytest
from stores import Backend

from messages.bitfield import Bitfield
from tracker.presence import Online, Presence

KEY = ("films", "movie.mkv")
OTHER = ("films", "other.mkv")
MUSIC = ("music", "song.ogg")
T0 = 1000.0


def key_of(session: str) -> str:
    return (session * 40)[:40]


@pytest.fixture
def pr(backend: Backend) -> Presence:
    return Presence(backend.open(), expiry=5.0)


def users(pr: Presence, key: tuple[str, str]) -> list[str]:
    return [h.user for h in pr.holders(key)]


def test_announce_serve_holders_count(pr: Presence) -> None:
    pr.announce(Online(b"ta", "alice", key_of("ta"), "tcp://a:1", False), b"route-ta", T0)
    pr.announce(Online(b"tb", "bob", key_of("tb"), "tcp://b:1", False), b"route-tb", T0)
    part = Bitfield.from_indices(3, [1])
    pr.serve(b"ta", KEY, None)
    pr.serve(b"tb", KEY, part)
    pr.serve(b"tb", OTHER, None)
    pr.serve(b"nobody", KEY, None)  # unknown session: ignored
    assert (pr.count(KEY), pr.count(OTHER), pr.count(MUSIC)) == (2, 1, 0)
    holders = pr.holders(KEY)
    assert [(h.session, h.user, h.endpoint, h.key) for h in holders] == [
        (b"ta", "alice", "tcp://a:1", key_of("ta")),
        (b"tb", "bob", "tcp://b:1", key_of("tb")),
    ]
    assert holders[0].have is None
    assert holders[1].have == part.to_bytes()
    assert pr.holders(MUSIC) == []


def test_serving_again_updates_the_pieces(pr: Presence) -> None:
    pr.announce(Online(b"tb", "bob", key_of("tb"), "tcp://b:1", False), b"route-tb", T0)
    pr.serve(b"tb", KEY, Bitfield.from_indices(3, [1]))
    pr.serve(b"tb", KEY, Bitfield.from_indices(3, [1, 2]))
    assert pr.holders(KEY)[0].have == Bitfield.from_indices(3, [1, 2]).to_bytes()
    pr.serve(b"tb", KEY, None)
    assert pr.holders(KEY)[0].have is None
    assert pr.count(KEY) == 1


def test_reannounce_forgets_what_was_served(pr: Presence) -> None:
    pr.announce(Online(b"ta", "alice", key_of("ta"), "tcp://a:1", False), b"route-ta", T0)
    pr.serve(b"ta", KEY, None)
    pr.announce(Online(b"ta", "alice", key_of("ta"), "tcp://a:2", False), b"route-ta", T0)
    assert pr.count(KEY) == 0
    pr.serve(b"ta", KEY, None)
    assert pr.holders(KEY)[0].endpoint == "tcp://a:2"


def test_unserve_one_user_or_all(pr: Presence) -> None:
    pr.announce(Online(b"ta", "alice", key_of("ta"), "tcp://a:1", False), b"route-ta", T0)
    pr.announce(
        Online(b"ta2", "alice", key_of("ta2"), "tcp://a:9", False), b"route-ta2", T0
    )  # alice's second session
    pr.announce(Online(b"tb", "bob", key_of("tb"), "tcp://b:1", False), b"route-tb", T0)
    for th in (b"ta", b"ta2", b"tb"):
        pr.serve(th, KEY, None)
        pr.serve(th, OTHER, None)
    pr.unserve(KEY, "alice")
    assert users(pr, KEY) == ["bob"]
    assert pr.count(OTHER) == 3
    pr.unserve(OTHER)
    assert pr.count(OTHER) == 0
    assert pr.count(KEY) == 1
    pr.unserve(MUSIC)  # nobody serves it: no error
    pr.unserve(KEY, "carol")
    assert pr.count(KEY) == 1
    pr.unserve_session(b"tb", KEY)
    assert pr.count(KEY) == 0


def test_unserve_group(pr: Presence) -> None:
    pr.announce(Online(b"ta", "alice", key_of("ta"), "tcp://a:1", False), b"route-ta", T0)
    pr.announce(Online(b"tb", "bob", key_of("tb"), "tcp://b:1", False), b"route-tb", T0)
    for th in (b"ta", b"tb"):
        for key in (KEY, OTHER, MUSIC):
            pr.serve(th, key, None)
    pr.unserve_group("films", "alice")
    assert users(pr, KEY) == ["bob"]
    assert users(pr, OTHER) == ["bob"]
    assert users(pr, MUSIC) == ["alice", "bob"]


def test_expire_after_expiry_unseen(pr: Presence) -> None:
    pr.announce(Online(b"ta", "alice", key_of("ta"), "tcp://a:1", False), b"route-ta", T0)
    pr.announce(Online(b"tb", "bob", key_of("tb"), "tcp://b:1", False), b"route-tb", T0)
    pr.serve(b"ta", KEY, None)
    pr.serve(b"tb", KEY, None)
    assert pr.touch(b"tb", b"route-tb", T0 + 3.0) is True
    assert pr.touch(b"nobody", b"route-x", T0 + 3.0) is False
    assert pr.expire(T0 + 5.0) == 0  # exactly `expiry` unseen is still online
    assert pr.count(KEY) == 2
    assert pr.expire(T0 + 5.5) == 1
    assert users(pr, KEY) == ["bob"]
    assert not pr.is_online(b"ta")
    assert pr.expire(T0 + 8.0) == 0  # bob was seen 3 s later, so he lasts 3 s longer
    assert pr.expire(T0 + 8.5) == 1
    assert pr.count(KEY) == 0


def test_a_crowd_that_goes_silent_at_once_is_dropped_a_bounded_number_per_pass(pr: Presence) -> None:
    for i in range(7):
        session = f"t{i}".encode()
        pr.announce(Online(session, f"u{i}", key_of(f"t{i}"), f"tcp://h{i}:1", False), b"r", T0)
        pr.serve(session, KEY, None)
    pr.changes.clear()
    assert [pr.expire(T0 + 6.0, limit=3) for _ in range(4)] == [3, 3, 1, 0]
    assert pr.count(KEY) == 0
    assert sorted(c.left for c in pr.changes) == sorted(key_of(f"t{i}") for i in range(7))


def test_drop_is_idempotent(pr: Presence) -> None:
    pr.announce(Online(b"ta", "alice", key_of("ta"), "tcp://a:1", False), b"route-ta", T0)
    pr.serve(b"ta", KEY, None)
    pr.drop(b"ta")
    pr.drop(b"ta")
    assert pr.count(KEY) == 0
    assert not pr.is_online(b"ta")


def test_targets_for_pushes(pr: Presence) -> None:
    pr.tracker = "t1"
    pr.announce(Online(b"ta", "alice", key_of("ta"), "tcp://a:1", False), b"route-ta", T0)
    pr.tracker = "t2"  # bob talks to another tracker of the cluster
    pr.announce(Online(b"tb", "bob", key_of("tb"), "tcp://b:1", True), b"route-tb", T0)
    pr.serve(b"ta", KEY, None)
    pr.serve(b"tb", OTHER, None)
    pr.serve(b"tb", MUSIC, None)
    assert sorted(pr.targets({"group": "films"})) == [("t1", b"route-ta"), ("t2", b"route-tb")]
    assert pr.targets({"group": "films", "file": "other.mkv"}) == [("t2", b"route-tb")]
    assert pr.targets({"key": key_of("tb")}) == [("t2", b"route-tb")]
    pr.tracker = "t1"
    pr.touch(b"tb", b"route-tb2", T0 + 1)  # failover: bob's heartbeats now come to t1
    assert pr.targets({"key": key_of("tb")}) == [("t1", b"route-tb2")]
    pr.subscribe(KEY, b"route-dl", T0)
    assert pr.targets({"subscribed": "films", "file": "movie.mkv"}) == [("t1", b"route-dl")]
    assert pr.holders(OTHER)[0].plain is True


def test_changes_are_noted_for_subscribers(pr: Presence) -> None:
    pr.announce(Online(b"ta", "alice", key_of("ta"), "tcp://a:1", False), b"route-ta", T0)
    pr.serve(b"ta", KEY, Bitfield.from_indices(3, [0]))
    (change,) = pr.changes
    assert change.file == KEY and change.row is not None and change.row.user == "alice"
    pr.changes.clear()
    pr.drop(b"ta")
    assert [(c.file, c.left) for c in pr.changes] == [(KEY, key_of("ta"))]


def test_suspect_holders_are_not_listed_until_cleared(pr: Presence) -> None:
    pr.announce(Online(b"ta", "alice", key_of("ta"), "tcp://a:1", False), b"route-ta", T0)
    pr.serve(b"ta", KEY, None)
    assert pr.report(KEY, key_of("ta"), "bob", 3, T0) == 1
    assert pr.report(KEY, key_of("ta"), "carol", 5, T0) == 2
    assert pr.reported_pieces(KEY, key_of("ta")) == [3, 5]
    pr.suspect(KEY, key_of("ta"), True)
    assert pr.holders(KEY) == [] and pr.count(KEY) == 0
    pr.suspect(KEY, key_of("ta"), False)
    assert users(pr, KEY) == ["alice"]
    assert pr.reported_pieces(KEY, key_of("ta")) == []  # the slate is clean again
