"""The partial file a download writes into, and its turn into the finished file.

Opening re-hashes whatever an earlier run left (nothing on disk is trusted), so a resumed
download fetches only the pieces that are missing or damaged. Pieces are written with pwrite at
their offset, by any thread; finishing fsyncs and then links the file to its final name, which
never replaces a file that appeared there meanwhile.
"""

from __future__ import annotations

import errno
import os

from messages.bitfield import Bitfield
from messages.errors import Code, LocalError
from messages.records import FileMeta

from .hashing import verify_existing


def write_all(fd: int, data: memoryview, offset: int) -> None:
    """pwrite until every byte is down: a short write (disk nearly full) must not pass as done."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.ENOSPC, "short write")
        view, offset = view[n:], offset + n


def partial_path(final: str) -> str:
    return final + ".part"


class PartFile:
    def __init__(self, dest_dir: str, meta: FileMeta, digests: bytes) -> None:
        self.meta = meta
        self.digests = digests
        self.final = os.path.join(dest_dir, meta.name)
        self.path = partial_path(self.final)
        self.fd = -1
        self.have = Bitfield(meta.num_pieces)

    def open(self) -> Bitfield:
        """Create or reopen the partial file; the pieces it already holds, verified."""
        os.makedirs(os.path.dirname(self.final) or ".", exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(self.fd).st_size:
            self.have = verify_existing(self.fd, self.meta.size, self.meta.piece_size, self.digests)
        os.ftruncate(self.fd, self.meta.size)
        return self.have

    def write(self, piece: int, data: memoryview) -> None:
        write_all(self.fd, data, piece * self.meta.piece_size)

    def finish(self) -> None:
        """Make the written file durable and give it its final name."""
        os.fsync(self.fd)
        try:  # link + unlink: never replaces a file that appeared at the destination meanwhile
            os.link(self.path, self.final)
        except FileExistsError:
            raise LocalError(
                Code.BAD_PATH, f"{self.final} appeared meanwhile; the download is in {self.path}"
            ) from None
        except OSError:  # a file system without hard links: check, then rename
            if os.path.exists(self.final):
                raise LocalError(Code.BAD_PATH, f"{self.final} appeared meanwhile") from None
            os.rename(self.path, self.final)
        else:
            os.unlink(self.path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
