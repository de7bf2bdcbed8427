"""Writing verified pieces at their offset, past the page cache where the file system allows.

A downloaded piece is written once and, on the downloader, not read again soon: putting it in
the page cache costs a copy into cache pages and, for pages the machine has not used lately,
the kernel's cost of handing out fresh memory (on the VM this was measured on, more than the
copy itself), and the fsync at the end then writes it all out in one go. With O_DIRECT the
disk takes the bytes straight from a small buffer that each writer thread reuses, so the cost per
piece is one copy into that aligned buffer whatever state the machine's memory is in, and the
finished file is already on disk when the last piece is in (libtorrent offers the same, its
``disable_os_cache`` write mode). Where O_DIRECT is refused (older tmpfs, some network and
FUSE file systems) or a piece is not aligned (the last one), the piece goes through the page
cache as before.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import os
from typing import Any

# Offsets, lengths and the buffer's address must be multiples of the device's logical block
# size for O_DIRECT; 4096 covers every common device (the buffer is page-aligned by mmap).
ALIGN = 4096

log = logging.getLogger(__name__)


def write_all(fd: int, data: memoryview, offset: int) -> None:
    """pwrite until every byte is down: a short write (disk nearly full) must not pass as done."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.ENOSPC, "short write")
        view, offset = view[n:], offset + n


def open_direct(name: str, dir_fd: int, same_as: os.stat_result) -> int:
    """A second descriptor on the partial file (``same_as``: the first one's fstat), with
    O_DIRECT; -1 where the file system has none, or the name no longer leads to that file."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return -1
    try:
        fd = os.open(name, os.O_WRONLY | flag | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return -1
        raise
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (same_as.st_dev, same_as.st_ino):
        os.close(fd)
        return -1
    return fd


def _libc_fallocate() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    fn.restype = ctypes.c_int
    return fn


_FALLOCATE = _libc_fallocate()
FALLOC_FL_KEEP_SIZE = 0x01  # linux/falloc.h
FALLOC_FL_PUNCH_HOLE = 0x02


def reserve(fd: int, size: int) -> bool:
    """Allocate the file's blocks up front (Linux ``fallocate``; holes already written stay).

    Direct writes into holes make the file system allocate blocks under the file's exclusive
    lock, so concurrent pieces queue behind each other (1 GiB from 4 holders: 2.6 ms per 1 MiB
    write with four workers, 1.7 ms once reserved); and a disk without room for the file says
    so at the start, not half-way. False where the file system cannot (then nothing changes:
    no emulation by writing zeros, which posix_fallocate would do). Raises OSError(ENOSPC)."""
    if _FALLOCATE is None or size <= 0:
        return False
    # Looked at first: ext4 keeps the blocks a failed fallocate took, so asking for more than
    # there is would fill the disk and then say there is no room.
    # (Some FUSE file systems report no sizes at all: nothing to compare with, so not looked at.)
    needed = size - os.fstat(fd).st_blocks * 512
    vfs = os.fstatvfs(fd)
    if vfs.f_blocks and needed > vfs.f_bavail * vfs.f_frsize:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if _FALLOCATE(fd, 0, 0, size) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err))


def release(fd: int, offset: int, length: int) -> bool:
    """Give a range's blocks back to the file system (punch a hole; the size stays): what a
    reservation took where it failed half-way. False where the file system cannot."""
    if _FALLOCATE is None or length <= 0:
        return False
    if _FALLOCATE(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) == 0:
        return True
    log.info("could not give back %d bytes of a partial file: %s", length, os.strerror(ctypes.get_errno()))
    return False


class PieceWriter:
    """One worker's writer: its own aligned buffer, the file's two descriptors shared."""

    def __init__(self, fd: int, direct_fd: int, piece_size: int) -> None:
        self.fd, self.direct_fd = fd, direct_fd
        size = -(-piece_size // ALIGN) * ALIGN
        self._map = mmap.mmap(-1, size) if direct_fd >= 0 else None
        self._buf = memoryview(self._map) if self._map is not None else None

    def write(self, data: memoryview, offset: int) -> None:
        n = len(data)
        if self._buf is not None and offset % ALIGN == 0 and n % ALIGN == 0 and n <= len(self._buf):
            if self._write_direct(self._buf, data, offset):
                return
            self.close()  # refused after all (say, a device with larger blocks): buffered from now on
        write_all(self.fd, data, offset)

    def _write_direct(self, buf: memoryview, data: memoryview, offset: int) -> bool:
        """False when the kernel refuses the direct write (EINVAL). Every view of the buffer is
        gone when this returns, so the caller may unmap it (an exported view makes the unmap
        raise, which killed the writer thread and the download with it)."""
        view = buf[: len(data)]
        try:
            view[:] = data
            write_all(self.direct_fd, view, offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            return False  # the traceback, and the slices it holds, go with the except block
        finally:
            view.release()
        return True

    def close(self) -> None:
        if self._buf is not None:
            self._buf.release()
            self._buf = None
        if self._map is not None:
            self._map.close()
            self._map = None
