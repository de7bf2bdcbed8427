"""The embedded store: one SQLite file, plus an in-memory database for presence.

WAL with synchronous=FULL: a commit is on disk (WAL fsynced) when COMMIT returns, and the
tracker replies only after that, so what it acknowledged survives kill -9 and power loss alike.
Presence (who is online, what they serve) lives in an attached ``:memory:`` database: it is
rebuilt by heartbeats after a restart, costs no fsync, and still commits or rolls back with the
batch that changed it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from .schema import SCHEMA_VERSION, durable_ddl, presence_ddl
from .store import Row, SchemaMismatch, StoreError

__all__ = ["SchemaMismatch", "SqliteStore"]


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("ATTACH DATABASE ':memory:' AS live")
            self._create()
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {exc}") from None

    def _create(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in durable_ddl(self.dialect):
                self.db.execute(stmt)
            for stmt in presence_ddl(self.dialect, "live."):
                self.db.execute(stmt)
            row = self.db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise SchemaMismatch(f"database schema version {row[0]}, this tracker needs {SCHEMA_VERSION}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # --- transactions ---------------------------------------------------------------------
    def begin(self) -> None:
        self._exec("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._exec("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self._exec("ROLLBACK")

    def savepoint(self) -> None:
        self._exec("SAVEPOINT req")

    def release(self) -> None:
        self._exec("RELEASE req")

    def rollback_to(self) -> None:
        self._exec("ROLLBACK TO req")

    # --- statements -----------------------------------------------------------------------
    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def one(self, sql: str, *params: Any) -> Row | None:
        return self._exec(sql, params).fetchone()

    def all(self, sql: str, *params: Any) -> list[Row]:
        return self._exec(sql, params).fetchall()

    def run(self, sql: str, *params: Any) -> int:
        return self._exec(sql, params).rowcount

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self.db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    def close(self) -> None:
        self.db.close()
