"""The partial file a download writes into, and its turn into the finished file.

Partial files live in a hidden folder of the destination, ``<dest>/.torrent-partial/<name>``,
under the file's own name: no suffix can make a long name too long, and no finished file in the
destination (say one called ``a.bin.part``) can be mistaken for the partial of another. Every
open and link is relative to descriptors of the two folders and never follows a symbolic link,
so a link planted where the partial file goes cannot redirect our writes outside the folder.

Opening re-hashes whatever an earlier run left (nothing on disk is trusted), so a resumed
download fetches only the pieces that are missing or damaged. Pieces are written at their
offset, by any thread, each with its own ``PieceWriter`` (past the page cache where the file
system allows); finishing fsyncs and then links the file to its final name, which never
replaces a file that appeared there meanwhile.
"""

from __future__ import annotations

import errno
import os
import stat

from messages.bitfield import Bitfield
from messages.errors import Code, LocalError
from messages.records import FileMeta

from .hashing import verify_existing
from .piecewriter import PieceWriter, open_direct, release, reserve

PARTIAL_DIR = ".torrent-partial"


def partial_path(dest_dir: str, name: str) -> str:
    return os.path.join(dest_dir, PARTIAL_DIR, name)


def _open_nofollow(name: str, flags: int, dir_fd: int, where: str) -> int:
    try:
        return os.open(name, flags | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LocalError(
                Code.BAD_PATH, f"{where} is a symbolic link; refusing to write through it"
            ) from None
        if exc.errno == errno.ENOTDIR:
            raise LocalError(
                Code.BAD_PATH, f"{where} is in the way (a symbolic link or a file, not a folder)"
            ) from None
        raise


def _ours(fd: int, where: str, owners: set[int]) -> None:
    """In a destination others can write to (a shared folder), a partial folder or file left
    there by another user would become our finished file while they can still change it.
    Ours, or the destination's owner's (who could replace the finished file anyway, and whom
    network file systems that map owners report for everything: NFS squashing, CIFS, sshfs),
    are fine; what we have just created is not checked at all."""
    owner = os.fstat(fd).st_uid
    if owner not in owners:
        raise LocalError(
            Code.BAD_PATH,
            f"{where} belongs to another user (uid {owner}), who could change the download; "
            "remove it or download to another folder",
        )


class PartFile:
    def __init__(self, dest_dir: str, meta: FileMeta, *, direct: bool = True) -> None:
        self.meta, self.direct = meta, direct
        self.dest_dir = dest_dir
        self.final = os.path.join(dest_dir, meta.name)
        self.path = partial_path(dest_dir, meta.name)
        self.fd = self.direct_fd = self._dest = self._dir = -1
        self.have = Bitfield(meta.num_pieces)

    def open(self, digests: bytes) -> Bitfield:
        """Create or reopen the partial file; the pieces it already holds, verified."""
        os.makedirs(self.dest_dir, exist_ok=True)
        self._dest = os.open(self.dest_dir, os.O_RDONLY | os.O_DIRECTORY)
        owners = {os.geteuid(), os.fstat(self._dest).st_uid}
        try:
            os.mkdir(PARTIAL_DIR, 0o700, dir_fd=self._dest)
            made = True
        except FileExistsError:
            made = False
        folder = os.path.join(self.dest_dir, PARTIAL_DIR)
        self._dir = _open_nofollow(PARTIAL_DIR, os.O_RDONLY | os.O_DIRECTORY, self._dest, folder)
        if not made:
            _ours(self._dir, folder, owners)
        try:
            self.fd = _open_nofollow(self.meta.name, os.O_RDWR | os.O_CREAT | os.O_EXCL, self._dir, self.path)
        except FileExistsError:
            self.fd = _open_nofollow(self.meta.name, os.O_RDWR, self._dir, self.path)
            _ours(self.fd, self.path, owners)
        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            raise LocalError(Code.BAD_PATH, f"{self.path} is not a regular file")
        if os.fstat(self.fd).st_size:
            self.have = verify_existing(self.fd, self.meta.size, self.meta.piece_size, digests)
        os.ftruncate(self.fd, self.meta.size)
        self._reserve()
        if self.direct:
            self.direct_fd = open_direct(self.meta.name, self._dir, os.fstat(self.fd))
        return self.have

    def _reserve(self) -> None:
        try:
            reserve(self.fd, self.meta.size)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._release_unverified()
            raise LocalError(
                Code.NO_SPACE,
                f"not enough free space in {self.dest_dir} for {self.meta.name} ({self.meta.size:,} bytes);"
                f" the partial file is kept at {self.path}",
            ) from None

    def _release_unverified(self) -> None:
        """Give back what a reservation that failed half-way took (the room was there when we
        looked, then someone else took it): every run of pieces not verified, so a full disk
        is not left full by us; verified pieces stay for the next attempt."""
        runs: list[list[int]] = []  # [first, end) of each run of missing pieces
        for piece in self.have.missing():
            if runs and runs[-1][1] == piece:
                runs[-1][1] = piece + 1
            else:
                runs.append([piece, piece + 1])
        size = self.meta.piece_size
        for first, end in runs:
            release(self.fd, first * size, min(end * size, self.meta.size) - first * size)

    def writer(self) -> PieceWriter:
        """A writer for one writer thread (each has its own aligned buffer)."""
        return PieceWriter(self.fd, self.direct_fd, self.meta.piece_size)

    def finish(self) -> None:
        """Make the written file durable and give it its final name."""
        os.fsync(self.fd)
        name = self.meta.name
        try:  # link + unlink: never replaces a file that appeared at the destination meanwhile
            os.link(name, name, src_dir_fd=self._dir, dst_dir_fd=self._dest, follow_symlinks=False)
        except FileExistsError:
            raise LocalError(
                Code.BAD_PATH, f"{self.final} appeared meanwhile; the download is in {self.path}"
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                raise
            # A file system without hard links: check, then rename.
            if os.path.lexists(self.final):
                raise LocalError(Code.BAD_PATH, f"{self.final} appeared meanwhile") from None
            os.rename(name, name, src_dir_fd=self._dir, dst_dir_fd=self._dest)
        else:
            os.unlink(name, dir_fd=self._dir)
        os.fsync(self._dest)  # the new name is durable too
        try:
            os.rmdir(PARTIAL_DIR, dir_fd=self._dest)  # only if no other download uses it
        except OSError:
            pass

    def close(self) -> None:
        for attr in ("direct_fd", "fd", "_dir", "_dest"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)
