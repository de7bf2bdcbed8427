"""The seeder's memory for pieces on their way out: reusable buffers under one budget.

A reply's payload stays in memory until its connection takes it, so a requester that asks and
never reads would pin every piece it asked for. Pieces are read into buffers from a pool that
never holds more than TOTAL bytes, and each requester may hold at most PER_REQUESTER of it;
past either, requests are answered BUSY (a few bytes) and the requester asks another holder or
comes back later. A buffer goes back to the pool when ZeroMQ releases it (sent, or dropped
with its connection), which the frame's MessageTracker tells; reusing buffers also spares the
allocator a fresh mapping per piece. Free buffers beyond what is in use are dropped after a
quiet spell, so an idle seeder does not sit on the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

TOTAL = 48 * 1024 * 1024  # all requesters together, free buffers included
PER_REQUESTER = 16 * 1024 * 1024  # one requester (one user or key), whatever its connections
IDLE_TRIM = 10.0  # seconds without any new piece after which free buffers are dropped


@dataclass(slots=True)
class _Held:
    buf: bytearray
    requester: str
    done: Callable[[], bool]


@dataclass(slots=True)
class SendBudget:
    total: int = TOTAL
    per_requester: int = PER_REQUESTER
    _held: list[_Held] = field(default_factory=list)
    _free: dict[int, list[bytearray]] = field(default_factory=dict)  # buffer size -> buffers
    _per: dict[str, int] = field(default_factory=dict)  # requester -> bytes held
    _allocated: int = 0  # bytes in all buffers, held or free
    _last_take: float = 0.0

    def take(self, requester: str, size: int, now: float) -> bytearray | None:
        """A buffer of ``size`` bytes for ``requester``, or None when the budget says BUSY.

        A requester that holds nothing always gets one, unless the seeder as a whole is full.
        """
        self.reap()
        mine = self._per.get(requester, 0)
        if mine and mine + size > self.per_requester:
            return None
        buf = self._reuse(size) or self._allocate(size)
        if buf is not None:
            self._last_take = now
        return buf

    def hold(self, requester: str, buf: bytearray, done: Callable[[], bool]) -> None:
        """``buf`` is on its way out; it comes back to the pool once ``done()``."""
        self._held.append(_Held(buf, requester, done))
        self._per[requester] = self._per.get(requester, 0) + len(buf)

    def give_back(self, buf: bytearray) -> None:
        """A buffer that was taken but not sent (the read failed)."""
        self._free.setdefault(len(buf), []).append(buf)

    def _reuse(self, size: int) -> bytearray | None:
        free = self._free.get(size)
        return free.pop() if free else None

    def _allocate(self, size: int) -> bytearray | None:
        if self._allocated + size > self.total:
            self._drop_free(self._allocated + size - self.total)
        if self._allocated + size > self.total and self._allocated:
            return None
        self._allocated += size
        return bytearray(size)

    def _drop_free(self, need: int) -> None:
        for size, bufs in self._free.items():
            while bufs and need > 0:
                bufs.pop()
                self._allocated -= size
                need -= size

    def reap(self) -> None:
        """Take back the buffers ZeroMQ has released."""
        still = []
        for held in self._held:
            if held.done():
                self._per[held.requester] -= len(held.buf)
                if not self._per[held.requester]:
                    del self._per[held.requester]
                self._free.setdefault(len(held.buf), []).append(held.buf)
            else:
                still.append(held)
        self._held = still

    def trim(self, now: float) -> None:
        """After a quiet spell, let go of every free buffer (called from the seeder's tick)."""
        self.reap()
        if now - self._last_take >= IDLE_TRIM:
            self._drop_free(self._allocated)

    @property
    def in_use(self) -> int:
        return sum(self._per.values())

    @property
    def allocated(self) -> int:
        return self._allocated
