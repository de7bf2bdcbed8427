"""The seeder: a ROUTER in its own thread around the sans-I/O PieceServer.

A small send queue per downloader: honest ones keep a few pieces in flight (credit); one that
asks for more gets its excess dropped instead of growing our memory.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from broker.service import Message, RouterService
from broker.thread import ServiceThread
from messages.protocol import SEEDER_MAX_MSG

from .library import Library
from .pieceserver import PieceServer

SEND_QUEUE_PIECES = 32


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
            max_msg=SEEDER_MAX_MSG,
            copy=False,
            hwm=SEND_QUEUE_PIECES,
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
