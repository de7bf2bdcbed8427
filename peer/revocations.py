"""Grants a seeder must refuse: revocations the tracker pushed, kept as long as a grant lives.

The presence thread adds them as pushes arrive and the seeder thread checks every request
against them, so the list has a lock (and no sockets). A grant issued before a revocation that
covers it is refused; one issued after (a member who came back) is not.
"""

from __future__ import annotations

import threading
import time

from messages.protocol import GRANT_LIFETIME
from messages.records import Grant, Revocation


class Revocations:
    def __init__(self, keep: float = GRANT_LIFETIME) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._items: list[Revocation] = []

    def add(self, rev: Revocation) -> None:
        with self._lock:
            self._items.append(rev)

    def covering(self, grant: Grant) -> Revocation | None:
        with self._lock:
            return next((r for r in self._items if r.covers(grant)), None)

    def prune(self, now: float | None = None) -> None:
        """Forget revocations older than any grant they could cover."""
        now = time.time() if now is None else now
        with self._lock:
            self._items = [r for r in self._items if r.at > now - self.keep]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
