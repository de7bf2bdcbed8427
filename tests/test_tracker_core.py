"""The tracker's whole request path, frames in and frames out, on a real database:
the same tests run on a SQLite file and on a PostgreSQL database.

No sockets and no processes: what a peer would send goes straight into ``TrackerCore`` and the
test reads the reply a peer would get. Covers every operation's handler, the session check
taken from the operation table, group commit (and its rollback, presence included), savepoints
and the durable reply cache.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from stores import Backend
from tracker_pair import TrackerPair, file_meta, key_of

from messages import protocol as P
from messages.bitfield import Bitfield
from messages.control import Reply
from messages.errors import Code
from messages.grants import GrantChecker
from messages.records import FileEntry, Grant, GroupEntry, Heartbeat, Holder, LeaveResult, Revocation
from messages.schema import OPS
from tracker import handlers
from tracker.pg_store import PgStore
from tracker.sqlite_store import SqliteStore
from tracker.store import StoreError


@pytest.fixture
def films(t: TrackerPair) -> TrackerPair:
    """alice (admin), bob and carol in group 'films'; dave exists but is not a member."""
    for name in ("alice", "bob", "carol", "dave"):
        t.user(name)
    t.group("alice", "films", "bob", "carol")
    return t


# --- framing and sessions -------------------------------------------------------------------


def test_malformed_messages_get_error_codes_not_silence(t: TrackerPair) -> None:
    cases: list[tuple[list[Any], Code]] = [
        ([b"XXXX", b"{}"], Code.BAD_FRAME),
        ([P.CONTROL_TAG], Code.BAD_FRAME),
        ([P.CONTROL_TAG, b"{not json"], Code.BAD_JSON),
        ([P.CONTROL_TAG, b"x" * (P.MAX_HEADER_BYTES + 1)], Code.TOO_LARGE),
        ([P.CONTROL_TAG, orjson.dumps({"id": 4, "op": "nope", "args": {}})], Code.UNKNOWN_OP),
        ([P.CONTROL_TAG, orjson.dumps({"id": 5, "op": P.OP_LOGIN, "args": {"user": 3}})], Code.BAD_ARGS),
    ]
    replies = t.batch(*(frames for frames, _ in cases))
    for (_, code), frames in zip(cases, replies, strict=True):
        reply = Reply.decode(frames)
        assert reply.error is not None
        assert reply.error.code == code
    assert Reply.decode(replies[4]).id == 4  # the id is echoed when it can be read


@pytest.mark.parametrize("op", sorted(op for op, spec in OPS.items() if spec.token))
def test_every_operation_that_needs_a_session_refuses_without_one(t: TrackerPair, op: str) -> None:
    # Valid arguments for each op, so only the session is missing.
    meta, _ = file_meta()
    args: dict[str, Any] = {
        P.OP_LOGOUT: {},
        P.OP_LIST_GROUPS: {},
        P.OP_HEARTBEAT: {},
        P.OP_ANNOUNCE: {"endpoint": "tcp://h:1", "plain": False, "shares": []},
        P.OP_PROGRESS: {"group": "films", "file": "movie.mkv", "have": Bitfield(3).encode()},
        P.OP_SHARE_FILE: meta.share_args(),
        P.OP_ACCEPT_REQUEST: {"group": "films", "user": "bob"},
        P.OP_REJECT_REQUEST: {"group": "films", "user": "bob"},
        P.OP_REMOVE_MEMBER: {"group": "films", "user": "bob"},
        P.OP_REPORT: {"group": "films", "file": "movie.mkv", "holder": key_of("bob"), "piece": 0},
    }.get(op, {"group": "films", "file": "movie.mkv"} if "file" in OPS[op].fields else {"group": "films"})
    t.refused(Code.UNAUTHORIZED, op, args)
    t.refused(Code.UNAUTHORIZED, op, args, token="forged-token")


def test_create_user_login_logout(t: TrackerPair) -> None:
    assert t.ok(P.OP_PING)["epoch"] == t.core.epoch
    t.user("alice")
    t.refused(Code.USER_EXISTS, P.OP_CREATE_USER, {"user": "alice", "password": "x"})
    t.refused(Code.WRONG_PASSWORD, P.OP_LOGIN, {"user": "alice", "password": "nope"})
    t.refused(Code.NO_SUCH_USER, P.OP_LOGIN, {"user": "zed", "password": "nope"})
    token = t.tokens["alice"]
    t.ok(P.OP_LIST_GROUPS, as_user="alice")
    t.ok(P.OP_LOGOUT, as_user="alice")
    t.refused(Code.UNAUTHORIZED, P.OP_LIST_GROUPS, token=token)


# --- groups ---------------------------------------------------------------------------------


def test_group_flow_and_listings(films: TrackerPair) -> None:
    t = films
    t.ok(P.OP_JOIN_GROUP, {"group": "films"}, as_user="dave")
    t.refused(Code.ALREADY_REQUESTED, P.OP_JOIN_GROUP, {"group": "films"}, as_user="dave")
    t.refused(Code.ALREADY_MEMBER, P.OP_JOIN_GROUP, {"group": "films"}, as_user="bob")
    t.refused(Code.NO_SUCH_GROUP, P.OP_JOIN_GROUP, {"group": "nope"}, as_user="dave")
    assert t.ok(P.OP_LIST_REQUESTS, {"group": "films"}, as_user="alice")["items"] == [{"user": "dave"}]
    t.refused(Code.NOT_ADMIN, P.OP_LIST_REQUESTS, {"group": "films"}, as_user="bob")
    t.refused(Code.NOT_ADMIN, P.OP_ACCEPT_REQUEST, {"group": "films", "user": "dave"}, as_user="bob")
    t.ok(P.OP_REJECT_REQUEST, {"group": "films", "user": "dave"}, as_user="alice")
    t.refused(Code.NO_SUCH_REQUEST, P.OP_ACCEPT_REQUEST, {"group": "films", "user": "dave"}, as_user="alice")
    t.refused(Code.GROUP_EXISTS, P.OP_CREATE_GROUP, {"group": "films"}, as_user="dave")
    t.ok(P.OP_CREATE_GROUP, {"group": "music"}, as_user="dave")
    groups = [GroupEntry.from_wire(g) for g in t.ok(P.OP_LIST_GROUPS, as_user="bob")["items"]]
    assert [(g.name, g.admin, g.members, g.role) for g in groups] == [
        ("films", "alice", 3, "member"),
        ("music", "dave", 1, ""),
    ]


def test_leave_hands_over_and_unlists_shares(films: TrackerPair) -> None:
    t = films
    meta, _ = file_meta()
    t.online("alice", 7001)
    t.share("alice", meta)
    t.online("bob", 7002)
    t.share("bob", meta)
    left = LeaveResult.from_wire(t.ok(P.OP_LEAVE_GROUP, {"group": "films"}, as_user="alice"))
    assert left.new_admin == "bob"
    assert left.files_removed == []  # bob still shares it
    holders = t.ok(P.OP_HOLDERS, {"group": "films", "file": "movie.mkv"}, as_user="carol")["holders"]
    assert [h["user"] for h in holders] == ["bob"]
    left = LeaveResult.from_wire(t.ok(P.OP_LEAVE_GROUP, {"group": "films"}, as_user="bob"))
    assert left.files_removed == ["movie.mkv"]
    t.refused(Code.NO_SUCH_FILE, P.OP_FILE_INFO, {"group": "films", "file": "movie.mkv"}, as_user="carol")
    t.refused(Code.NOT_MEMBER, P.OP_LEAVE_GROUP, {"group": "films"}, as_user="dave")


# --- files, holders, presence ---------------------------------------------------------------


def test_share_list_info_and_stop(films: TrackerPair) -> None:
    t = films
    meta, _ = file_meta()
    t.refused(Code.NOT_MEMBER, P.OP_SHARE_FILE, meta.share_args(), as_user="dave")
    assert t.share("bob", meta) == {"new": True}
    assert t.share("carol", meta) == {"new": False}
    other, _ = file_meta(seed=b"b")
    t.refused(Code.FILE_CONFLICT, P.OP_SHARE_FILE, other.share_args(), as_user="alice")
    files = [
        FileEntry.from_wire(f) for f in t.ok(P.OP_LIST_FILES, {"group": "films"}, as_user="alice")["items"]
    ]
    assert [(f.name, f.size, f.online, f.sharers) for f in files] == [("movie.mkv", meta.size, 0, 2)]
    t.refused(Code.NOT_MEMBER, P.OP_LIST_FILES, {"group": "films"}, as_user="dave")
    info = t.call(P.OP_FILE_INFO, {"group": "films", "file": "movie.mkv"}, as_user="alice")
    assert info.result == meta.to_wire()  # the root only: digests come from holders
    assert t.ok(P.OP_STOP_SHARE, {"group": "films", "file": "movie.mkv"}, as_user="bob") == {
        "file_removed": False
    }
    t.refused(Code.NOT_SHARING, P.OP_STOP_SHARE, {"group": "films", "file": "movie.mkv"}, as_user="bob")
    assert t.ok(P.OP_STOP_SHARE, {"group": "films", "file": "movie.mkv"}, as_user="carol") == {
        "file_removed": True
    }


def test_holders_come_with_grants_and_exclude_the_asker(films: TrackerPair) -> None:
    t = films
    meta, _ = file_meta()
    t.online("bob", 7002)
    t.share("bob", meta)
    t.online("carol", 7003)
    part = Bitfield.from_indices(meta.num_pieces, [0, 2])
    t.ok(P.OP_PROGRESS, {"group": "films", "file": "movie.mkv", "have": part.encode()}, as_user="carol")
    wire = t.ok(P.OP_HOLDERS, {"group": "films", "file": "movie.mkv"}, as_user="carol")["holders"]
    assert [h["user"] for h in wire] == ["bob"]
    listed = t.ok(P.OP_HOLDERS, {"group": "films", "file": "movie.mkv"}, as_user="alice")
    assert listed["total"] == 2 and listed["left"] == []
    holders = {h.user: h for h in map(Holder.from_wire, listed["holders"])}
    assert holders["bob"].have is None
    assert holders["carol"].have == part.encode()
    assert holders["bob"].endpoint == "tcp://127.0.0.1:7002"
    assert holders["bob"].key == key_of("bob")  # the downloader connects to this key and no other
    # One grant, signed by the tracker, for the asker's own key and this file, good at every holder.
    grant = Grant.from_wire(listed["grant"])
    assert (grant.user, grant.key) == ("alice", key_of("alice"))
    GrantChecker(t.ok(P.OP_PING)["grant_key"]).check(
        grant, "films", "movie.mkv", key_of("alice"), now=t.wall()
    )
    t.refused(Code.NOT_MEMBER, P.OP_HOLDERS, {"group": "films", "file": "movie.mkv"}, as_user="dave")
    t.refused(Code.NO_SUCH_FILE, P.OP_HOLDERS, {"group": "films", "file": "x"}, as_user="alice")


def test_announce_checks_every_claim(films: TrackerPair) -> None:
    t = films
    meta, _ = file_meta()
    t.share("bob", meta)  # offline: recorded, not listed as online
    other, _ = file_meta("other.mkv", seed=b"o")
    t.share("alice", other)
    shares = [
        {"group": "films", "file": "movie.mkv"},  # bob shares it: served
        {"group": "films", "file": "other.mkv"},  # alice's, not bob's: refused
        {"group": "films", "file": "ghost.mkv"},  # no such file
        {"group": "films", "file": "other.mkv", "have": "!!"},  # a partial with a broken bitfield
    ]
    refused = t.online("bob", 7002, shares)["refused"]
    assert [(r["file"], r["message"]) for r in refused] == [
        ("other.mkv", "you no longer share it"),
        ("ghost.mkv", "no file 'ghost.mkv' in 'films'"),
        ("other.mkv", "bitfield is not valid base64"),
    ]
    files = {
        f["name"]: f["online"] for f in t.ok(P.OP_LIST_FILES, {"group": "films"}, as_user="carol")["items"]
    }
    assert files == {"movie.mkv": 1, "other.mkv": 0}


def test_progress_serves_partials_and_withdraws_stopped_downloads(films: TrackerPair) -> None:
    t = films
    meta, _ = file_meta()
    t.share("bob", meta)
    key = {"group": "films", "file": "movie.mkv"}
    empty = Bitfield(meta.num_pieces).encode()
    assert t.ok(P.OP_PROGRESS, {**key, "have": empty}, as_user="carol") == {"online": False}
    t.online("carol", 7003)
    one = Bitfield.from_indices(meta.num_pieces, [1]).encode()
    assert t.ok(P.OP_PROGRESS, {**key, "have": one}, as_user="carol") == {"online": True}
    assert t.ok(P.OP_LIST_FILES, {"group": "films"}, as_user="carol")["items"][0]["online"] == 1
    t.ok(P.OP_PROGRESS, {**key, "have": empty}, as_user="carol")  # the download stopped
    assert t.ok(P.OP_LIST_FILES, {"group": "films"}, as_user="carol")["items"][0]["online"] == 0
    t.refused(
        Code.BAD_ARGS, P.OP_PROGRESS, {**key, "have": Bitfield(meta.num_pieces + 8).encode()}, as_user="carol"
    )


def test_heartbeat_and_expiry(films: TrackerPair) -> None:
    t = films
    beat = Heartbeat.from_wire(t.ok(P.OP_HEARTBEAT, as_user="bob"))
    assert (beat.epoch, beat.online) == (t.core.epoch, False)
    t.online("bob", 7002)
    assert Heartbeat.from_wire(t.ok(P.OP_HEARTBEAT, as_user="bob")).online
    t.clock.now += 4.0
    t.ok(P.OP_HEARTBEAT, as_user="bob")
    t.clock.now += 4.0
    t.core.tick()
    assert Heartbeat.from_wire(t.ok(P.OP_HEARTBEAT, as_user="bob")).online  # seen 4 s ago: alive
    t.clock.now += 5.5
    t.core.tick()
    assert not Heartbeat.from_wire(t.ok(P.OP_HEARTBEAT, as_user="bob")).online


def test_logout_takes_shares_offline(films: TrackerPair) -> None:
    t = films
    meta, _ = file_meta()
    t.online("bob", 7002)
    t.share("bob", meta)
    t.ok(P.OP_LOGOUT, as_user="bob")
    assert t.ok(P.OP_HOLDERS, {"group": "films", "file": "movie.mkv"}, as_user="alice")["holders"] == []


# --- group commit, savepoints, the reply cache ----------------------------------------------


def test_a_refused_request_undoes_only_itself(films: TrackerPair) -> None:
    t = films
    good = t.request(P.OP_CREATE_GROUP, {"group": "music"}, token=t.tokens["bob"])
    bad = t.request(P.OP_CREATE_GROUP, {"group": "films"}, token=t.tokens["bob"])
    replies = [Reply.decode(f) for f in t.batch(good.encode(), bad.encode(), key=key_of("bob"))]
    assert replies[0].ok
    assert replies[1].error is not None and replies[1].error.code == Code.GROUP_EXISTS
    assert "music" in [g["name"] for g in t.ok(P.OP_LIST_GROUPS, as_user="bob")["items"]]


def test_a_bug_in_a_handler_costs_one_request(films: TrackerPair, monkeypatch: pytest.MonkeyPatch) -> None:
    t = films

    def broken(env: handlers.Env, c: handlers.Call) -> Reply:
        env.rules.create_group(c.user, "halfway")  # a change that must be undone
        raise ZeroDivisionError

    monkeypatch.setitem(handlers.HANDLERS, P.OP_JOIN_GROUP, broken)
    ok = t.request(P.OP_CREATE_GROUP, {"group": "music"}, token=t.tokens["bob"])
    boom = t.request(P.OP_JOIN_GROUP, {"group": "films"}, token=t.tokens["dave"])
    replies = [
        Reply.decode(f) for f in t.batch(ok.encode(), boom.encode(), keys=[key_of("bob"), key_of("dave")])
    ]
    assert replies[0].ok
    assert replies[1].error is not None and replies[1].error.code == Code.INTERNAL
    names = [g["name"] for g in t.ok(P.OP_LIST_GROUPS, as_user="bob")["items"]]
    assert "music" in names and "halfway" not in names


class FailingCommit:
    """Mixed into a real store: its next commit fails the way a full disk makes it fail."""

    fail_next = False

    def commit(self) -> None:
        if self.fail_next:
            self.fail_next = False
            self.rollback()  # type: ignore[attr-defined]
            raise StoreError("database or disk is full")
        super().commit()  # type: ignore[misc]


class FailingSqlite(FailingCommit, SqliteStore):
    pass


class FailingPg(FailingCommit, PgStore):
    pass


def test_a_failed_commit_acknowledges_nothing_and_forgets_its_presence(backend: Backend) -> None:
    store = backend.open({"sqlite": FailingSqlite, "postgresql": FailingPg}[backend.name])
    assert isinstance(store, FailingCommit)
    t = TrackerPair(store)
    try:
        t.user("alice")
        t.group("alice", "films")
        meta, _ = file_meta()
        announce = t.request(
            P.OP_ANNOUNCE,
            {"endpoint": "tcp://h:1", "plain": False, "shares": []},
            token=t.tokens["alice"],
        )
        share = t.request(P.OP_SHARE_FILE, meta.share_args(), token=t.tokens["alice"])
        store.fail_next = True
        replies = [Reply.decode(f) for f in t.batch(announce.encode(), share.encode(), key=key_of("alice"))]
        assert [r.error.code if r.error else None for r in replies] == [Code.INTERNAL, Code.INTERNAL]
        assert [r.id for r in replies] == [announce.id, share.id]
        assert not t.core.presence.is_online(hashlib.sha256(t.tokens["alice"].encode()).digest())
        t.refused(Code.NO_SUCH_FILE, P.OP_FILE_INFO, {"group": "films", "file": "movie.mkv"}, as_user="alice")
        # The same requests, retried, now go through (nothing of them was cached either).
        assert all(
            Reply.decode(f).ok for f in t.batch(announce.encode(), share.encode(), key=key_of("alice"))
        )
    finally:
        t.close()


def test_a_retried_write_gets_its_own_reply_even_after_a_restart(backend: Backend) -> None:
    t = TrackerPair(backend.open())
    req = t.request(P.OP_CREATE_USER, {"user": "alice", "password": "pw"}, cid="peer-1", rid=41)
    first = t.batch(req.encode())[0]
    assert Reply.decode(first).ok
    t.close()
    t = TrackerPair(backend.open())  # a restarted tracker on the same database
    try:
        again = t.batch(req.encode())[0]
        assert again == first  # the very same reply, not "user exists"
        # Another request reusing the ids is not answered from the cache.
        other = t.request(P.OP_CREATE_USER, {"user": "alice", "password": "other"}, cid="peer-1", rid=41)
        t.refused(Code.USER_EXISTS, P.OP_CREATE_USER, other.args, cid="peer-1", rid=41)
        # Another client with the same request id is another request.
        t.refused(Code.USER_EXISTS, P.OP_CREATE_USER, req.args, cid="peer-2", rid=41)
    finally:
        t.close()


def test_login_replies_are_never_stored(t: TrackerPair) -> None:
    t.user("alice", login=False)
    req = t.request(P.OP_LOGIN, {"user": "alice", "password": "pw-alice"}, cid="c", rid=9)
    first, again = (Reply.decode(t.batch(req.encode())[0]) for _ in range(2))
    assert first.result["token"] != again.result["token"]  # logged in twice, no token kept
    rows = t.store.all("SELECT header FROM replies")
    assert all(first.result["token"].encode() not in bytes(r[0]) for r in rows)


def test_old_cached_replies_are_purged(t: TrackerPair) -> None:
    t.user("alice")
    assert t.store.one("SELECT count(*) FROM replies")[0] == 1  # create_user (login is not cached)
    t.core.wall = lambda: 10.0**10  # far in the future
    t.core.tick()
    assert t.store.one("SELECT count(*) FROM replies")[0] == 0


def test_empty_file_can_be_shared(films: TrackerPair) -> None:
    t = films
    meta, digests = file_meta("empty.txt", size=0)
    assert digests == b""
    t.share("bob", meta)
    info = t.call(P.OP_FILE_INFO, {"group": "films", "file": "empty.txt"}, as_user="carol")
    assert info.result["size"] == 0


# --- trust: keys, throttling, revocations, removal, bad holders -----------------------------


def pushes_to(t: TrackerPair, user: str, kind: str) -> list[dict[str, Any]]:
    return [p.body for route, p in t.pushed if route == f"route-{user}".encode() and p.kind == kind]


def test_a_session_only_works_from_the_key_it_was_opened_with(films: TrackerPair) -> None:
    t = films
    t.ok(P.OP_LIST_GROUPS, as_user="bob")
    msg = t.refused(Code.UNAUTHORIZED, P.OP_LIST_GROUPS, token=t.tokens["bob"], key=key_of("mallory"))
    assert "another peer's key" in msg


def test_five_wrong_passwords_in_a_minute_lock_that_user_for_30s(t: TrackerPair) -> None:
    t.user("alice", login=False)
    t.user("bob", login=False)
    wrong = {"user": "alice", "password": "nope"}
    for _ in range(5):
        t.refused(Code.WRONG_PASSWORD, P.OP_LOGIN, wrong)
    msg = t.refused(Code.THROTTLED, P.OP_LOGIN, {"user": "alice", "password": "pw-alice"})
    assert "too many wrong passwords" in msg
    t.ok(P.OP_LOGIN, {"user": "bob", "password": "pw-bob"})  # other users are not locked out
    t.wall.now += 29
    t.refused(Code.THROTTLED, P.OP_LOGIN, {"user": "alice", "password": "pw-alice"})
    t.wall.now += 2
    assert t.ok(P.OP_LOGIN, {"user": "alice", "password": "pw-alice"})["token"]


def test_wrong_passwords_spread_over_more_than_a_minute_do_not_lock(t: TrackerPair) -> None:
    t.user("alice", login=False)
    for _ in range(4):
        t.refused(Code.WRONG_PASSWORD, P.OP_LOGIN, {"user": "alice", "password": "nope"})
    t.wall.now += 61
    t.refused(Code.WRONG_PASSWORD, P.OP_LOGIN, {"user": "alice", "password": "nope"})
    t.ok(P.OP_LOGIN, {"user": "alice", "password": "pw-alice"})


def test_logout_and_leaving_push_revocations_to_the_groups_seeders(films: TrackerPair) -> None:
    t = films
    meta, _ = file_meta()
    t.online("bob", 7002)
    t.share("bob", meta)
    t.online("carol", 7003)
    t.ok(P.OP_LEAVE_GROUP, {"group": "films"}, as_user="carol")
    (rev,) = pushes_to(t, "bob", P.PUSH_REVOKE)
    assert Revocation.from_wire(rev) == Revocation(at=t.wall(), user="carol", group="films")
    t.ok(P.OP_LOGOUT, as_user="alice")
    revs = [Revocation.from_wire(b) for b in pushes_to(t, "bob", P.PUSH_REVOKE)]
    assert revs[-1] == Revocation(at=t.wall(), key=key_of("alice"))


def test_revocations_reach_online_members_that_serve_nothing_yet(films: TrackerPair) -> None:
    """Any member may start serving the group's files (a download makes it a holder at once),
    so every online member's seeder must hear whose grants to refuse."""
    t = films
    t.online("bob", 7002)  # online, serving nothing
    t.online("carol", 7003)
    t.ok(P.OP_LEAVE_GROUP, {"group": "films"}, as_user="carol")
    assert [Revocation.from_wire(b) for b in pushes_to(t, "bob", P.PUSH_REVOKE)] == [
        Revocation(at=t.wall(), user="carol", group="films")
    ]
    assert pushes_to(t, "carol", P.PUSH_REVOKE) == []  # no longer a member: nothing to hear


