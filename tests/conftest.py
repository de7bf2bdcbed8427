from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from harness import Swarm
from stores import Backend, Emptier
from tracker_pair import TrackerPair

from broker.keys import start_authenticator
from broker.sockets import new_context, term_context
from launch.pgcluster import PgCluster, PostgresMissing
from tracker.pg_store import PgStore


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    """A context with the CURVE authenticator running; every socket must be closed by the end."""
    c = new_context()
    auth = start_authenticator(c)
    yield c
    auth.stop()
    assert term_context(c), "sockets left open"


@pytest.fixture
def swarm(tmp_path) -> Iterator[Swarm]:
    """A running tracker; peers are added by the test. Every process is killed at the end."""
    s = Swarm(str(tmp_path))
    s.start_tracker()
    try:
        yield s
    finally:
        s.close()


# --- the tracker's stores: SQLite and PostgreSQL -------------------------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL server for the whole run (non-durable, test-only settings)."""
    try:
        cluster = PgCluster(fast=True)
    except PostgresMissing as exc:
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_emptier(pg_cluster: PgCluster) -> Iterator[Emptier]:
    # Not in byte order, unlike the cluster's default: results must not depend on that.
    dsn = pg_cluster.create_database("tracker_tests", icu_locale="en-US")
    PgStore(dsn).close()  # creates the tables
    emptier = Emptier(dsn)
    try:
        yield emptier
    finally:
        emptier.close()


@pytest.fixture
def pg_dsn(pg_emptier: Emptier) -> str:
    """The libpq URL of the test database, emptied (one database per run, not per test)."""
    pg_emptier.empty()
    return pg_emptier.dsn


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """An empty database of either kind; stores opened on it are closed at the end."""
    if request.param == "sqlite":
        b = Backend("sqlite", str(tmp_path / "t.db"))
    else:
        b = Backend("postgresql", request.getfixturevalue("pg_dsn"))
    try:
        yield b
    finally:
        b.close_all()


@pytest.fixture
def t(backend: Backend) -> Iterator[TrackerPair]:
    """A tracker core on an empty database of either kind, driven with frames (no sockets)."""
    pair = TrackerPair(backend.open())
    try:
        yield pair
    finally:
        pair.close()


_databases = iter(range(1, 10**6))


@pytest.fixture
def cluster(tmp_path: Path, pg_cluster: PgCluster) -> Iterator[Swarm]:
    """Two trackers on a fresh PostgreSQL database (peers get both, in order)."""
    s = Swarm(str(tmp_path))
    s.cluster(pg_cluster.create_database(f"cluster_{next(_databases)}"))
    try:
        yield s
    finally:
        s.close()
