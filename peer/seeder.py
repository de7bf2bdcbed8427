"""The seeder: a ROUTER in its own thread around the sans-I/O PieceServer.

Memory for queued pieces is bounded by the server's send budget (one for all requesters,
encrypted copies included); the ROUTER's small send queue per connection and its connection
guard (a connection that stops reading is dropped, freeing what it held: broker.guard) do the
rest.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from broker.guard import PEER_INTERVAL
from broker.keys import KeyPair
from broker.service import Inbound, Outbound, RouterService
from broker.sockets import LIMITS
from broker.thread import ServiceThread

from .library import Library
from .pieceserver import PieceServer
from .revocations import Revocations

# Requests answered before their replies go out. A seeder needs no group commit: small batches
# keep one burst of requests (a piece read each) from delaying the replies to everyone else.
BATCH = 16


class RateLimit:
    """A token bucket on bytes sent: an upload cap a user may set (and tests use to slow a holder)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.allowance = 0.0
        self.last = time.monotonic()

    def spend(self, nbytes: int) -> None:
        now = time.monotonic()
        self.allowance = min(self.rate, self.allowance + (now - self.last) * self.rate) - nbytes
        self.last = now
        if self.allowance < 0:
            time.sleep(-self.allowance / self.rate)


class Seeder(ServiceThread):
    def __init__(
        self,
        ctx: zmq.Context,
        listen: str,
        library: Library,
        keys: KeyPair | None,
        revoked: Revocations,
        upload_limit: float | None = None,
    ) -> None:
        """A CURVE server with ``keys``; without, pieces travel unencrypted (a trusted LAN)."""
        super().__init__("seeder")
        self.server = PieceServer(library, revoked)
        self.limit = RateLimit(upload_limit) if upload_limit else None
        self.service = RouterService(
            ctx,
            listen,
            self._answer_batch,
            LIMITS["seeder"],
            keys=keys,
            batch=BATCH,
            before_send=self._pace if self.limit else None,
            guard_interval=PEER_INTERVAL,
        )
        self.endpoint = self.service.endpoint

    def _answer_batch(self, batch: list[Inbound]) -> list[Outbound]:
        # Over CURVE (m.key set) a reply leaves as an encrypted copy: the budget tracks it per
        # connection (its routing id).
        return [(m.ident, self.server.answer(m.frames, m.key, m.ident if m.key else b"")) for m in batch]

    def _pace(self, reply: list[Any]) -> None:
        if self.limit is not None and len(reply) == 3:
            self.limit.spend(len(reply[2]))

    def run(self) -> None:
        try:
            self.service.run(self.stopping, on_tick=self.server.sweep, tick=5.0)
        finally:
            self.server.close()
