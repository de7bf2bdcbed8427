"""Where the benchmarked trackers keep their state: a SQLite file or a PostgreSQL database.

Why one small interface: the control-plane and push benches run the same phases against
"SQLite, one tracker" and "PostgreSQL, one or more trackers", and each needs the same four things
from the store: a ``--db`` value for the trackers, a fresh empty state, the CPU the store's own
processes use (PostgreSQL's server does work that SQLite does inside the tracker), and, after a
crash, which acknowledged writes are really there.

PostgreSQL runs in a throwaway ``launch.pgcluster.PgCluster`` with its durable defaults
(fsync on, synchronous_commit on): ``fast=True`` would make "no acknowledged write lost"
meaningless. One cluster serves every row of a run; each row gets a new database.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sqlite3
from typing import Protocol

import psycopg

from launch.pgcluster import PgCluster

# The benchmark's writes: created groups are named c*, pending joins target groups j*.
_COUNT_GROUPS = "SELECT name, admin FROM groups WHERE name LIKE 'c%'"
_COUNT_JOINS = "SELECT grp, uname FROM requests WHERE grp LIKE 'j%'"


def proc_cpu(pid: int) -> float:
    """User + system seconds of another process, all threads, from /proc (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(parent: int) -> list[int]:
    """Direct children of ``parent`` (PostgreSQL's backends are children of the postmaster)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError), open(f"/proc/{entry}/stat", encoding="ascii") as f:
            if int(f.read().rsplit(")", 1)[1].split()[1]) == parent:
                out.append(int(entry))
    return out


class BenchStore(Protocol):
    """What a bench needs of the trackers' store."""

    kind: str  # "sqlite" or "postgres"
    db: str  # the trackers' --db

    def cpu_s(self) -> float:
        """CPU seconds used so far by the store's own processes (0 for SQLite: in the tracker)."""
        ...

    def crash(self) -> None:
        """Crash the store's server where it has one (PostgreSQL: an immediate stop, WAL recovery)."""
        ...

    def writes(self) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """The benchmark's groups (name, admin) and pending joins (group, user) now stored."""
        ...


class SqliteBench:
    """A fresh SQLite file ``workdir/tracker.db``."""

    kind = "sqlite"

    def __init__(self, workdir: str) -> None:
        os.makedirs(workdir, exist_ok=True)
        self.db = os.path.join(workdir, "tracker.db")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.db + suffix)

    def cpu_s(self) -> float:
        return 0.0

    def crash(self) -> None:
        """Nothing to crash: the tracker is the database (its SIGKILL is the crash)."""

    def writes(self) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        conn = sqlite3.connect(pathlib.Path(self.db).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            return set(conn.execute(_COUNT_GROUPS)), set(conn.execute(_COUNT_JOINS))
        finally:
            conn.close()


class PostgresBench:
    """A new database ``name`` in ``cluster`` (which the caller owns and stops)."""

    kind = "postgres"

    def __init__(self, cluster: PgCluster, name: str) -> None:
        self.cluster = cluster
        self.db = cluster.create_database(name)

    def _postmaster(self) -> int:
        with open(os.path.join(self.cluster.data, "postmaster.pid"), encoding="ascii") as f:
            return int(f.readline())

    def cpu_s(self) -> float:
        """The postmaster and all its children: backends, WAL writer, checkpointer."""
        pm = self._postmaster()
        return proc_cpu(pm) + sum(proc_cpu(pid) for pid in children_of(pm))

    def crash(self) -> None:
        self.cluster.restart("immediate")

    def writes(self) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        with psycopg.connect(self.db, autocommit=True) as conn:
            groups = {(str(a), str(b)) for a, b in conn.execute(_COUNT_GROUPS)}
            joins = {(str(a), str(b)) for a, b in conn.execute(_COUNT_JOINS)}
        return groups, joins


def count_found(
    store: BenchStore, creates: list[tuple[str, str]], joins: list[tuple[str, str]]
) -> tuple[int, int]:
    """How many acknowledged writes the store holds, and how many benchmark writes it holds that
    were never acknowledged (committed, reply lost to the kill: allowed, clients retry)."""
    groups, requests = store.writes()
    found = sum(w in groups for w in creates) + sum(w in requests for w in joins)
    return found, len(groups) + len(requests) - found
