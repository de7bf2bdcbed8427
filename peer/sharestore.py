"""A user's share list on disk: one SQLite file in the peer's home, one row per share.

Recording or forgetting a share is one row and one commit, whatever the number of shares (the
list used to be rewritten whole at each upload). The row carries the file's piece digests, so
logging in again serves the file without hashing it again. A full or failing disk surfaces as
a LocalError with a clear message, never as a crash.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from messages.errors import Code, LocalError
from messages.records import FileMeta

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shares (
    grp TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL, piece_size INTEGER NOT NULL,
    root TEXT NOT NULL, path TEXT NOT NULL, size_on_disk INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    digests BLOB NOT NULL, PRIMARY KEY (grp, name));
CREATE INDEX IF NOT EXISTS shares_by_root ON shares (root, piece_size);
"""


@dataclass(frozen=True, slots=True)
class Saved:
    meta: FileMeta
    path: str
    size_on_disk: int
    mtime_ns: int
    digests: bytes


def local_error(exc: BaseException, what: str) -> LocalError:
    """A disk problem as the user should read it."""
    text = str(exc)
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if full or "disk is full" in text:
        return LocalError(Code.NO_SPACE, f"{what}: no space left on the disk")
    return LocalError(Code.IO_ERROR, f"{what}: {getattr(exc, 'strerror', None) or text}")


class ShareStore:
    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, "shares.db")
        try:
            os.makedirs(folder, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise local_error(exc, f"cannot open the share list {self.path}") from None

    def put(self, s: Saved) -> None:
        m = s.meta
        self._run(
            "INSERT OR REPLACE INTO shares VALUES (?,?,?,?,?,?,?,?,?)",
            (m.group, m.name, m.size, m.piece_size, m.root, s.path, s.size_on_disk, s.mtime_ns, s.digests),
        )

    def delete(self, key: tuple[str, str]) -> None:
        self._run("DELETE FROM shares WHERE grp=? AND name=?", key)

    def delete_group(self, group: str) -> None:
        self._run("DELETE FROM shares WHERE grp=?", (group,))

    def _run(self, sql: str, params: tuple[object, ...]) -> None:
        try:
            self.db.execute(sql, params)
        except sqlite3.Error as exc:
            raise local_error(exc, f"cannot update the share list {self.path}") from None

    def all(self) -> Iterator[Saved]:
        rows = self.db.execute(
            "SELECT grp, name, size, piece_size, root, path, size_on_disk, mtime_ns, digests FROM shares"
        )
        for g, n, size, ps, root, path, sod, mtime, digests in rows:
            meta = FileMeta(group=g, name=n, size=size, piece_size=ps, root=root)
            yield Saved(meta, path, sod, mtime, bytes(digests))

    def digests_of(self, root: str, piece_size: int) -> bytes | None:
        """Digests of any file we share with this content (the same file in another group)."""
        row = self.db.execute(
            "SELECT digests FROM shares WHERE root=? AND piece_size=? LIMIT 1", (root, piece_size)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        self.db.close()
