"""The one interface the tracker's rules use to reach their database.

Rules write plain SQL with ``?`` placeholders that both stores accept (SQLite takes it as is,
PostgreSQL's store translates it); each store supplies transactions, savepoints and a clock.
Durable tables and the presence tables (who is online, what they serve) live in the same
transaction, so a batch that fails to commit leaves no trace in either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

Row = tuple[Any, ...]


class StoreError(Exception):
    """The database failed (I/O, corruption, lost connection): nothing of the batch is stored."""


class SchemaMismatch(StoreError):
    """The database was made for another schema version than this tracker's."""


class Store(Protocol):
    dialect: str  # "sqlite" or "postgresql"

    def begin(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def savepoint(self) -> None: ...
    def release(self) -> None: ...
    def rollback_to(self) -> None: ...

    def one(self, sql: str, *params: Any) -> Row | None: ...
    def all(self, sql: str, *params: Any) -> list[Row]: ...
    def run(self, sql: str, *params: Any) -> int:
        """Execute a statement; the number of rows it changed."""
        ...

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...
    def close(self) -> None: ...
