"""How the peer process asks glibc to treat the big buffers pieces pass through.

Every piece is a buffer of a megabyte or more, several times over: the message ZeroMQ receives
it into, and over CURVE the two buffers it encrypts or decrypts through. glibc serves such
sizes from fresh mappings at first, then from its heaps, and hands heap memory above a
threshold back to the kernel when it is freed; the next piece then faults the same pages in
again (on this VM, page faults and zeroing were ~7% of the downloader's CPU per GB over CURVE:
scripts/bench, 1.47 -> 1.37 CPU-s/GB). Fixing both thresholds keeps up to TRIM bytes of freed
pieces for reuse; memory still peaks at the pieces in flight, and the seeder's send budget
gives everything back after a quiet spell (``budget.give_memory_back``).

One arena for all threads: glibc gives each thread that allocates (ZeroMQ's I/O thread, the
download workers) an arena of its own, and ``malloc_trim`` only returns the top of the main
one, so up to TRIM bytes per thread stayed resident for good (30 MiB freed in an I/O thread:
30 MiB kept after the quiet-spell trim; 0 with one arena). A handful of big allocations per
piece do not contend for the lock (encrypted downloads, paired runs: 738-811 MB/s against
742-793 with an arena per thread).
"""

from __future__ import annotations

import ctypes
import logging

from messages.protocol import PIECE_MAX_MSG

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP = 32 * 1024 * 1024  # glibc's upper bound for it; the largest piece frame is below
TRIM = 32 * 1024 * 1024


def keep_piece_buffers() -> bool:
    """Set glibc's thresholds (once, at the start of a peer process); False where the C
    library is not glibc and nothing was changed."""
    assert PIECE_MAX_MSG < MMAP
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = (
            libc.mallopt(M_ARENA_MAX, 1) == 1
            and libc.mallopt(M_MMAP_THRESHOLD, MMAP) == 1
            and libc.mallopt(M_TRIM_THRESHOLD, TRIM) == 1
        )
    except (OSError, AttributeError):
        ok = False
    if not ok:
        log.debug("malloc thresholds left as they are")
    return ok