def test_a_new_member_refuses_grants_older_than_its_membership(films: TrackerPair) -> None:
    """Revocations pushed before it joined never reached it: it refuses every older grant."""
    t = films
    t.online("dave", 7004)
    t.ok(P.OP_JOIN_GROUP, {"group": "films"}, as_user="dave")
    t.ok(P.OP_ACCEPT_REQUEST, {"group": "films", "user": "dave"}, as_user="alice")
    (rev,) = pushes_to(t, "dave", P.PUSH_REVOKE)
    assert Revocation.from_wire(rev) == Revocation(at=t.wall(), group="films")


def test_login_tells_the_time_its_seeder_refuses_older_grants_from(t: TrackerPair) -> None:
    t.user("alice", login=False)
    reply = t.ok(P.OP_LOGIN, {"user": "alice", "password": "pw-alice"}, key=key_of("alice"))
    assert reply["at"] == t.wall()


def test_the_admin_removes_a_member(films: TrackerPair) -> None:
    t = films
    meta, _ = file_meta()
    t.online("bob", 7002)
    t.share("bob", meta)
    t.refused(Code.NOT_ADMIN, P.OP_REMOVE_MEMBER, {"group": "films", "user": "carol"}, as_user="bob")
    t.refused(Code.NOT_MEMBER, P.OP_REMOVE_MEMBER, {"group": "films", "user": "dave"}, as_user="alice")
    t.refused(Code.BAD_ARGS, P.OP_REMOVE_MEMBER, {"group": "films", "user": "alice"}, as_user="alice")
    t.ok(P.OP_REMOVE_MEMBER, {"group": "films", "user": "carol"}, as_user="alice")
    t.refused(Code.NOT_MEMBER, P.OP_LIST_FILES, {"group": "films"}, as_user="carol")
    assert Revocation.from_wire(pushes_to(t, "bob", P.PUSH_REVOKE)[-1]).user == "carol"


