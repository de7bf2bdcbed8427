"""HolderBook: what a download believes about holders, from full lists and pushed changes."""

from __future__ import annotations

from messages.bitfield import Bitfield
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
        "grant": GRANT.to_wire(),
    }


def book(own_key: str = "KEY-DL") -> HolderBook:
    return HolderBook(META, Picker(Bitfield(META.num_pieces)), set(), own_key)


def test_a_full_list_replaces_what_was_known() -> None:
    b = book()
    b.apply([holder("a"), holder("b")])
    gone = b.apply([holder("b")])
    assert gone == ["tcp://a:1"]
    assert set(b.holders) == {"tcp://b:1"} and set(b.picker.holders) == {"tcp://b:1"}


def test_pushed_news_adds_updates_and_removes_holders() -> None:
    b = book()
    b.apply([holder("a"), holder("b", have=[0])])
    gone = b.merge({"holders": [holder("b", have=[0, 1]), holder("c")], "left": ["KEY-A"]}, GRANT)
    assert gone == ["tcp://a:1"]
    assert set(b.holders) == {"tcp://b:1", "tcp://c:1"}
    assert b.picker.holders["tcp://b:1"].has(1)


def test_news_of_our_own_pieces_never_makes_us_a_source() -> None:
    """The tracker pushes every holder change to every download of the file, ours included."""
    b = book(own_key="KEY-DL")
    b.apply([holder("a")])
    b.merge({"holders": [holder("dl", have=[0])], "left": []}, GRANT)
    assert set(b.holders) == {"tcp://a:1"} and set(b.picker.holders) == {"tcp://a:1"}


def test_a_distrusted_holder_is_banned_on_sight() -> None:
    b = HolderBook(META, Picker(Bitfield(META.num_pieces)), {("KEY-A", "g", "f.bin")}, "KEY-DL")
    b.apply([holder("a"), holder("b")])
    assert b.picker.banned == {"tcp://a:1"}
