"""Listings, holder lists and announces at sizes real deployments reach: every reply fits the
socket that reads it, and paging or sampling still gives a user everything.

The state is written straight into the store (``launch.bulk``), as scripts/bench --scale does,
rather than through 20,000 password hashes; everything after that goes through the protocol.
"""

from __future__ import annotations

from typing import Any

import pytest
from tracker_pair import TrackerPair, key_of

from launch import bulk
from messages import protocol as P
from messages.bitfield import Bitfield
from messages.control import Push, Reply, decode_inbound
from messages.records import Holder
from messages.sizes import chunks
from tracker.rules import token_hash


@pytest.fixture(autouse=True)
def users(t: TrackerPair) -> None:
    t.user("alice")
    t.user("bob")


def in_store(t: TrackerPair, fill: Any, *args: Any) -> Any:
    t.store.begin()
    out = fill(t.store, *args)
    t.store.commit()
    return out


def call(t: TrackerPair, op: str, args: dict[str, Any], user: str) -> dict[str, Any]:
    """One request; its reply must fit what a peer's control socket accepts."""
    req = t.request(op, args, token=t.tokens[user])
    frames = t.batch(req.encode(), key=key_of(user), route=f"route-{user}".encode())[0]
    assert len(frames[1]) <= P.MAX_HEADER_BYTES, f"{op} reply of {len(frames[1])} bytes"
    reply = Reply.decode(frames)
    assert reply.error is None, reply.error
    return reply.result


def every_page(t: TrackerPair, op: str, args: dict[str, Any], user: str) -> tuple[list[Any], int]:
    items: list[Any] = []
    after, pages = "", 0
    while True:
        result = call(t, op, {**args, "after": after}, user)
        items += result["items"]
        pages += 1
        if result["next"] is None:
            return items, pages
        after = result["next"]


def test_a_group_of_20000_files_with_the_longest_names_lists_completely(t: TrackerPair) -> None:
    t.group("alice", "big")
    names = [f"{i:05d}" + ("x" * 250 if i % 2 else "") for i in range(20_000)]  # half of 255 bytes
    in_store(t, bulk.files, "big", names, "alice")
    items, pages = every_page(t, P.OP_LIST_FILES, {"group": "big"}, "alice")
    assert [f["name"] for f in items] == sorted(names)
    assert pages > 1 and all(f["sharers"] == 1 for f in items)


def test_20000_groups_list_completely_and_a_page_limit_is_kept(t: TrackerPair) -> None:
    names = [f"group-{i:05d}-" + "g" * 40 for i in range(20_000)]
    in_store(t, bulk.groups, names, "alice")
    items, _ = every_page(t, P.OP_LIST_GROUPS, {}, "bob")
    assert [g["name"] for g in items] == sorted(names)
    first = call(t, P.OP_LIST_GROUPS, {"limit": 7}, "alice")
    assert [g["name"] for g in first["items"]] == sorted(names)[:7] and first["next"] == sorted(names)[6]
    assert all(g["role"] == "admin" for g in first["items"])


def test_5000_join_requests_list_completely(t: TrackerPair) -> None:
    t.group("alice", "popular")
    names = [f"user{i:05d}" for i in range(5_000)]
    in_store(t, bulk.users, names)
    in_store(t, bulk.requests, "popular", names)
    items, _ = every_page(t, P.OP_LIST_REQUESTS, {"group": "popular"}, "alice")
    assert [r["user"] for r in items] == names


# --- holders --------------------------------------------------------------------------------

PIECES = P.MAX_PIECES  # partial holders of the largest file carry the largest bitfields


