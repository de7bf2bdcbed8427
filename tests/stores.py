"""The two places a tracker can keep its state, for tests that must behave the same on both.

A ``Backend`` names one database (a SQLite file, or a PostgreSQL database of the session's
throwaway cluster); ``open()`` is a tracker starting on it, so calling it again after closing
the first store is a tracker restarting on the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tracker.pg_store import PgStore
from tracker.sqlite_store import SqliteStore
from tracker.store import Store

STORE_CLASSES: dict[str, type[Any]] = {"sqlite": SqliteStore, "postgresql": PgStore}


@dataclass
class Backend:
    name: str  # "sqlite" or "postgresql"
    target: str  # the SQLite file, or the libpq URL of the database
    opened: list[Store] = field(default_factory=list)

    def open(self, cls: type[Any] | None = None) -> Store:
        """A new store on this database (``cls``: a subclass of the backend's store class)."""
        store: Store = (cls or STORE_CLASSES[self.name])(self.target)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()
