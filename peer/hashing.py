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
    """(size, whole-file SHA-256 hex, concatenated piece digests) of the file at ``path``."""
    whole = hashlib.sha256()
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
            chunk = view[:n]
            whole.update(chunk)
            digests += hashlib.sha256(chunk).digest()
            done += n
            if progress is not None:
                progress(done, size)
    return done, whole.hexdigest(), bytes(digests)


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


def file_sha256(fd: int, size: int, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    buf = bytearray(block)
    view = memoryview(buf)
    offset = 0
    while offset < size:
        n = os.preadv(fd, [view[: min(block, size - offset)]], offset)
        if n <= 0:
            break
        h.update(view[:n])
        offset += n
    return h.hexdigest()
