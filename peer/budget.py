"""The seeder's memory for pieces on their way out: reusable buffers under one budget.

A reply's payload stays in memory until its connection takes it, so a requester that asks and
never reads would pin every piece it asked for. Pieces are read into buffers from a pool that
never holds more than TOTAL bytes, and each requester may hold at most PER_REQUESTER of it;
past either, requests are answered BUSY (a few bytes) and the requester asks another holder or
comes back later. A buffer goes back to the pool when ZeroMQ releases it (sent, or dropped
with its connection), which the frame's MessageTracker tells; reusing buffers also spares the
allocator a fresh mapping per piece. Free buffers beyond what is in use are dropped after a
quiet spell, so an idle seeder does not sit on the pool.

Over CURVE, ZeroMQ releases our buffer as soon as it has encrypted it, but the encrypted copy
(as big as the piece) stays in its I/O thread until the connection has taken it, and a
connection that never reads keeps it. So a piece that leaves encrypted is charged twice while
its buffer is out (the buffer, and the copy to come), and when the buffer comes back the copy
stays charged, as that connection's *tail*, to its requester and to the total, until the
connection's next piece comes back (ZeroMQ encrypts the next message only once the previous one
is written out) or TAIL_TTL passes (a connection that reads nothing for that long has been
dropped: broker.guard). Without this, 30 connections that never read pinned 30 copies besides
the budget.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass, field

TOTAL = 48 * 1024 * 1024  # all requesters together, free buffers and tails included
PER_REQUESTER = 16 * 1024 * 1024  # one requester (one user or key), whatever its connections
IDLE_TRIM = 10.0  # seconds without any new piece after which free buffers are dropped
TAIL_TTL = 10.0  # seconds a tail stays charged at most (beyond broker.guard.STALL)


def give_memory_back() -> None:
    """Return freed heap memory to the system. Pieces (ours, and ZeroMQ's encrypted copies) are
    big enough that glibc serves them from its heaps once it has seen a few freed (its mmap
    threshold grows), and freed heap memory in the middle of an arena stays resident; without
    this, a seeder that had 900 MiB pinned by connections that never read still had 913 MiB
    after they closed."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


@dataclass(slots=True)
class _Held:
    buf: bytearray
    requester: str
    done: Callable[[], bool]
    conn: bytes  # the connection, when the bytes leave as a copy (CURVE); b"" otherwise


@dataclass(slots=True)
class _Tail:
    requester: str
    size: int
    since: float


@dataclass(slots=True)
class SendBudget:
    total: int = TOTAL
    per_requester: int = PER_REQUESTER
    _held: list[_Held] = field(default_factory=list)
    _free: dict[int, list[bytearray]] = field(default_factory=dict)  # buffer size -> buffers
    _per: dict[str, int] = field(default_factory=dict)  # requester -> bytes charged
    _tails: dict[bytes, _Tail] = field(default_factory=dict)  # connection -> its last copy
    _tail_bytes: int = 0
    _copies: int = 0  # copies still to come: held buffers that leave encrypted
    _allocated: int = 0  # bytes in all buffers, held or free
    _last_take: float = 0.0
    _trimmed: bool = True  # memory given back since the last take

    def take(self, requester: str, size: int, now: float, conn: bytes = b"") -> bytearray | None:
        """A buffer of ``size`` bytes for ``requester``, or None when the budget says BUSY.
        With ``conn`` (it leaves encrypted on that connection), its copy is charged too.

        A requester that holds nothing always gets one, unless the seeder as a whole is full.
        """
        self.reap(now)
        copy = size if conn else 0
        mine = self._per.get(requester, 0)
        if mine and mine + size + copy > self.per_requester:
            return None
        buf = self._reuse(size)
        if buf is not None and not self._room(copy):
            self.give_back(buf)
            return None
        if buf is None and self._room(size + copy):
            self._allocated += size
            buf = bytearray(size)
        if buf is not None:
            self._last_take, self._trimmed = now, False
        return buf

    def hold(self, requester: str, buf: bytearray, done: Callable[[], bool], conn: bytes = b"") -> None:
        """``buf`` is on its way out (on ``conn``: see ``take``); it comes back to the pool once
        ``done()``."""
        self._held.append(_Held(buf, requester, done, conn))
        self._charge(requester, len(buf) * (2 if conn else 1))
        self._copies += len(buf) if conn else 0

    def give_back(self, buf: bytearray) -> None:
        """A buffer that was taken but not sent (the read failed)."""
        self._free.setdefault(len(buf), []).append(buf)

    @property
    def _in_memory(self) -> int:
        return self._allocated + self._tail_bytes + self._copies

    def _room(self, need: int) -> bool:
        """Whether ``need`` more bytes fit, once free buffers are dropped to make room (they
        always fit in an empty pool: one piece is never refused for its size alone)."""
        if self._in_memory + need > self.total:
            self._drop_free(self._in_memory + need - self.total)
        return self._in_memory + need <= self.total or not self._in_memory

    def _charge(self, requester: str, size: int) -> None:
        self._per[requester] = self._per.get(requester, 0) + size
        if not self._per[requester]:
            del self._per[requester]

    def _reuse(self, size: int) -> bytearray | None:
        free = self._free.get(size)
        return free.pop() if free else None

    def _drop_free(self, need: int) -> None:
        for size, bufs in self._free.items():
            while bufs and need > 0:
                bufs.pop()
                self._allocated -= size
                need -= size

    def reap(self, now: float = 0.0) -> None:
        """Take back the buffers ZeroMQ has released; let go of tails past TAIL_TTL."""
        still = []
        for held in self._held:
            if not held.done():
                still.append(held)
                continue
            size = len(held.buf)
            self._free.setdefault(size, []).append(held.buf)
            self._charge(held.requester, -size)  # the buffer; a copy stays charged as the tail
            if held.conn:
                self._copies -= size
                self._end_tail(held.conn)
                self._tails[held.conn] = _Tail(held.requester, size, now)
                self._tail_bytes += size
        self._held = still
        for conn in [c for c, t in self._tails.items() if now - t.since >= TAIL_TTL]:
            self._end_tail(conn)

    def _end_tail(self, conn: bytes) -> None:
        tail = self._tails.pop(conn, None)
        if tail is not None:
            self._tail_bytes -= tail.size
            self._charge(tail.requester, -tail.size)

    def trim(self, now: float) -> None:
        """After a quiet spell, let go of every free buffer (called from the seeder's tick), and
        once nothing is out any more, of the memory they took."""
        self.reap(now)
        if now - self._last_take >= IDLE_TRIM:
            self._drop_free(self._allocated)
            if not (self._trimmed or self._held or self._tails):
                give_memory_back()
                self._trimmed = True

    @property
    def in_use(self) -> int:
        return sum(self._per.values())

    @property
    def allocated(self) -> int:
        return self._allocated

    @property
    def tails(self) -> int:
        return self._tail_bytes
