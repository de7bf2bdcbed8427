"""The seeder: a ROUTER in its own thread around the sans-I/O PieceServer.

Memory for queued pieces is bounded by the server's send budget (one for all requesters); the
ROUTER's small send queue per connection and ZMTP heartbeats (a connection that stops reading
stops answering pings and is dropped, freeing what it held) do the rest.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from broker.service import Message, RouterService
from broker.sockets import LIMITS
from broker.thread import ServiceThread

from .library import Library
from .pieceserver import PieceServer


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
        seed_key: bytes,
        upload_limit: float | None = None,
    ) -> None:
        super().__init__("seeder")
        self.server = PieceServer(library, seed_key)
        self.limit = RateLimit(upload_limit) if upload_limit else None
        self.service = RouterService(
            ctx,
            listen,
            self._answer_batch,
            LIMITS["seeder"],
            copy=False,
            before_send=self._pace if self.limit else None,
        )
        self.endpoint = self.service.endpoint

    def _answer_batch(self, batch: list[Message]) -> list[Message]:
        return [(ident, self.server.answer(frames)) for ident, frames in batch]

    def _pace(self, reply: list[Any]) -> None:
        if self.limit is not None and len(reply) == 3:
            self.limit.spend(len(reply[2]))

    def run(self) -> None:
        try:
            self.service.run(self.stopping, on_tick=self.server.sweep, tick=5.0)
        finally:
            self.server.close()
