"""Unit tests for the tracker's durable rules (tracker.rules over a real database, both stores)."""

from __future__ import annotations

import hashlib

import pytest
from stores import Backend

from messages.errors import Code, Refused
from messages.protocol import MAX_PIECES
from messages.records import FileMeta
from tracker.rules import Rules

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


def expect(code: Code, fn, *args):  # type: ignore[no-untyped-def]
    with pytest.raises(Refused) as info:
        fn(*args)
    assert info.value.code is code, f"got {info.value.code!r}: {info.value.message}"
    return info.value


@pytest.fixture
def state(backend: Backend) -> Rules:
    return Rules(backend.open())


@pytest.fixture
def films(state: Rules) -> Rules:
    """Group 'films': admin alice, members bob then carol (in that order of acceptance)."""
    state.create_group("alice", "films")
    for user in ("bob", "carol"):
        state.join_group(user, "films")
        state.accept_request("alice", "films", user)
    return state


# --- accounts -------------------------------------------------------------------------------


def test_create_user_login_and_session(state: Rules) -> None:
    state.create_user("alice", "pw-alice")
    expect(Code.USER_EXISTS, state.create_user, "alice", "other")
    token = state.login("alice", "pw-alice")
    session = state.session(token)
    th, user = session.token_hash, session.user
    assert user == "alice"
    assert th == hashlib.sha256(token.encode()).digest()
    # Two logins are two sessions.
    token2 = state.login("alice", "pw-alice")
    assert token2 != token
    assert state.session(token2).user == "alice"
    expect(Code.WRONG_PASSWORD, state.login, "alice", "pw-alicE")
    expect(Code.NO_SUCH_USER, state.login, "nobody", "pw")


def test_session_user_rejects_bad_tokens(state: Rules) -> None:
    state.create_user("alice", "pw")
    token = state.login("alice", "pw")
    for bad in (None, "", "not-a-token", token + "x", token[:-1]):
        expect(Code.UNAUTHORIZED, state.session, bad)


def test_logout_ends_the_session_also_in_the_database(state: Rules) -> None:
    state.create_user("alice", "pw")
    token = state.login("alice", "pw")
    other = state.login("alice", "pw")
    state.logout(state.session(token))
    expect(Code.UNAUTHORIZED, state.session, token)
    fresh = Rules(state.db)  # nothing cached anywhere: it reads the table
    expect(Code.UNAUTHORIZED, fresh.session, token)
    assert fresh.session(other).user == "alice"


def test_passwords_are_not_stored_in_clear(state: Rules) -> None:
    password = "correct horse battery staple"
    state.create_user("alice", password)
    state.create_user("bob", password)
    rows = state.db.all("SELECT name, salt, hash FROM users ORDER BY name")
    assert len(rows) == 2
    for _, salt, digest in rows:
        assert password.encode() not in bytes(digest)
        assert password.encode() not in bytes(salt)
        assert len(bytes(digest)) >= 32
    # Salted: the same password gives different hashes.
    assert rows[0][2] != rows[1][2]
    # Tokens are not stored in clear either.
    token = state.login("alice", password)
    stored = [bytes(r[0]) for r in state.db.all("SELECT token_hash FROM sessions")]
    assert token.encode() not in stored
    assert all(token.encode() not in s for s in stored)


# --- groups ---------------------------------------------------------------------------------


def test_create_group_makes_creator_admin(state: Rules) -> None:
    state.create_group("alice", "films")
    expect(Code.GROUP_EXISTS, state.create_group, "bob", "films")
    groups = {g.name: g for g in state.list_groups("alice")}
    assert groups["films"].admin == "alice"
    assert groups["films"].role == "admin"
    assert groups["films"].members == 1
    assert state.is_member("films", "alice")
    state.require_admin("films", "alice")
    assert {g.name: g.role for g in state.list_groups("bob")} == {"films": ""}


def test_join_requests(state: Rules) -> None:
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


def test_list_requests_of_missing_group(state: Rules) -> None:
    expect(Code.NO_SUCH_GROUP, state.list_requests, "alice", "nope")
    expect(Code.NO_SUCH_GROUP, state.accept_request, "alice", "nope", "bob")


@pytest.mark.parametrize(("first", "second"), [("bob", "carol"), ("carol", "bob")])
def test_admin_leaving_hands_over_to_longest_standing_member(state: Rules, first: str, second: str) -> None:
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


def test_seniority_survives_members_leaving_and_rejoining(films: Rules) -> None:
    # bob leaves and comes back: now carol has been a member longer than bob.
    films.leave_group("bob", "films")
    films.join_group("bob", "films")
    films.accept_request("alice", "films", "bob")
    films.join_group("dave", "films")
    films.accept_request("alice", "films", "dave")
    assert films.leave_group("alice", "films").new_admin == "carol"
    assert films.leave_group("carol", "films").new_admin == "bob"


def test_non_admin_leaving_keeps_the_admin(films: Rules) -> None:
    result = films.leave_group("bob", "films")
    assert result.new_admin is None
    assert result.group_deleted is False
    films.require_admin("films", "alice")
    assert not films.is_member("films", "bob")
    expect(Code.NOT_MEMBER, films.leave_group, "bob", "films")


def test_leaving_withdraws_a_pending_request(films: Rules) -> None:
    films.join_group("dave", "films")
    result = films.leave_group("dave", "films")
    assert result.group_deleted is False
    assert films.list_requests("alice", "films") == []
    expect(Code.NOT_MEMBER, films.leave_group, "dave", "films")


