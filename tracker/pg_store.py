"""The shared store: one PostgreSQL database that several trackers use at once.

Trackers that keep their state here hold none of their own, so any of them can answer any
request. The rules' SQL is the SQLite store's, ``?`` placeholders included; this store
translates it once per distinct text. A batch borrows one pooled connection from ``begin`` to
``commit``/``rollback``; a connection that broke (server restart, network) is thrown away, and
the pool checks the one it lends next, so a lost connection costs at most the batch that was
using it. Statements run outside a batch are each their own transaction (autocommit), as with
SQLite.

The rules check, then write (``create_user`` looks for the name before inserting it), which is
safe in SQLite because ``BEGIN IMMEDIATE`` lets one batch write at a time. With
``serialize=True`` (the default) every batch first takes one transaction-level advisory lock,
so the batches of all trackers on a database run one after another in the same way; without
it, two trackers may race between a check and its write.

Presence tables are UNLOGGED (no WAL; PostgreSQL empties them after a crash, and heartbeats
fill them again). Every psycopg error becomes ``StoreError``. Like the SQLite store, one store
serves one thread.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg_pool import ConnectionPool

from .schema import SCHEMA_VERSION, durable_ddl, presence_ddl
from .store import Row, SchemaMismatch, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]
Cursor = psycopg.Cursor[tuple[Any, ...]]

# Keys of pg_advisory_xact_lock: any bigint unique to this program ("torrent" + a purpose).
SCHEMA_LOCK = 0x746F7272656E7401
BATCH_LOCK = 0x746F7272656E7402

CHANNEL = "torrent_push"  # NOTIFY channel: what one tracker asks the others to push

_QUOTED = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")""")


