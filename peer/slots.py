"""Upload slots: how many requesters a seeder serves pieces to at once (BitTorrent's choking).

Sixty downloaders that start together each ask the one seeder for the pieces nobody else has
yet, all at once; picking at random, they ask for the same pieces several times over before
anyone has told the tracker what they got, and the seeder sends the file four or five times
(``scripts/bench --scale``). A seeder that serves a few requesters at a time sends distinct
pieces, slowly enough for the news of who has what to spread, and the others fetch from each
other meanwhile: a refused request is answered BUSY, and the downloader asks another holder and
comes back after a short backoff. Only complete copies are served this way: a downloader's
partial copy serves anyone (sixty downloaders that turned each other away measured 3.4 times
slower, with a storm of BUSY replies on two cores), and the seeder's upload is what is scarce.

A requester keeps its slot while it keeps asking; it gives it up when it goes quiet (IDLE), or,
when others are waiting, after a turn of TURN seconds, and then queues behind them. Free slots
go to those waiting longest (a waiter that stops asking leaves the queue after IDLE), so every
requester gets its turn; with fewer requesters than slots nobody is ever refused. Pure
bookkeeping: the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SLOTS = 4  # requesters served at once
TURN = 2.0  # seconds a requester keeps its slot while others wait
IDLE = 1.0  # seconds without a request after which a slot is free again


@dataclass(slots=True)
class UploadSlots:
    slots: int = SLOTS
    turn: float = TURN
    idle: float = IDLE
    _since: dict[str, float] = field(default_factory=dict)  # requester -> slot taken at
    _last: dict[str, float] = field(default_factory=dict)  # requester -> its last request
    _queued: dict[str, float] = field(default_factory=dict)  # waiting requester -> queued at

    def admit(self, requester: str, now: float) -> bool:
        """Whether ``requester`` is served now (False: answer BUSY)."""
        self._last[requester] = now
        self._expire(now)
        if requester in self._since:
            return True
        queued = self._queued.setdefault(requester, now)
        ahead = sum(1 for t in self._queued.values() if t < queued)
        if len(self._since) + ahead < self.slots:
            del self._queued[requester]
            self._since[requester] = now
            return True
        return False

    def serving(self) -> list[str]:
        return sorted(self._since)

    def _expire(self, now: float) -> None:
        for who in list(self._queued):
            if now - self._last[who] > self.idle:  # stopped asking: gone, or served elsewhere
                del self._queued[who], self._last[who]
        for who, since in list(self._since.items()):
            if now - self._last[who] > self.idle:
                del self._since[who], self._last[who]
            elif self._queued and now - since >= self.turn:
                del self._since[who]
                self._queued[who] = now  # behind everyone waiting
