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
    """The database failed (I/O, corruption, lost connection): nothing of the batch is stored.

    ``fatal`` means retrying cannot help (the file is damaged): the tracker stops and says so
    rather than answer every request with an error while looking healthy.
    """

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


class SchemaMismatch(StoreError):
    """The database was made by a tracker of another schema version."""

    def __init__(self, found: str, needed: int) -> None:
        super().__init__(
            f"database schema version {found}, this tracker needs {needed}; start it on a new database",
            fatal=True,
        )


class Listener(Protocol):
    """Notifications other trackers sent through the database (PostgreSQL LISTEN)."""

    def fileno(self) -> int: ...
    def drain(self) -> list[str]:
        """The payloads waiting (reconnecting first if the connection was lost)."""
        ...

    def close(self) -> None: ...


class Store(Protocol):
    dialect: str  # "sqlite" or "postgresql"

    def clock(self) -> float:
        """Seconds on the clock every tracker of this store shares (leases, grants)."""
        ...

    def notify(self, payload: str) -> None:
        """Tell the other trackers, once the open transaction commits (nothing to do alone)."""
        ...

    def listener(self) -> Listener | None:
        """Where other trackers' notifications arrive; None for a store only one tracker uses."""
        ...

    def begin(self, exclusive: bool = True) -> None:
        """Open the batch's transaction; ``exclusive``: one at a time among the trackers of
        this store (batches with durable writes, whose checks-then-inserts must not race).
        Batches of reads and presence updates (rows of one session) run side by side."""
        ...

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