@functools.lru_cache(maxsize=1024)
def to_pg(sql: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s``, a literal ``%`` as ``%%``."""
    parts = _QUOTED.split(sql)  # odd indices are quoted literals or identifiers
    out = []
    for i, part in enumerate(parts):
        escaped = part.replace("%", "%%")
        out.append(escaped if i % 2 else escaped.replace("?", "%s"))
    return "".join(out)


def _lost(conn: Conn, exc: psycopg.Error) -> bool:
    """Whether a failed connection must be thrown away rather than used again."""
    return conn.broken or conn.closed or isinstance(exc, psycopg.OperationalError)


class PgStore:
    dialect = "postgresql"

    def __init__(self, conninfo: str, *, serialize: bool = True, timeout: float = 10.0) -> None:
        """Connect (any libpq URL or ``key=value`` conninfo), then create or check the schema."""
        self.conninfo = conninfo
        self._serialize = serialize
        self._conn: Conn | None = None  # the batch's connection, between begin and commit/rollback
        self._broken = False  # the batch's connection failed and must not go back into use
        try:
            self._create(conninfo, timeout)
        except psycopg.Error as exc:
            raise StoreError(f"cannot use the PostgreSQL database: {exc}") from None
        # One connection: a tracker runs one batch at a time, and after a server restart a single
        # stale connection is replaced at once (with several, the pool's check backs off ~1 s).
        self.pool: ConnectionPool[Conn] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=1,
            timeout=timeout,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,
            name="tracker-store",
            open=False,
        )
        self.pool.open()

    def _create(self, conninfo: str, timeout: float) -> None:
        """Create the tables on first use, else check their version; one tracker at a time."""
        wait = max(1, round(timeout))
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=wait) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            # Existing tables are left alone: CREATE INDEX IF NOT EXISTS would still lock them.
            if conn.execute("SELECT to_regclass('meta')").fetchone() == (None,):
                for stmt in durable_ddl(self.dialect) + presence_ddl(self.dialect):
                    conn.execute(stmt)
                log.info("created the tracker's tables (schema version %d)", SCHEMA_VERSION)
            row = conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', %s)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise SchemaMismatch(str(row[0]), SCHEMA_VERSION)

    # --- the shared clock, and notifications between trackers -----------------------------
    def clock(self) -> float:
        """The database server's time: every tracker's leases and grants on one clock (inside a
        batch, the batch's start: one timestamp for all of it)."""
        row = self.one("SELECT extract(epoch FROM now())::float8")
        return float(row[0]) if row else time.time()

    def notify(self, payload: str) -> None:
        self.run("SELECT pg_notify(?, ?)", CHANNEL, payload)

    def listener(self) -> PgListener:
        return PgListener(self.conninfo)

    # --- transactions ---------------------------------------------------------------------
    def begin(self, exclusive: bool = True) -> None:
        if self._conn is not None:
            raise StoreError("a transaction is already open")
        conn = self._borrow()
        sql = "BEGIN"
        if exclusive and self._serialize:
            sql += f"; SELECT pg_advisory_xact_lock({BATCH_LOCK})"
        try:
            conn.execute(sql)
        except psycopg.Error as exc:
            self._give_back(conn, broken=True)
            raise StoreError(str(exc)) from exc
        self._conn, self._broken = conn, False

    def commit(self) -> None:
        conn = self._in_batch()
        if self._broken or conn.info.transaction_status == pq.TransactionStatus.INERROR:
            # COMMIT would quietly roll back: a statement of this batch failed.
            self.rollback()
            raise StoreError("a statement of this transaction failed; nothing was committed")
        self._conn = None
        try:
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._broken = True
            raise StoreError(str(exc)) from exc
        finally:
            self._give_back(conn, broken=self._broken)

    def rollback(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return  # nothing open (commit already gave the connection back)
        try:
            if not self._broken:
                conn.execute("ROLLBACK")
        except psycopg.Error as exc:
            self._broken = True
            raise StoreError(str(exc)) from exc
        finally:
            self._give_back(conn, broken=self._broken)

    def savepoint(self) -> None:
        self._batch_statement("SAVEPOINT req")

    def release(self) -> None:
        self._batch_statement("RELEASE SAVEPOINT req")

    def rollback_to(self) -> None:
        self._batch_statement("ROLLBACK TO SAVEPOINT req")

    # --- statements -----------------------------------------------------------------------
    def one(self, sql: str, *params: Any) -> Row | None:
        return self._statement(sql, params, lambda cur: cur.fetchone())

    def all(self, sql: str, *params: Any) -> list[Row]:
        return self._statement(sql, params, lambda cur: cur.fetchall())

    def run(self, sql: str, *params: Any) -> int:
        return self._statement(sql, params, lambda cur: cur.rowcount)

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        query = to_pg(sql)
        self._with_connection(lambda conn: conn.cursor().executemany(query, rows))

    def close(self) -> None:
        try:
            self.rollback()
        except StoreError:
            log.exception("rollback on close failed")
        self.pool.close()

    # --- connections ----------------------------------------------------------------------
    def _statement(self, sql: str, params: Sequence[Any], fetch: Callable[[Cursor], T]) -> T:
        query = to_pg(sql)
        return self._with_connection(lambda conn: fetch(conn.execute(query, params)))

    def _batch_statement(self, sql: str) -> None:
        self._with_connection(lambda conn: conn.execute(sql), batch_only=True)

    def _with_connection(self, work: Callable[[Conn], T], *, batch_only: bool = False) -> T:
        """Run ``work`` in the batch's transaction, or alone on a borrowed connection."""
        if self._conn is not None or batch_only:
            conn = self._in_batch()
            try:
                return work(conn)
            except psycopg.Error as exc:
                self._broken = self._broken or _lost(conn, exc)
                raise StoreError(str(exc)) from exc
        conn = self._borrow()
        broken = False
        try:
            return work(conn)
        except psycopg.Error as exc:
            broken = _lost(conn, exc)
            raise StoreError(str(exc)) from exc
        finally:
            self._give_back(conn, broken=broken)

    def _in_batch(self) -> Conn:
        if self._conn is None:
            raise StoreError("no transaction is open (call begin first)")
        return self._conn

    def _borrow(self) -> Conn:
        try:
            return self.pool.getconn()
        except psycopg.Error as exc:  # PoolTimeout, PoolClosed
            raise StoreError(f"no database connection: {exc}") from exc

    def _give_back(self, conn: Conn, *, broken: bool) -> None:
        if broken:
            log.warning("discarding a failed database connection; the pool opens a new one")
            conn.close()
        self.pool.putconn(conn)


class PgListener:
    """A dedicated autocommit connection that LISTENs for other trackers' notifications.

    NOTIFY is only a wake-up: what was sent while this connection was down is lost (PostgreSQL
    keeps no backlog for a listener that is gone), so whatever it carries must also be found by
    the slower safety net (downloads still ask for holders now and then; grants expire).
    """

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.conn: Conn | None = None
        self._connect()

    def _connect(self) -> None:
        try:
            self.conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=2)
            self.conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            log.warning("cannot listen for other trackers: %s", exc)
            self.conn = None

    def fileno(self) -> int:
        return self.conn.fileno() if self.conn is not None else -1

    def drain(self) -> list[str]:
        if self.conn is None or self.conn.closed:
            self._connect()
            return []
        try:
            return [n.payload for n in self.conn.notifies(timeout=0)]
        except psycopg.Error as exc:
            log.warning("lost the notification connection: %s", exc)
            self.close()
            return []

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
