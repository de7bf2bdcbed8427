"""Hashing files into pieces, and re-checking pieces already on disk.

Reads go through one reused buffer (``readinto``), so hashing a file of any size costs one
piece of memory. hashlib releases the GIL on large buffers, so other threads keep running.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from messages.bitfield import Bitfield
from messages.protocol import DIGEST_SIZE

Progress = Callable[[int, int], None]  # (bytes done, total)


def hash_file(path: str, piece_size: int, progress: Progress | None = None) -> tuple[int, str, bytes]:
    """(size, root hash hex, concatenated piece digests) of the file at ``path``.

    The root is the SHA-256 of the digests: a downloader that verified every piece and the root
    has verified the whole file, without hashing its bytes a second time.
    """
    digests = bytearray()
    buf = bytearray(piece_size)
    view = memoryview(buf)
    done = 0
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        while True:
            n = f.readinto(buf)
            if not n:
                break
            digests += hashlib.sha256(view[:n]).digest()
            done += n
            if progress is not None:
                progress(done, size)
    return done, root_hash(bytes(digests)), bytes(digests)


def root_hash(digests: bytes) -> str:
    return hashlib.sha256(digests).hexdigest()


def digest_at(digests: bytes, index: int) -> bytes:
    return digests[index * DIGEST_SIZE : (index + 1) * DIGEST_SIZE]


def verify_existing(fd: int, size: int, piece_size: int, digests: bytes) -> Bitfield:
    """Which pieces of a partial file already hold the right bytes (never trusted, re-hashed)."""
    count = (size + piece_size - 1) // piece_size
    have = Bitfield(count)
    disk = os.fstat(fd).st_size
    for i in range(count):
        offset = i * piece_size
        length = min(piece_size, size - offset)
        if offset + length > disk:
            break
        data = os.pread(fd, length, offset)
        if len(data) == length and hashlib.sha256(data).digest() == digest_at(digests, i):
            have.add(i)
    return have
