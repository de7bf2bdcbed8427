"""HolderBook: what a download believes about holders, from full lists and pushed changes."""

from __future__ import annotations

from messages.bitfield import Bitfield
from messages.protocol import MAX_KNOWN
from messages.records import FileMeta, Grant
from peer.holderbook import HolderBook
from peer.picker import Picker

META = FileMeta("g", "f.bin", 4 * 1024, 1024, "00" * 32)
GRANT = Grant("dl", "KEY-DL", "g", "f.bin", 1.0, 61.0, "sig")


def holder(name: str, have: list[int] | None = None) -> dict[str, object]:
    bits = None
    if have is not None:
        b = Bitfield(META.num_pieces)
        for i in have:
            b.add(i)
        bits = b.encode()
    return {
        "user": name,
        "endpoint": f"tcp://{name}:1",
        "key": f"KEY-{name.upper()}",
        "plain": False,
        "have": bits,
    }


def listing(*holders: dict[str, object], left: list[str] | None = None) -> dict[str, object]:
    return {"grant": GRANT.to_wire(), "holders": list(holders), "left": left or [], "total": 9}


def book(own_key: str = "KEY-DL") -> HolderBook:
    return HolderBook(META, Picker(Bitfield(META.num_pieces)), set(), own_key)


def test_a_sample_adds_to_what_was_known_and_names_who_left() -> None:
    """Lists are bounded samples: a holder missing from one is not gone, only one named in
    ``left`` (the tracker checks the keys we say we know)."""
    b = book()
    b.apply(listing(holder("a"), holder("b")))
    assert sorted(b.known()) == ["KEY-A", "KEY-B"] and b.grant == GRANT
    gone = b.apply(listing(holder("c"), left=["KEY-A"]))
    assert gone == ["tcp://a:1"]
    assert set(b.holders) == {"tcp://b:1", "tcp://c:1"} == set(b.picker.holders)


def test_a_list_without_a_valid_grant_changes_nothing() -> None:
    b = book()
    assert b.apply({"holders": [holder("a")], "left": []}) == []
    assert b.holders == {} and b.grant is None


def test_the_book_is_bounded_and_says_how_many_more_it_takes() -> None:
    b = book()
    b.apply(listing(*(holder(f"h{i}") for i in range(MAX_KNOWN + 5))))
    assert len(b.holders) == MAX_KNOWN and b.room == 0 and len(b.known()) == MAX_KNOWN
    b.merge({"holders": [holder("late")], "left": ["KEY-H0"]})
    assert "tcp://late:1" not in b.holders and b.room == 1  # the bound holds for pushes too
    b.merge({"holders": [holder("h1", have=[2])], "left": []})  # known holders still update
    assert not b.picker.holders["tcp://h1:1"].has(0)


def test_pushed_news_adds_updates_and_removes_holders() -> None:
    b = book()
    b.apply(listing(holder("a"), holder("b", have=[0])))
    gone = b.merge({"holders": [holder("b", have=[0, 1]), holder("c")], "left": ["KEY-A"]})
    assert gone == ["tcp://a:1"]
    assert set(b.holders) == {"tcp://b:1", "tcp://c:1"}
    assert b.picker.holders["tcp://b:1"].has(1)


def test_news_of_our_own_pieces_never_makes_us_a_source() -> None:
    """The tracker pushes every holder change to every download of the file, ours included."""
    b = book(own_key="KEY-DL")
    b.apply(listing(holder("a")))
    b.merge({"holders": [holder("dl", have=[0])], "left": []})
    assert set(b.holders) == {"tcp://a:1"} and set(b.picker.holders) == {"tcp://a:1"}


def test_a_distrusted_holder_is_banned_on_sight() -> None:
    b = HolderBook(META, Picker(Bitfield(META.num_pieces)), {("KEY-A", "g", "f.bin")}, "KEY-DL")
    b.apply(listing(holder("a"), holder("b")))
    assert b.picker.banned == {"tcp://a:1"}


def test_a_holder_that_restarted_on_another_port_is_asked_only_at_the_new_one() -> None:
    """Its key stays, its port changes; a push may carry the new endpoint without the old
    session's leave. The dead endpoint must not stay in the book taking pieces that time out."""
    b = book()
    b.apply(listing(holder("alice"), holder("bob")))
    moved = dict(holder("alice"), endpoint="tcp://alice:2")
    gone = b.merge({"holders": [moved], "left": []})
    assert gone == ["tcp://alice:1"]
    assert set(b.holders) == {"tcp://alice:2", "tcp://bob:1"} == set(b.picker.holders)
    assert sorted(b.known()) == ["KEY-ALICE", "KEY-BOB"]


def test_one_key_listed_at_two_endpoints_in_one_message_keeps_both() -> None:
    """Two sessions of one key (two peers started from one home) listed together: whichever
    comes last must not drop the other, or the two would swap on every push."""
    b = book()
    second = dict(holder("alice"), endpoint="tcp://alice:2")
    for order in ([holder("alice"), second], [second, holder("alice")]):
        gone = b.merge({"holders": order, "left": []})
        assert gone == []
        assert {"tcp://alice:1", "tcp://alice:2"} <= set(b.holders) == set(b.picker.holders)