def test_the_admin_removes_a_file_for_everyone(films: TrackerPair) -> None:
    t = films
    meta, _ = file_meta()
    t.online("bob", 7002)
    t.share("bob", meta)
    key = {"group": "films", "file": "movie.mkv"}
    t.refused(Code.NOT_ADMIN, P.OP_REMOVE_FILE, key, as_user="bob")
    assert t.pushed == []  # a refused request tells nobody anything
    t.ok(P.OP_REMOVE_FILE, key, as_user="alice")
    assert pushes_to(t, "bob", P.PUSH_REMOVED) == [{**key, "by": "alice"}]
    t.refused(Code.NO_SUCH_FILE, P.OP_FILE_INFO, key, as_user="carol")
    t.refused(Code.NO_SUCH_FILE, P.OP_REMOVE_FILE, key, as_user="alice")
    assert t.ok(P.OP_LIST_FILES, {"group": "films"}, as_user="carol")["items"] == []


def test_a_holder_two_downloaders_report_is_unlisted_until_it_rechecks(films: TrackerPair) -> None:
    t = films
    meta, _ = file_meta()
    for name, port in (("bob", 7002), ("dave", 7004)):
        t.online(name, port)
    t.share("bob", meta)
    key = {"group": "films", "file": "movie.mkv"}
    t.ok(P.OP_JOIN_GROUP, {"group": "films"}, as_user="dave")
    t.ok(P.OP_ACCEPT_REQUEST, {"group": "films", "user": "dave"}, as_user="alice")
    report = {**key, "holder": key_of("bob"), "piece": 2}
    assert t.ok(P.OP_REPORT, report, as_user="carol") == {"reporters": 1}
    assert t.ok(P.OP_REPORT, report, as_user="carol") == {"reporters": 1}  # the same reporter again
    assert [h["user"] for h in t.ok(P.OP_HOLDERS, key, as_user="alice")["holders"]] == ["bob"]
    assert t.ok(P.OP_REPORT, {**report, "piece": 1}, as_user="dave") == {"reporters": 2}
    assert t.ok(P.OP_HOLDERS, key, as_user="alice")["holders"] == []
    assert pushes_to(t, "bob", P.PUSH_VERIFY) == [{**key, "pieces": [1, 2]}]
    t.ok(P.OP_VERIFIED, key, as_user="bob")
    assert [h["user"] for h in t.ok(P.OP_HOLDERS, key, as_user="alice")["holders"]] == ["bob"]