def holders_online(t: TrackerPair, count: int) -> dict[str, bytes]:
    """``count`` online holders of big/f.bin, one in four partial; holder key -> session."""
    t.group("alice", "big", "bob")
    in_store(t, bulk.files, "big", ["f.bin"], "alice", PIECES * P.MIN_PIECE_SIZE, P.MIN_PIECE_SIZE)
    names = [f"h{i:04d}" for i in range(count)]
    in_store(t, bulk.users, names)
    t.store.begin()
    for n in names:
        t.store.run("INSERT INTO members VALUES ('big', ?, 9)", n)
    tokens = bulk.sessions(t.store, names, "K" * 40)
    sessions = {}
    part = Bitfield(PIECES, bytes([0x55]) * (PIECES // 8)).to_bytes()  # every other piece
    for i, n in enumerate(names):
        key, th = f"{n}".ljust(40, "k"), token_hash(tokens[n])
        endpoint, tracker = f"tcp://10.0.{i // 250}.{i % 250}:7000", t.core.presence.tracker
        t.store.run(
            "INSERT INTO online VALUES (?,?,?,?,?,?,?,?)", th, n, key, endpoint, 0, tracker, b"r", t.clock.now
        )
        have = part if i % 4 == 0 else None
        t.store.run(
            "INSERT INTO serving (grp, name, session, have, complete) VALUES ('big','f.bin',?,?,?)",
            th, have, int(have is None),
        )  # fmt: skip
        sessions[key] = th
    t.store.commit()
    return sessions


def test_a_file_with_2000_holders_is_listed_in_bounded_samples_that_spread_the_load(t: TrackerPair) -> None:
    holders = holders_online(t, 2_000)
    seen: dict[str, int] = {}
    for _ in range(2_000 // P.HOLDER_SAMPLE * 2):
        result = call(t, P.OP_HOLDERS, {"group": "big", "file": "f.bin"}, "bob")
        assert result["total"] == 2_000
        sample = [Holder.from_wire(h) for h in result["holders"]]
        assert 1 <= len(sample) <= P.HOLDER_SAMPLE and len({h.key for h in sample}) == len(sample)
        for h in sample:
            seen[h.key] = seen.get(h.key, 0) + 1
    # Least handed-out first: after twice as many samples as it takes to list everyone once,
    # every complete holder was listed, none of them far more than the others.
    complete = [k for i, k in enumerate(holders) if i % 4]
    assert all(seen.get(k, 0) >= 1 for k in complete)
    assert max(seen[k] for k in complete) <= 4


def test_naming_known_holders_returns_others_and_says_who_left(t: TrackerPair) -> None:
    holders = holders_online(t, 300)
    first = call(t, P.OP_HOLDERS, {"group": "big", "file": "f.bin", "want": 20}, "bob")
    known = [h["key"] for h in first["holders"]]
    assert len(known) <= 20
    gone = known[0]
    t.store.begin()
    t.store.run("DELETE FROM serving WHERE session=?", holders[gone])
    t.store.commit()
    again = call(t, P.OP_HOLDERS, {"group": "big", "file": "f.bin", "known": known, "want": 20}, "bob")
    assert again["left"] == [gone]
    keys = [h["key"] for h in again["holders"]]
    assert set(known[1:]) <= set(keys)  # what the known ones hold now, then new ones
    assert gone not in keys and len(set(keys) - set(known)) >= 1


def test_the_largest_requests_fit_a_control_message(t: TrackerPair) -> None:
    holders_online(t, 10)
    full = Bitfield(PIECES, b"\xff" * (PIECES // 8)).encode()
    big_requests = [
        (P.OP_PROGRESS, {"group": "big", "file": "f.bin", "have": full}),
        (P.OP_HOLDERS, {"group": "big", "file": "f.bin", "known": ["k" * 40] * P.MAX_KNOWN}),
    ]
    for op, args in big_requests:
        frames = t.request(op, args, token=t.tokens["bob"]).encode()
        assert len(frames[1]) <= P.MAX_HEADER_BYTES, op
        call(t, op, args, "bob")


def test_20000_shares_are_announced_in_batches_that_each_fit(t: TrackerPair) -> None:
    t.group("alice", "big")
    names = [f"{i:05d}" + "y" * 250 for i in range(20_000)]
    in_store(t, bulk.files, "big", names, "alice")
    refs = [{"group": "big", "file": n} for n in names]
    batches = list(chunks(refs, P.PAGE_BYTES, P.MAX_SHARES))
    assert len(batches) > 1
    for i, batch in enumerate(batches):
        args: dict[str, Any] = {"endpoint": "tcp://127.0.0.1:7001", "plain": False, "shares": batch}
        frames = t.request(P.OP_ANNOUNCE, args | ({"more": True} if i else {}), token="x").encode()
        assert len(frames[1]) <= P.MAX_HEADER_BYTES
        assert call(t, P.OP_ANNOUNCE, args | ({"more": True} if i else {}), "alice")["refused"] == []
    row = t.store.one("SELECT count(*) FROM serving")
    assert row is not None and row[0] == 20_000


def test_a_further_announce_batch_needs_the_first(t: TrackerPair) -> None:
    args = {"endpoint": "tcp://127.0.0.1:7001", "plain": False, "shares": [], "more": True}
    assert t.refused("not_online", P.OP_ANNOUNCE, args, as_user="bob")


def test_a_burst_of_holder_changes_is_pushed_in_pieces_that_each_fit(t: TrackerPair) -> None:
    holders_online(t, 1_000)
    call(t, P.OP_HOLDERS, {"group": "big", "file": "f.bin"}, "bob")  # bob follows the file
    t.clock.now += 6  # every holder's lease ran out at once (TrackerPair's expiry: 5 s)
    left: list[str] = []
    for ident, frames in t.core.tick():
        assert len(frames[1]) <= P.MAX_HEADER_BYTES
        push = decode_inbound(frames)
        assert ident == b"route-bob" and isinstance(push, Push) and push.kind == P.PUSH_HOLDERS
        left += push.body["left"]
    assert len(left) == len(set(left)) == 1_000
