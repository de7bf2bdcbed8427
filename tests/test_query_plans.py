"""Every query the tracker runs is answered from an index: none reads a whole table.

A workload that reaches every operation (and the housekeeping tick) runs through the tracker
core on a store that records each distinct statement with the parameters it first ran with;
then each statement's plan is asked of the database itself: SQLite's EXPLAIN QUERY PLAN must not
SCAN a table, and PostgreSQL's EXPLAIN, with sequential scans turned off, must still find a plan
without one (with scans allowed it would pick them on tables this small). A query added later
without an index fails here, on both stores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from stores import Backend
from tracker_pair import TrackerPair, file_meta, key_of

from messages import protocol as P
from messages.bitfield import Bitfield
from tracker.store import Row, Store

# Tables with a row or so each (the schema version; one row per tracker): scanning them is free.
TINY = {"meta", "trackers"}


class Recording:
    """A store that remembers each distinct statement and its first parameters."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.dialect = inner.dialect
        self.seen: dict[str, Sequence[Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def one(self, sql: str, *params: Any) -> Row | None:
        self.seen.setdefault(sql, params)
        return self.inner.one(sql, *params)

    def all(self, sql: str, *params: Any) -> list[Row]:
        self.seen.setdefault(sql, params)
        return self.inner.all(sql, *params)

    def run(self, sql: str, *params: Any) -> int:
        self.seen.setdefault(sql, params)
        return self.inner.run(sql, *params)

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            self.seen.setdefault(sql, rows[0])
        self.inner.many(sql, rows)


def workload(t: TrackerPair) -> None:
    """Every operation once or more, the way peers use them."""
    for name in ("alice", "bob", "carol", "dave"):
        t.user(name)
    t.group("alice", "films", "bob", "carol")
    t.ok(P.OP_JOIN_GROUP, {"group": "films"}, as_user="dave")
    t.ok(P.OP_LIST_REQUESTS, {"group": "films"}, as_user="alice")
    t.ok(P.OP_REJECT_REQUEST, {"group": "films", "user": "dave"}, as_user="alice")
    t.ok(P.OP_LIST_GROUPS, as_user="bob")
    meta, _ = file_meta()
    t.online("bob", 7002)
    t.share("bob", meta)
    t.online("bob", 7002, [{"group": "films", "file": "movie.mkv"}])
    t.online("carol", 7003)
    have = Bitfield.from_indices(meta.num_pieces, [0]).encode()
    t.ok(P.OP_PROGRESS, {"group": "films", "file": "movie.mkv", "have": have}, as_user="carol")
    t.ok(
        P.OP_ANNOUNCE, {"endpoint": "tcp://h:1", "plain": False, "shares": [], "more": True}, as_user="carol"
    )
    args = {"group": "films", "file": "movie.mkv"}
    t.ok(P.OP_HOLDERS, args | {"known": [key_of("bob")]}, as_user="alice")
    t.ok(P.OP_LIST_FILES, {"group": "films"}, as_user="alice")
    t.ok(P.OP_FILE_INFO, args, as_user="alice")
    t.ok(P.OP_HEARTBEAT, as_user="bob")
    for user in ("alice", "carol"):
        t.ok(P.OP_REPORT, args | {"holder": key_of("bob"), "piece": 0}, as_user=user)
    t.ok(P.OP_VERIFIED, args, as_user="bob")
    t.ok(P.OP_STOP_SHARE, args, as_user="bob")
    t.share("bob", meta)
    t.ok(P.OP_REMOVE_FILE, args, as_user="alice")
    t.ok(P.OP_REMOVE_MEMBER, {"group": "films", "user": "carol"}, as_user="alice")
    t.ok(P.OP_LEAVE_GROUP, {"group": "films"}, as_user="alice")
    t.ok(P.OP_LOGOUT, as_user="bob")
    t.clock.now += 60
    t.core.tick()


def scans(store: Store, sql: str, params: Sequence[Any]) -> list[str]:
    """The tables a statement reads in full, according to the database's planner."""
    if store.dialect == "sqlite":
        plan = [str(r[-1]) for r in store.all("EXPLAIN QUERY PLAN " + sql, *params)]
        found = [m.group(1) for line in plan if (m := re.match(r"SCAN (\w+)", line))]
    else:
        store.begin()
        try:
            # The tables are tiny here: without these, scans and hash joins win on cost alone.
            for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
                store.run(f"SET LOCAL {setting} = off")
            row = store.one("EXPLAIN (FORMAT JSON) " + sql, *params)
        finally:
            store.rollback()
        assert row is not None
        plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
        found = list(_full_reads(plan[0]["Plan"]))
    return [table for table in found if table not in TINY]


def _full_reads(node: dict[str, Any]) -> Iterator[str]:
    """Tables a PostgreSQL plan reads in full: a sequential scan, or an index scan with no
    condition on the index (a walk of all of it)."""
    kind = node.get("Node Type", "")
    if kind == "Seq Scan" or ("Index" in kind and "Scan" in kind and "Index Cond" not in node):
        yield node.get("Relation Name") or node.get("Index Name", "?")
    for child in node.get("Plans", []):
        yield from _full_reads(child)


def test_no_query_of_the_tracker_reads_a_whole_table(backend: Backend) -> None:
    store = Recording(backend.open())
    t = TrackerPair(store)  # type: ignore[arg-type]
    try:
        workload(t)
        assert len(store.seen) > 40  # the workload reached the tracker's queries
        full = {
            sql: tables for sql, params in store.seen.items() if (tables := scans(store.inner, sql, params))
        }
        assert not full, "\n\n".join(f"{tables}: {' '.join(sql.split())}" for sql, tables in full.items())
    finally:
        t.close()


def test_the_check_sees_a_full_scan(backend: Backend) -> None:
    """The test above can fail: an unindexed query is caught."""
    store = backend.open()
    try:
        assert scans(store, "SELECT * FROM users WHERE created > ?", [0.0]) == ["users"]
    finally:
        store.close()
