"""How much of our memory piece replies may hold while ZeroMQ still has them to send.

A reply's payload stays in memory until its connection takes it, so a requester that asks and
never reads would pin every piece it asked for. Each requester gets a share of one budget for
the whole seeder; past it, requests are answered BUSY (a few bytes) and the requester asks
another holder or comes back later. A payload leaves the budget when ZeroMQ releases it
(sent, or dropped with its connection), which its MessageTracker tells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

TOTAL = 48 * 1024 * 1024  # all requesters together
PER_REQUESTER = 16 * 1024 * 1024  # one requester (one user or key), whatever its connections


@dataclass(slots=True)
class _Held:
    nbytes: int
    done: Callable[[], bool]


@dataclass(slots=True)
class SendBudget:
    total: int = TOTAL
    per_requester: int = PER_REQUESTER
    _held: dict[str, list[_Held]] = field(default_factory=dict)
    _sizes: dict[str, int] = field(default_factory=dict)
    _in_use: int = 0

    def admit(self, requester: str, nbytes: int) -> bool:
        """Whether a reply of ``nbytes`` to ``requester`` fits now (at least one always may,
        unless the seeder as a whole is full)."""
        self.reap()
        mine = self._sizes.get(requester, 0)
        if self._in_use + nbytes > self.total and self._in_use:
            return False
        return mine == 0 or mine + nbytes <= self.per_requester

    def spent(self, requester: str, nbytes: int, done: Callable[[], bool]) -> None:
        self._held.setdefault(requester, []).append(_Held(nbytes, done))
        self._sizes[requester] = self._sizes.get(requester, 0) + nbytes
        self._in_use += nbytes

    def reap(self) -> None:
        """Give back what ZeroMQ has released."""
        for requester in list(self._held):
            still = []
            for held in self._held[requester]:
                if held.done():
                    self._in_use -= held.nbytes
                    self._sizes[requester] -= held.nbytes
                else:
                    still.append(held)
            if still:
                self._held[requester] = still
            else:
                del self._held[requester], self._sizes[requester]

    @property
    def in_use(self) -> int:
        return self._in_use
