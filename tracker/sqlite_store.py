"""The embedded store: one SQLite file, plus an in-memory database for presence.

WAL with synchronous=FULL: a commit is on disk (WAL fsynced) when COMMIT returns, and the
tracker replies only after that, so what it acknowledged survives kill -9 and power loss alike.
Presence (who is online, what they serve) lives in an attached ``:memory:`` database: it is
rebuilt by heartbeats after a restart, costs no fsync, and still commits or rolls back with the
batch that changed it.

A damaged file is refused at start (an existing empty file, a failed quick_check), never
silently replaced by an empty database; damage found while running stops the tracker. Backups
go through SQLite's online backup API, so nobody needs to copy a live file and its -wal.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any

from .schema import SCHEMA_VERSION, durable_ddl, presence_ddl
from .store import Row, SchemaMismatch, StoreError

_DAMAGE = ("malformed", "not a database", "corrupt")


def _error(exc: sqlite3.Error, where: str = "") -> StoreError:
    text = f"{where}{exc}"
    if any(word in str(exc) for word in _DAMAGE):
        return StoreError(
            f"{text}: the database file is damaged; check it with --check and restore a backup", fatal=True
        )
    return StoreError(text)


def _refuse_empty_file(path: str) -> None:
    if os.path.exists(path) and os.path.getsize(path) == 0:
        raise StoreError(
            f"{path} is an empty file, not a tracker database; if this is meant to be a new tracker, "
            "remove it (a missing file is created)",
            fatal=True,
        )


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        _refuse_empty_file(path)
        self.path = path
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._quick_check()
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("ATTACH DATABASE ':memory:' AS live")
            self._create()
        except sqlite3.Error as exc:
            raise _error(exc, f"{path}: ") from None

    def _quick_check(self) -> None:
        problems = [r[0] for r in self.db.execute("PRAGMA main.quick_check(5)")]
        if problems != ["ok"]:
            shown = "; ".join(problems[:3])
            raise StoreError(f"{self.path} is damaged ({shown}); restore it from a backup", fatal=True)

    def _version(self) -> str | None:
        """The schema version of an existing database (None when it is new)."""
        tables = {r[0] for r in self.db.execute("SELECT name FROM main.sqlite_master WHERE type='table'")}
        if "meta" in tables:
            row = self.db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            return None if row is None else str(row[0])
        return "0" if "users" in tables else None  # an older tracker's, from before versions

    def _create(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self._version()
            if version is not None and version != str(SCHEMA_VERSION):
                raise SchemaMismatch(version, SCHEMA_VERSION)
            for stmt in durable_ddl(self.dialect):
                self.db.execute(stmt)
            for stmt in presence_ddl(self.dialect, "live."):
                self.db.execute(stmt)
            if version is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # --- one tracker: its own clock, nobody to notify -------------------------------------
    def clock(self) -> float:
        return time.time()

    def notify(self, payload: str) -> None:
        pass

    def listener(self) -> None:
        return None

    # --- transactions ---------------------------------------------------------------------
    def begin(self, exclusive: bool = True) -> None:
        self._exec("BEGIN IMMEDIATE")  # one tracker per file: every batch is exclusive anyway

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
            raise _error(exc) from exc

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
            raise _error(exc) from exc

    def close(self) -> None:
        """Close, first folding the WAL into the main file so the file alone is complete."""
        try:
            self.db.execute("PRAGMA main.wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.db.close()


def check(path: str) -> list[str]:
    """A full integrity check of a tracker database: its problems, or [] when it is sound."""
    if not os.path.exists(path):
        return [f"{path} does not exist"]
    if os.path.getsize(path) == 0:
        return [f"{path} is an empty file, not a tracker database"]
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
            if (
                problems == ["ok"]
                and not conn.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone()
            ):
                problems = ["no tracker tables in it"]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return [str(exc)]
    return [] if problems == ["ok"] else problems


def backup(path: str, dest: str) -> None:
    """Copy a (possibly running) tracker's database to ``dest`` with SQLite's online backup API.

    Consistent even while the tracker writes (WAL included); ``dest`` must not exist yet.
    """
    if os.path.exists(dest):
        raise StoreError(f"{dest} already exists; choose a new file for the backup")
    tmp = f"{dest}.tmp-{os.getpid()}"
    try:
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            out = sqlite3.connect(tmp)
            try:
                src.backup(out)
            finally:
                out.close()
        finally:
            src.close()
        os.replace(tmp, dest)
    except (sqlite3.Error, OSError) as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise StoreError(f"backup of {path} to {dest} failed: {exc}") from None
    problems = check(dest)
    if problems:
        raise StoreError(f"the backup in {dest} does not check out: {'; '.join(problems[:3])}")
