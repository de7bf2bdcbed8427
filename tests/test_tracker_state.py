"""Unit tests for the tracker's durable rules (tracker.state over a real SQLite file) and for
its in-memory presence table (tracker.online)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from messages.bitfield import Bitfield
from messages.errors import Code, RemoteError
from messages.protocol import DIGEST_SIZE, MAX_PIECES
from messages.records import FileMeta
from tracker import online
from tracker.db import connect
from tracker.state import State

PIECE = 16 * 1024


_SEEDS: dict[str, bytes] = {}  # root -> the seed its digests were made from


def _digests_for(size: int, seed: bytes) -> bytes:
    count = (size + PIECE - 1) // PIECE
    return b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(count))


def meta(
    name: str = "movie.mkv", group: str = "films", size: int = 3 * PIECE - 5, sha: str = "a"
) -> FileMeta:
    """A file whose content is named by ``sha``; its root really is the hash of its digests."""
    if size // PIECE > 10_000:  # too big to make digests for; only used where they are refused
        return FileMeta(group=group, name=name, size=size, piece_size=PIECE, root="0" * 64)
    seed = sha.encode()
    root = hashlib.sha256(_digests_for(size, seed)).hexdigest()
    _SEEDS[root] = seed
    return FileMeta(group=group, name=name, size=size, piece_size=PIECE, root=root)


def digests(m: FileMeta, salt: bytes = b"") -> bytes:
    """The digests of ``m`` (with a salt: digests that do not match its root)."""
    return _digests_for(m.size, _SEEDS.get(m.root, b"") + salt)


def expect(code: Code, fn, *args):  # type: ignore[no-untyped-def]
    with pytest.raises(RemoteError) as info:
        fn(*args)
    assert info.value.code is code, f"got {info.value.code!r}: {info.value.message}"
    return info.value


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "t.db")


@pytest.fixture
def state(db_path: str) -> Iterator[State]:
    conn = connect(db_path)
    try:
        yield State(conn)
    finally:
        conn.close()


@pytest.fixture
def films(state: State) -> State:
    """Group 'films': admin alice, members bob then carol (in that order of acceptance)."""
    state.create_group("alice", "films")
    for user in ("bob", "carol"):
        state.join_group(user, "films")
        state.accept_request("alice", "films", user)
    return state


# --- accounts -------------------------------------------------------------------------------


def test_create_user_login_and_session(state: State) -> None:
    state.create_user("alice", "pw-alice")
    expect(Code.USER_EXISTS, state.create_user, "alice", "other")
    token = state.login("alice", "pw-alice")
    th, user = state.session_user(token)
    assert user == "alice"
    assert th == hashlib.sha256(token.encode()).digest()
    # Two logins are two sessions.
    token2 = state.login("alice", "pw-alice")
    assert token2 != token
    assert state.session_user(token2)[1] == "alice"
    expect(Code.WRONG_PASSWORD, state.login, "alice", "pw-alicE")
    expect(Code.NO_SUCH_USER, state.login, "nobody", "pw")


def test_session_user_rejects_bad_tokens(state: State) -> None:
    state.create_user("alice", "pw")
    token = state.login("alice", "pw")
    for bad in (None, "", "not-a-token", token + "x", token[:-1]):
        expect(Code.UNAUTHORIZED, state.session_user, bad)


def test_logout_ends_the_session_also_in_the_database(db_path: str, state: State) -> None:
    state.create_user("alice", "pw")
    token = state.login("alice", "pw")
    other = state.login("alice", "pw")
    th, _ = state.session_user(token)
    state.logout(th)
    expect(Code.UNAUTHORIZED, state.session_user, token)
    fresh = State(state.db)  # no cache: must read the table
    expect(Code.UNAUTHORIZED, fresh.session_user, token)
    assert fresh.session_user(other)[1] == "alice"


def test_passwords_are_not_stored_in_clear(state: State) -> None:
    password = "correct horse battery staple"
    state.create_user("alice", password)
    state.create_user("bob", password)
    rows = state.db.execute("SELECT name, salt, hash FROM users ORDER BY name").fetchall()
    assert len(rows) == 2
    for _, salt, digest in rows:
        assert password.encode() not in bytes(digest)
        assert password.encode() not in bytes(salt)
        assert len(bytes(digest)) >= 32
    # Salted: the same password gives different hashes.
    assert rows[0][2] != rows[1][2]
    # Tokens are not stored in clear either.
    token = state.login("alice", password)
    stored = [bytes(r[0]) for r in state.db.execute("SELECT token_hash FROM sessions")]
    assert token.encode() not in stored
    assert all(token.encode() not in s for s in stored)


# --- groups ---------------------------------------------------------------------------------


def test_create_group_makes_creator_admin(state: State) -> None:
    state.create_group("alice", "films")
    expect(Code.GROUP_EXISTS, state.create_group, "bob", "films")
    groups = {g.name: g for g in state.list_groups("alice")}
    assert groups["films"].admin == "alice"
    assert groups["films"].role == "admin"
    assert groups["films"].members == 1
    assert state.is_member("films", "alice")
    state.require_admin("films", "alice")
    assert {g.name: g.role for g in state.list_groups("bob")} == {"films": ""}


def test_join_requests(state: State) -> None:
    state.create_group("alice", "films")
    expect(Code.NO_SUCH_GROUP, state.join_group, "bob", "music")
    state.join_group("bob", "films")
    assert not state.is_member("films", "bob")
    assert {g.name: g.role for g in state.list_groups("bob")} == {"films": "pending"}
    expect(Code.ALREADY_REQUESTED, state.join_group, "bob", "films")
    expect(Code.ALREADY_MEMBER, state.join_group, "alice", "films")
    state.join_group("carol", "films")
    assert state.list_requests("alice", "films") == ["bob", "carol"]
    expect(Code.NOT_ADMIN, state.list_requests, "bob", "films")
    expect(Code.NOT_ADMIN, state.accept_request, "bob", "films", "carol")
    expect(Code.NOT_ADMIN, state.reject_request, "carol", "films", "bob")
    expect(Code.NO_SUCH_REQUEST, state.accept_request, "alice", "films", "dave")
    state.accept_request("alice", "films", "bob")
    assert state.is_member("films", "bob")
    assert {g.name: g.role for g in state.list_groups("bob")} == {"films": "member"}
    expect(Code.ALREADY_MEMBER, state.join_group, "bob", "films")
    expect(Code.NO_SUCH_REQUEST, state.accept_request, "alice", "films", "bob")  # already used
    state.reject_request("alice", "films", "carol")
    assert not state.is_member("films", "carol")
    assert state.list_requests("alice", "films") == []
    expect(Code.NO_SUCH_REQUEST, state.reject_request, "alice", "films", "carol")
    state.join_group("carol", "films")  # may ask again after a rejection
    assert state.list_requests("alice", "films") == ["carol"]


def test_list_requests_of_missing_group(state: State) -> None:
    expect(Code.NO_SUCH_GROUP, state.list_requests, "alice", "nope")
    expect(Code.NO_SUCH_GROUP, state.accept_request, "alice", "nope", "bob")


@pytest.mark.parametrize(("first", "second"), [("bob", "carol"), ("carol", "bob")])
def test_admin_leaving_hands_over_to_longest_standing_member(state: State, first: str, second: str) -> None:
    state.create_group("alice", "films")
    # Requests arrive in the opposite order of acceptance: acceptance is what counts.
    state.join_group(second, "films")
    state.join_group(first, "films")
    state.accept_request("alice", "films", first)
    state.accept_request("alice", "films", second)
    result = state.leave_group("alice", "films")
    assert result.group_deleted is False
    assert result.new_admin == first
    state.require_admin("films", first)
    expect(Code.NOT_ADMIN, state.require_admin, "films", second)
    assert not state.is_member("films", "alice")
    groups = {g.name: g for g in state.list_groups(first)}
    assert groups["films"].admin == first
    assert groups["films"].members == 2
    # And again: the next admin leaving hands over to the remaining member.
    assert state.leave_group(first, "films").new_admin == second


def test_seniority_survives_members_leaving_and_rejoining(films: State) -> None:
    # bob leaves and comes back: now carol has been a member longer than bob.
    films.leave_group("bob", "films")
    films.join_group("bob", "films")
    films.accept_request("alice", "films", "bob")
    films.join_group("dave", "films")
    films.accept_request("alice", "films", "dave")
    assert films.leave_group("alice", "films").new_admin == "carol"
    assert films.leave_group("carol", "films").new_admin == "bob"


def test_non_admin_leaving_keeps_the_admin(films: State) -> None:
    result = films.leave_group("bob", "films")
    assert result.new_admin is None
    assert result.group_deleted is False
    films.require_admin("films", "alice")
    assert not films.is_member("films", "bob")
    expect(Code.NOT_MEMBER, films.leave_group, "bob", "films")


def test_leaving_withdraws_a_pending_request(films: State) -> None:
    films.join_group("dave", "films")
    result = films.leave_group("dave", "films")
    assert result.group_deleted is False
    assert films.list_requests("alice", "films") == []
    expect(Code.NOT_MEMBER, films.leave_group, "dave", "films")


def test_last_member_leaving_deletes_the_group(state: State) -> None:
    state.create_group("alice", "films")
    state.join_group("bob", "films")  # pending, not a member: does not keep the group alive
    m = meta()
    assert state.share_file("alice", m, digests(m)) is True
    result = state.leave_group("alice", "films")
    assert result.group_deleted is True
    assert result.new_admin is None
    assert result.files_removed == ["movie.mkv"]
    expect(Code.NO_SUCH_GROUP, state.join_group, "bob", "films")
    expect(Code.NO_SUCH_GROUP, state.leave_group, "alice", "films")
    expect(Code.NO_SUCH_GROUP, state.require_member, "films", "alice")
    assert state.list_groups("alice") == []
    assert state.db.execute("SELECT count(*) FROM requests").fetchone()[0] == 0
    assert state.db.execute("SELECT count(*) FROM files").fetchone()[0] == 0
    # The name is free again.
    state.create_group("bob", "films")
    state.require_admin("films", "bob")
    assert state.files("films") == []


def test_leaving_removes_the_members_shares(films: State) -> None:
    solo, both = meta("solo.mkv"), meta("both.mkv", sha="b")
    films.share_file("bob", solo, digests(solo))
    films.share_file("bob", both, digests(both))
    films.share_file("carol", both, digests(both))
    assert [(n, s) for n, _, s in films.files("films")] == [("both.mkv", 2), ("solo.mkv", 1)]
    result = films.leave_group("bob", "films")
    assert result.files_removed == ["solo.mkv"]
    assert films.files("films") == [("both.mkv", both.size, 1)]
    assert films.file("films", "solo.mkv") is None
    assert films.shares_of("bob") == set()
    assert films.shares_of("carol") == {("films", "both.mkv")}


# --- files ----------------------------------------------------------------------------------


def test_share_file_and_read_back(films: State) -> None:
    m = meta()
    assert m.num_pieces == 3
    h = digests(m)
    assert films.share_file("bob", m, h) is True
    stored = films.file("films", "movie.mkv")
    assert stored is not None
    assert stored.meta == m
    assert stored.hashes == h
    assert films.require_file("carol", "films", "movie.mkv") == stored
    assert films.files("films") == [("movie.mkv", m.size, 1)]
    expect(Code.NO_SUCH_FILE, films.require_file, "carol", "films", "other.mkv")
    expect(Code.NOT_MEMBER, films.require_file, "mallory", "films", "movie.mkv")


def test_share_same_content_adds_a_sharer(films: State) -> None:
    m = meta()
    assert films.share_file("bob", m, digests(m)) is True
    assert films.share_file("carol", m, digests(m)) is False
    assert films.files("films") == [("movie.mkv", m.size, 2)]
    # Sharing again is idempotent.
    assert films.share_file("carol", m, digests(m)) is False
    assert films.files("films") == [("movie.mkv", m.size, 2)]


@pytest.mark.parametrize("other", [{"sha": "b"}, {"size": 3 * PIECE - 6}])
def test_share_same_name_other_content_is_file_conflict(films: State, other: dict) -> None:
    m = meta()
    films.share_file("bob", m, digests(m))
    m2 = meta(**other)
    expect(Code.FILE_CONFLICT, films.share_file, "carol", m2, digests(m2))
    assert films.files("films") == [("movie.mkv", m.size, 1)]
    stored = films.file("films", "movie.mkv")
    assert stored is not None
    assert stored.meta == m


def test_same_name_in_another_group_is_no_conflict(films: State) -> None:
    films.create_group("bob", "music")
    m = meta()
    films.share_file("bob", m, digests(m))
    m2 = meta(group="music", sha="c")
    assert films.share_file("bob", m2, digests(m2)) is True
    assert films.shares_of("bob") == {("films", "movie.mkv"), ("music", "movie.mkv")}


def test_share_file_refusals(films: State) -> None:
    m = meta()
    expect(Code.NOT_MEMBER, films.share_file, "mallory", m, digests(m))
    films.join_group("dave", "films")  # a pending request is not membership
    expect(Code.NOT_MEMBER, films.share_file, "dave", m, digests(m))
    expect(Code.NO_SUCH_GROUP, films.share_file, "bob", meta(group="nope"), digests(m))
    expect(Code.BAD_ARGS, films.share_file, "bob", m, digests(m)[:-1])
    expect(Code.BAD_ARGS, films.share_file, "bob", m, digests(m) + b"\x00" * DIGEST_SIZE)
    expect(Code.BAD_ARGS, films.share_file, "bob", m, b"")
    huge = meta("huge.bin", size=(MAX_PIECES + 1) * PIECE)
    expect(Code.BAD_ARGS, films.share_file, "bob", huge, b"")
    assert films.files("films") == []


def test_empty_file_has_no_digests(films: State) -> None:
    m = meta("empty.txt", size=0)
    assert films.share_file("bob", m, b"") is True
    assert films.files("films") == [("empty.txt", 0, 1)]


def test_stop_share(films: State) -> None:
    m = meta()
    films.share_file("bob", m, digests(m))
    films.share_file("carol", m, digests(m))
    expect(Code.NOT_SHARING, films.stop_share, "alice", "films", "movie.mkv")
    expect(Code.NOT_SHARING, films.stop_share, "bob", "films", "other.mkv")
    expect(Code.NOT_MEMBER, films.stop_share, "mallory", "films", "movie.mkv")
    assert films.stop_share("bob", "films", "movie.mkv") is False
    assert films.files("films") == [("movie.mkv", m.size, 1)]
    expect(Code.NOT_SHARING, films.stop_share, "bob", "films", "movie.mkv")
    assert films.stop_share("carol", "films", "movie.mkv") is True
    assert films.files("films") == []
    assert films.file("films", "movie.mkv") is None
    # Once gone, the name may be shared with new content.
    m2 = meta(sha="d")
    assert films.share_file("alice", m2, digests(m2)) is True


def test_digests_that_do_not_match_the_root_are_refused(films: State) -> None:
    m = meta()
    expect(Code.BAD_ARGS, films.share_file, "bob", m, digests(m, b"tampered"))
    assert films.files("films") == []


# --- durability -----------------------------------------------------------------------------


def test_state_survives_reopening_the_file(db_path: str) -> None:
    conn = connect(db_path)
    st = State(conn)
    st.create_user("alice", "pw")
    token = st.login("alice", "pw")
    st.create_group("alice", "films")
    st.join_group("bob", "films")
    st.accept_request("alice", "films", "bob")
    st.join_group("carol", "films")
    m = meta()
    st.share_file("bob", m, digests(m))
    conn.close()

    conn2 = connect(db_path)
    try:
        st2 = State(conn2)
        assert st2.session_user(token)[1] == "alice"
        expect(Code.USER_EXISTS, st2.create_user, "alice", "x")
        expect(Code.WRONG_PASSWORD, st2.login, "alice", "x")
        st2.require_admin("films", "alice")
        assert st2.is_member("films", "bob")
        assert st2.list_requests("alice", "films") == ["carol"]
        stored = st2.file("films", "movie.mkv")
        assert stored is not None
        assert stored.meta == m
        assert stored.hashes == digests(m)
        assert st2.shares_of("bob") == {("films", "movie.mkv")}
        # Seniority survives too.
        assert st2.leave_group("alice", "films").new_admin == "bob"
    finally:
        conn2.close()


# --- presence (in memory) -------------------------------------------------------------------

KEY = ("films", "movie.mkv")
OTHER = ("films", "other.mkv")
MUSIC = ("music", "song.ogg")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(online, "time", SimpleNamespace(monotonic=c))
    return c


def test_presence_announce_serve_holders_count(clock: Clock) -> None:
    pr = online.Presence(expiry=5.0)
    pa = pr.announce(b"ta", "alice", "tcp://a:1", b"ka")
    assert pa.last_seen == clock.now
    pr.announce(b"tb", "bob", "tcp://b:1", b"kb")
    part = Bitfield.from_indices(3, [1])
    pr.serve(b"ta", KEY, None)
    pr.serve(b"tb", KEY, part)
    pr.serve(b"tb", OTHER, None)
    pr.serve(b"nobody", KEY, None)  # unknown session: ignored
    assert pr.count(KEY) == 2
    assert pr.count(OTHER) == 1
    assert pr.count(MUSIC) == 0
    holders = pr.holders(KEY)
    assert [(th, p.user, p.endpoint) for th, p in holders] == [
        (b"ta", "alice", "tcp://a:1"),
        (b"tb", "bob", "tcp://b:1"),
    ]
    assert holders[1][1].serving[KEY] == part
    assert holders[0][1].serving[KEY] is None
    assert pr.holders(MUSIC) == []


def test_presence_reannounce_forgets_what_was_served(clock: Clock) -> None:
    pr = online.Presence(expiry=5.0)
    pr.announce(b"ta", "alice", "tcp://a:1", b"ka")
    pr.serve(b"ta", KEY, None)
    pr.announce(b"ta", "alice", "tcp://a:2", b"k2")
    assert pr.count(KEY) == 0
    assert pr.peers[b"ta"].endpoint == "tcp://a:2"


def test_presence_unserve_one_user_or_all(clock: Clock) -> None:
    pr = online.Presence(expiry=5.0)
    pr.announce(b"ta", "alice", "tcp://a:1", b"ka")
    pr.announce(b"ta2", "alice", "tcp://a:9", b"ka2")  # alice's second session
    pr.announce(b"tb", "bob", "tcp://b:1", b"kb")
    for th in (b"ta", b"ta2", b"tb"):
        pr.serve(th, KEY, None)
        pr.serve(th, OTHER, None)
    pr.unserve(KEY, "alice")
    assert [p.user for _, p in pr.holders(KEY)] == ["bob"]
    assert KEY not in pr.peers[b"ta"].serving
    assert pr.count(OTHER) == 3
    pr.unserve(OTHER)
    assert pr.count(OTHER) == 0
    assert pr.holders(OTHER) == []
    assert all(OTHER not in p.serving for p in pr.peers.values())
    assert pr.count(KEY) == 1
    pr.unserve(MUSIC)  # nobody serves it: no error
    pr.unserve(KEY, "carol")
    assert pr.count(KEY) == 1


def test_presence_unserve_group(clock: Clock) -> None:
    pr = online.Presence(expiry=5.0)
    pr.announce(b"ta", "alice", "tcp://a:1", b"ka")
    pr.announce(b"tb", "bob", "tcp://b:1", b"kb")
    for th in (b"ta", b"tb"):
        pr.serve(th, KEY, None)
        pr.serve(th, OTHER, None)
        pr.serve(th, MUSIC, None)
    pr.unserve_group("films", "alice")
    assert set(pr.peers[b"ta"].serving) == {MUSIC}
    assert set(pr.peers[b"tb"].serving) == {KEY, OTHER, MUSIC}
    assert [p.user for _, p in pr.holders(KEY)] == ["bob"]
    assert [p.user for _, p in pr.holders(OTHER)] == ["bob"]
    assert pr.count(MUSIC) == 2


def test_presence_expire(clock: Clock) -> None:
    pr = online.Presence(expiry=5.0)
    pr.announce(b"ta", "alice", "tcp://a:1", b"ka")
    pr.announce(b"tb", "bob", "tcp://b:1", b"kb")
    pr.serve(b"ta", KEY, None)
    pr.serve(b"tb", KEY, None)
    clock.now += 3.0
    assert pr.touch(b"tb") is True
    assert pr.touch(b"nobody") is False
    start = 1000.0
    # Exactly `expiry` unseen is still online.
    assert pr.expire(start + 5.0) == []
    assert pr.count(KEY) == 2
    assert pr.expire(start + 5.5) == ["alice"]
    assert set(pr.peers) == {b"tb"}
    assert [p.user for _, p in pr.holders(KEY)] == ["bob"]
    # bob was seen 3 s later, so he lasts 3 s longer.
    assert pr.expire(start + 8.0) == []
    assert pr.expire(start + 8.5) == ["bob"]
    assert pr.peers == {}
    assert pr.count(KEY) == 0


def test_presence_expire_defaults_to_the_clock(clock: Clock) -> None:
    pr = online.Presence(expiry=5.0)
    pr.announce(b"ta", "alice", "tcp://a:1", b"ka")
    clock.now += 4.0
    assert pr.expire() == []
    clock.now += 2.0
    assert pr.expire() == ["alice"]


def test_presence_drop(clock: Clock) -> None:
    pr = online.Presence(expiry=5.0)
    pr.announce(b"ta", "alice", "tcp://a:1", b"ka")
    pr.serve(b"ta", KEY, None)
    pr.drop(b"ta")
    pr.drop(b"ta")
    assert pr.count(KEY) == 0
    assert pr.peers == {}
