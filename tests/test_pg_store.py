"""What only the PostgreSQL store promises: several trackers on one database, and a server
that restarts under a running tracker.

Each test talks to the session's throwaway cluster; tests that need an empty database (no
tables yet) create one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from tracker_pair import TrackerPair

from launch.pgcluster import PgCluster
from messages import protocol as P
from messages.control import Reply
from messages.errors import Code
from tracker.pg_store import PgStore, to_pg
from tracker.presence import Online, Presence
from tracker.schema import SCHEMA_VERSION
from tracker.store import StoreError


@pytest.fixture
def two(pg_dsn: str) -> Iterator[tuple[TrackerPair, TrackerPair]]:
    """Two trackers, each with its own store, on one database."""
    a, b = TrackerPair(PgStore(pg_dsn)), TrackerPair(PgStore(pg_dsn))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_placeholders_are_translated_outside_quotes_only() -> None:
    assert to_pg("SELECT ? WHERE a=? AND b LIKE 'x%?' AND \"c?\"=?") == (
        "SELECT %s WHERE a=%s AND b LIKE 'x%%?' AND \"c?\"=%s"
    )
    assert to_pg("SELECT 'it''s ?', ?") == "SELECT 'it''s ?', %s"


def test_two_trackers_see_each_others_committed_writes(two: tuple[TrackerPair, TrackerPair]) -> None:
    a, b = two
    a.user("alice")
    b.tokens["alice"] = a.tokens["alice"]  # a session made at one tracker is good at any
    b.ok(P.OP_CREATE_GROUP, {"group": "films"}, as_user="alice")
    groups = a.ok(P.OP_LIST_GROUPS, as_user="alice")["items"]
    assert [(g["name"], g["role"]) for g in groups] == [("films", "admin")]
    b.refused(Code.USER_EXISTS, P.OP_CREATE_USER, {"user": "alice", "password": "x"})


def test_a_write_retried_at_another_tracker_gets_the_first_reply(
    two: tuple[TrackerPair, TrackerPair],
) -> None:
    a, b = two
    req = a.request(P.OP_CREATE_USER, {"user": "alice", "password": "pw"}, cid="peer-1", rid=7)
    first = a.batch(req.encode())[0]
    assert Reply.decode(first).ok
    assert b.batch(req.encode())[0] == first  # the reply was lost; the client failed over


def test_an_open_batch_is_invisible_to_other_trackers_and_holds_theirs_back(pg_dsn: str) -> None:
    one, other = PgStore(pg_dsn), PgStore(pg_dsn)
    try:
        one.begin()
        one.run("INSERT INTO groups VALUES (?,?,0)", "films", "alice")
        assert other.all("SELECT name FROM groups") == []
        started = threading.Event()
        thread = threading.Thread(target=lambda: (other.begin(), started.set()))
        thread.start()
        assert not started.wait(0.2)  # batches run one at a time, like SQLite's
        one.commit()
        assert started.wait(5.0)
        thread.join()
        assert other.all("SELECT name FROM groups") == [("films",)]
        other.commit()
    finally:
        one.close()
        other.close()


def test_a_batch_with_a_failed_statement_never_commits_quietly(pg_dsn: str) -> None:
    db = PgStore(pg_dsn)
    try:
        db.begin()
        db.run("INSERT INTO groups VALUES (?,?,0)", "films", "alice")
        with pytest.raises(StoreError):
            db.run("INSERT INTO groups VALUES (?,?,0)", "films", "bob")
        with pytest.raises(StoreError, match="nothing was committed"):
            db.commit()
        db.rollback()  # what the core does after a failed commit: nothing left to undo
        assert db.all("SELECT name FROM groups") == []
    finally:
        db.close()


def test_trackers_starting_together_on_an_empty_database_create_it_once(pg_cluster: PgCluster) -> None:
    dsn = pg_cluster.create_database("empty_race")
    gate = threading.Barrier(4)
    stores: list[PgStore] = []
    errors: list[StoreError] = []

    def start() -> None:
        gate.wait()
        try:
            stores.append(PgStore(dsn))
        except StoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert len(stores) == 4
        assert stores[0].all("SELECT name, value FROM meta") == [("schema_version", str(SCHEMA_VERSION))]
    finally:
        for s in stores:
            s.close()


def test_a_tracker_survives_the_server_restarting(pg_cluster: PgCluster, pg_dsn: str) -> None:
    t = TrackerPair(PgStore(pg_dsn))
    try:
        t.user("alice")
        t.ok(P.OP_CREATE_GROUP, {"group": "films"}, as_user="alice")
        # Lend out and give back every pooled connection, so all of them are stale afterwards.
        t.store.begin()
        t.store.commit()
        pg_cluster.restart()
        failures = 0
        for _ in range(3):
            reply = t.call(P.OP_LIST_GROUPS, as_user="alice")
            if reply.error is not None:
                assert reply.error.code == Code.INTERNAL
                failures += 1
                continue
            assert [g["name"] for g in reply.result["items"]] == ["films"]
        assert failures <= 1
        t.ok(P.OP_CREATE_GROUP, {"group": "music"}, as_user="alice")
        assert t.store.one("SELECT count(*) FROM groups") == (2,)  # outside a batch too
    finally:
        t.close()


def test_after_a_server_crash_presence_is_empty_and_the_rest_is_kept(
    pg_cluster: PgCluster, pg_dsn: str
) -> None:
    t = TrackerPair(PgStore(pg_dsn))
    try:
        t.user("alice")
        t.online("alice", 7001)
        assert t.store.one("SELECT count(*) FROM online") == (1,)
        # The test cluster runs with synchronous_commit=off, so a crash may lose the last
        # ~0.6 s of commits; a checkpoint writes them out first, as a durable server would have.
        t.store.run("CHECKPOINT")
        pg_cluster.restart(mode="immediate")
        t.call(P.OP_LIST_GROUPS, as_user="alice")  # may fail once: its connection was cut
        assert t.ok(P.OP_LIST_GROUPS, as_user="alice") == {"items": [], "next": None}  # session kept
        assert t.store.one("SELECT count(*) FROM online") == (0,)  # peers announce again
    finally:
        t.close()


def test_an_unreachable_server_is_a_store_error(pg_cluster: PgCluster) -> None:
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot use the PostgreSQL database"):
        PgStore(f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/no_such_db", timeout=2)
    assert time.monotonic() - started < 2


def test_handing_out_holders_another_tracker_is_counting_does_not_wait_for_it(pg_dsn: str) -> None:
    """The handed-out counts only spread the load: a second tracker skips the rows the first
    is counting in its open batch instead of queueing behind its commit (reads through two
    trackers gained 1.14x over one while they did)."""
    one, other = PgStore(pg_dsn), PgStore(pg_dsn)
    key = ("films", "movie.mkv")
    try:
        first, second = Presence(one, expiry=5.0, tracker="t1"), Presence(other, expiry=5.0, tracker="t2")
        one.begin(exclusive=False)
        for i in range(3):
            s = f"s{i}".encode()
            first.announce(Online(s, f"u{i}", f"k{i}", f"tcp://127.0.0.1:{7000 + i}", False), b"r", 1.0)
            first.serve(s, key, None)
        one.commit()
        rows = first.holders(key)
        one.begin(exclusive=False)
        first.handed_out(key, rows[:2])  # rows 0 and 1 stay locked until this batch commits
        other.begin(exclusive=False)
        done = threading.Event()
        thread = threading.Thread(target=lambda: (second.handed_out(key, rows), done.set()))
        thread.start()
        assert done.wait(5.0), "the second tracker waited for the first one's commit"
        thread.join()
        other.commit()
        one.commit()
        assert [r.handed for r in second.holders(key)] == [1, 1, 1]  # row 2 by the second only
    finally:
        one.close()
        other.close()
