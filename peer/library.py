"""What this peer serves: complete shares and partial downloads, shared with the seeder thread.

The seeder reads it for every piece request and downloads write to it as pieces land, so it is
guarded by a lock (it holds no sockets) and hands out frozen snapshots (``Share``), never the
entries it mutates. Complete shares are saved per user in the peer's home (temp file, fsync,
rename), so logging in again brings them back; a file whose size or mtime changed since it was
shared is not served again.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

import orjson

from messages.bitfield import Bitfield
from messages.errors import ProtocolError
from messages.records import FileMeta

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
class Served:
    meta: FileMeta
    path: str
    digests: bytes
    have: Bitfield | None  # None: complete
    size_on_disk: int = 0
    mtime_ns: int = 0

    def stamp(self) -> None:
        st = os.stat(self.path)
        self.size_on_disk, self.mtime_ns = st.st_size, st.st_mtime_ns

    def snapshot(self) -> Share:
        return Share(self.meta, self.path, self.digests, self.have is None, self.size_on_disk, self.mtime_ns)


def atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Library:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[Key, Served] = {}
        self._folder: str | None = None

    # --- persistence ----------------------------------------------------------------------
    def load(self, folder: str) -> list[str]:
        """Load a user's saved shares; returns a note for each one no longer served."""
        os.makedirs(os.path.join(folder, "digests"), exist_ok=True)
        notes: list[str] = []
        items: dict[Key, Served] = {}
        path = os.path.join(folder, "shares.json")
        try:
            with open(path, "rb") as f:
                saved = orjson.loads(f.read())
        except FileNotFoundError:
            saved = []
        except (OSError, orjson.JSONDecodeError) as exc:
            notes.append(f"share list {path} unreadable ({exc}); upload files again")
            saved = []
        if not isinstance(saved, list):
            notes.append(f"share list {path} is not a list; upload files again")
            saved = []
        for entry in saved:
            try:
                meta = FileMeta.from_wire(entry["meta"])
                with open(self._digest_path(folder, meta), "rb") as f:
                    digests = f.read()
                st = os.stat(entry["path"])
            except (OSError, KeyError, TypeError, ValueError, AttributeError, ProtocolError) as exc:
                where = entry.get("path", "?") if isinstance(entry, dict) else "?"
                notes.append(f"not serving {where}: {exc}")
                continue
            if (st.st_size, st.st_mtime_ns) != (entry["size"], entry["mtime_ns"]) or st.st_size != meta.size:
                notes.append(
                    f"not serving [{meta.group}] {meta.name}: {entry['path']} changed since it was shared"
                )
                continue
            served = Served(meta, entry["path"], digests, None, st.st_size, st.st_mtime_ns)
            items[(meta.group, meta.name)] = served
        with self._lock:
            self._folder = folder
            self._items = items
        return notes

    def unload(self) -> None:
        with self._lock:
            self._items = {}
            self._folder = None

    def _save_locked(self) -> None:
        if self._folder is None:
            return
        entries = []
        for s in self._items.values():
            if s.have is None:
                entries.append(
                    {"meta": s.meta.to_wire(), "path": s.path, "size": s.size_on_disk, "mtime_ns": s.mtime_ns}
                )
                dpath = self._digest_path(self._folder, s.meta)
                if not os.path.exists(dpath):
                    atomic_write(dpath, s.digests)
        atomic_write(
            os.path.join(self._folder, "shares.json"), orjson.dumps(entries, option=orjson.OPT_INDENT_2)
        )

    @staticmethod
    def _digest_path(folder: str, meta: FileMeta) -> str:
        return os.path.join(folder, "digests", f"{meta.root}-{meta.piece_size}.bin")

    # --- changes --------------------------------------------------------------------------
    def add_complete(self, meta: FileMeta, path: str, digests: bytes) -> None:
        served = Served(meta, os.path.abspath(path), digests, None)
        served.stamp()
        with self._lock:
            self._items[(meta.group, meta.name)] = served
            self._save_locked()

    def add_partial(self, meta: FileMeta, path: str, digests: bytes, have: Bitfield) -> None:
        with self._lock:
            self._items[(meta.group, meta.name)] = Served(meta, os.path.abspath(path), digests, have.copy())

    def mark(self, key: Key, piece: int) -> None:
        with self._lock:
            served = self._items.get(key)
            if served is not None and served.have is not None:
                served.have.add(piece)

    def remove(self, key: Key) -> Share | None:
        with self._lock:
            served = self._items.pop(key, None)
            if served is not None and served.have is None:
                self._save_locked()
            return served.snapshot() if served is not None else None

    def remove_group(self, group: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == group]:
                del self._items[key]
            self._save_locked()

    # --- reads ----------------------------------------------------------------------------
    def get(self, key: Key) -> Share | None:
        with self._lock:
            served = self._items.get(key)
            return served.snapshot() if served is not None else None

    def has(self, key: Key, piece: int) -> bool:
        """Whether we can serve ``piece`` of ``key`` now (complete, or that piece is in)."""
        with self._lock:
            served = self._items.get(key)
            if served is None or not 0 <= piece < served.meta.num_pieces:
                return False
            return served.have is None or piece in served.have

    def announce_refs(self) -> list[dict[str, str]]:
        """What we serve, in the form the announce operation takes."""
        with self._lock:
            refs = []
            for (group, name), s in self._items.items():
                ref = {"group": group, "file": name}
                if s.have is not None:
                    ref["have"] = s.have.encode()
                refs.append(ref)
            return refs

    def paths(self) -> set[str]:
        with self._lock:
            return {s.path for s in self._items.values()}

    def complete_keys(self) -> list[Key]:
        with self._lock:
            return [k for k, s in self._items.items() if s.have is None]

    def shares(self) -> list[Share]:
        with self._lock:
            return [s.snapshot() for s in self._items.values()]
