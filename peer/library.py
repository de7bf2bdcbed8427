"""What this peer serves: complete shares and partial downloads, shared with the seeder thread.

The seeder reads it for every piece request and downloads write to it as pieces land, so it is
guarded by a lock (it holds no sockets) and hands out frozen snapshots (``Share``), never the
entries it mutates. Complete shares are recorded per user in the peer's home (``ShareStore``,
one row each), so logging in again brings them back; a file whose size or mtime changed since
it was shared is not served again. A share is recorded on disk before it is served, so a full
home disk refuses the share with a clear error instead of losing it later.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from messages.bitfield import Bitfield
from messages.errors import Code, LocalError
from messages.records import FileMeta

from .sharestore import Saved, ShareStore, local_error

log = logging.getLogger(__name__)
Key = tuple[str, str]  # (group, file)


@dataclass(frozen=True, slots=True)
class Share:
    """A snapshot of one entry, safe to read in any thread."""

    meta: FileMeta
    path: str
    digests: bytes
    complete: bool
    size_on_disk: int
    mtime_ns: int


@dataclass(slots=True)
class _Entry:
    meta: FileMeta
    path: str
    digests: bytes
    have: Bitfield | None  # None: complete
    size_on_disk: int = 0
    mtime_ns: int = 0

    def snapshot(self) -> Share:
        return Share(self.meta, self.path, self.digests, self.have is None, self.size_on_disk, self.mtime_ns)


class Library:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[Key, _Entry] = {}
        self._store: ShareStore | None = None

    # --- a user's saved shares ------------------------------------------------------------
    def load(self, folder: str) -> list[str]:
        """Load a user's saved shares; returns a note for each one no longer served."""
        store = ShareStore(folder)
        notes: list[str] = []
        items: dict[Key, _Entry] = {}
        for saved in store.all():
            meta = saved.meta
            try:
                st = os.stat(saved.path)
            except OSError as exc:
                notes.append(f"not serving [{meta.group}] {meta.name}: {saved.path}: {exc.strerror}")
                continue
            if (st.st_size, st.st_mtime_ns) != (
                saved.size_on_disk,
                saved.mtime_ns,
            ) or st.st_size != meta.size:
                notes.append(
                    f"not serving [{meta.group}] {meta.name}: {saved.path} changed since it was shared"
                )
                continue
            items[meta.key] = _Entry(meta, saved.path, saved.digests, None, st.st_size, st.st_mtime_ns)
        with self._lock:
            self._store, self._items = store, items
        return notes

    def unload(self) -> None:
        with self._lock:
            self._items = {}
            if self._store is not None:
                self._store.close()
            self._store = None

    # --- changes --------------------------------------------------------------------------
    def add_complete(self, meta: FileMeta, path: str, digests: bytes) -> None:
        """Serve a whole file from ``path``: recorded on disk first (LocalError if it cannot be)."""
        path = os.path.abspath(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise local_error(exc, f"cannot read {path}") from None
        entry = _Entry(meta, path, digests, None, st.st_size, st.st_mtime_ns)
        with self._lock:
            if self._store is None:
                raise LocalError(Code.NOT_LOGGED_IN, "log in first")
            self._store.put(Saved(meta, path, st.st_size, st.st_mtime_ns, digests))
            self._items[meta.key] = entry

    def add_partial(self, meta: FileMeta, path: str, digests: bytes, have: Bitfield) -> None:
        with self._lock:
            self._items[meta.key] = _Entry(meta, os.path.abspath(path), digests, have.copy())

    def mark(self, key: Key, piece: int) -> None:
        with self._lock:
            entry = self._items.get(key)
            if entry is not None and entry.have is not None:
                entry.have.add(piece)

    def remove(self, key: Key) -> Share | None:
        """Stop serving ``key``; a complete share is also forgotten on disk."""
        with self._lock:
            entry = self._items.pop(key, None)
            if entry is not None and entry.have is None and self._store is not None:
                self._store.delete(key)
            return entry.snapshot() if entry is not None else None

    def remove_group(self, group: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == group]:
                del self._items[key]
            if self._store is not None:
                self._store.delete_group(group)

    # --- reads ----------------------------------------------------------------------------
    def get(self, key: Key) -> Share | None:
        with self._lock:
            entry = self._items.get(key)
            return entry.snapshot() if entry is not None else None

    def has(self, key: Key, piece: int) -> bool:
        """Whether we can serve ``piece`` of ``key`` now (complete, or that piece is in)."""
        with self._lock:
            entry = self._items.get(key)
            if entry is None or not 0 <= piece < entry.meta.num_pieces:
                return False
            return entry.have is None or piece in entry.have

    def known_digests(self, meta: FileMeta) -> bytes | None:
        """Digests we already have for this content (we share it, perhaps in another group)."""
        with self._lock:
            for entry in self._items.values():
                if (entry.meta.root, entry.meta.piece_size) == (meta.root, meta.piece_size):
                    return entry.digests
            return self._store.digests_of(meta.root, meta.piece_size) if self._store is not None else None

    def announce_refs(self) -> list[dict[str, str]]:
        """What we serve, in the form the announce operation takes."""
        with self._lock:
            refs = []
            for (group, name), entry in self._items.items():
                ref = {"group": group, "file": name}
                if entry.have is not None:
                    ref["have"] = entry.have.encode()
                refs.append(ref)
            return refs

    def paths(self) -> set[str]:
        with self._lock:
            return {entry.path for entry in self._items.values()}

    def shares(self) -> list[Share]:
        with self._lock:
            return [entry.snapshot() for entry in self._items.values()]