def test_last_member_leaving_deletes_the_group(state: Rules) -> None:
    state.create_group("alice", "films")
    state.join_group("bob", "films")  # pending, not a member: does not keep the group alive
    m = meta()
    assert state.share_file("alice", m) is True
    result = state.leave_group("alice", "films")
    assert result.group_deleted is True
    assert result.new_admin is None
    assert result.files_removed == ["movie.mkv"]
    expect(Code.NO_SUCH_GROUP, state.join_group, "bob", "films")
    expect(Code.NO_SUCH_GROUP, state.leave_group, "alice", "films")
    expect(Code.NO_SUCH_GROUP, state.require_member, "films", "alice")
    assert state.list_groups("alice") == []
    assert state.db.one("SELECT count(*) FROM requests")[0] == 0
    assert state.db.one("SELECT count(*) FROM files")[0] == 0
    # The name is free again.
    state.create_group("bob", "films")
    state.require_admin("films", "bob")
    assert state.files("films") == []


def test_leaving_removes_the_members_shares(films: Rules) -> None:
    solo, both = meta("solo.mkv"), meta("both.mkv", sha="b")
    films.share_file("bob", solo)
    films.share_file("bob", both)
    films.share_file("carol", both)
    assert [(n, s) for n, _, s in films.files("films")] == [("both.mkv", 2), ("solo.mkv", 1)]
    result = films.leave_group("bob", "films")
    assert result.files_removed == ["solo.mkv"]
    assert films.files("films") == [("both.mkv", both.size, 1)]
    assert films.file("films", "solo.mkv") is None
    assert films.shares_of("bob") == set()
    assert films.shares_of("carol") == {("films", "both.mkv")}


# --- files ----------------------------------------------------------------------------------


def test_share_file_and_read_back(films: Rules) -> None:
    m = meta()
    assert m.num_pieces == 3
    assert films.share_file("bob", m) is True
    stored = films.file("films", "movie.mkv")
    assert stored == m
    assert films.require_file("carol", "films", "movie.mkv") == stored
    assert films.files("films") == [("movie.mkv", m.size, 1)]
    expect(Code.NO_SUCH_FILE, films.require_file, "carol", "films", "other.mkv")
    expect(Code.NOT_MEMBER, films.require_file, "mallory", "films", "movie.mkv")


def test_share_same_content_adds_a_sharer(films: Rules) -> None:
    m = meta()
    assert films.share_file("bob", m) is True
    assert films.share_file("carol", m) is False
    assert films.files("films") == [("movie.mkv", m.size, 2)]
    # Sharing again is idempotent.
    assert films.share_file("carol", m) is False
    assert films.files("films") == [("movie.mkv", m.size, 2)]


@pytest.mark.parametrize("other", [{"sha": "b"}, {"size": 3 * PIECE - 6}])
def test_share_same_name_other_content_is_file_conflict(films: Rules, other: dict) -> None:
    m = meta()
    films.share_file("bob", m)
    m2 = meta(**other)
    expect(Code.FILE_CONFLICT, films.share_file, "carol", m2)
    assert films.files("films") == [("movie.mkv", m.size, 1)]
    assert films.file("films", "movie.mkv") == m


def test_same_name_in_another_group_is_no_conflict(films: Rules) -> None:
    films.create_group("bob", "music")
    m = meta()
    films.share_file("bob", m)
    m2 = meta(group="music", sha="c")
    assert films.share_file("bob", m2) is True
    assert films.shares_of("bob") == {("films", "movie.mkv"), ("music", "movie.mkv")}


def test_share_file_refusals(films: Rules) -> None:
    m = meta()
    expect(Code.NOT_MEMBER, films.share_file, "mallory", m)
    films.join_group("dave", "films")  # a pending request is not membership
    expect(Code.NOT_MEMBER, films.share_file, "dave", m)
    expect(Code.NO_SUCH_GROUP, films.share_file, "bob", meta(group="nope"))
    huge = meta("huge.bin", size=(MAX_PIECES + 1) * PIECE)
    expect(Code.BAD_ARGS, films.share_file, "bob", huge)
    assert films.files("films") == []


def test_empty_file_has_no_digests(films: Rules) -> None:
    m = meta("empty.txt", size=0)
    assert films.share_file("bob", m) is True
    assert films.files("films") == [("empty.txt", 0, 1)]
    # An empty file's root can only be the hash of no digests.
    bad = FileMeta(group="films", name="empty2.txt", size=0, piece_size=PIECE, root="ab" * 32)
    expect(Code.BAD_ARGS, films.share_file, "bob", bad)


def test_stop_share(films: Rules) -> None:
    m = meta()
    films.share_file("bob", m)
    films.share_file("carol", m)
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
    assert films.share_file("alice", m2) is True


# --- durability -----------------------------------------------------------------------------


def test_state_survives_reopening_the_database(backend: Backend) -> None:
    store = backend.open()
    st = Rules(store)
    st.create_user("alice", "pw")
    token = st.login("alice", "pw")
    st.create_group("alice", "films")
    st.join_group("bob", "films")
    st.accept_request("alice", "films", "bob")
    st.join_group("carol", "films")
    m = meta()
    st.share_file("bob", m)
    store.close()

    store2 = backend.open()  # a restarted tracker
    try:
        st2 = Rules(store2)
        assert st2.session(token).user == "alice"
        expect(Code.USER_EXISTS, st2.create_user, "alice", "x")
        expect(Code.WRONG_PASSWORD, st2.login, "alice", "x")
        st2.require_admin("films", "alice")
        assert st2.is_member("films", "bob")
        assert st2.list_requests("alice", "films") == ["carol"]
        assert st2.file("films", "movie.mkv") == m
        assert st2.shares_of("bob") == {("films", "movie.mkv")}
        # Seniority survives too.
        assert st2.leave_group("alice", "films").new_admin == "bob"
    finally:
        store2.close()
