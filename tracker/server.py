"""The tracker process: a ROUTER service around the sans-I/O core.

All logic lives in ``TrackerCore``; this module only binds the socket, runs the loop and
closes things in order.
"""

from __future__ import annotations

import logging

from broker.service import RouterService
from broker.sockets import LIMITS, new_context, term_context
from broker.thread import ServiceThread
from messages.protocol import GRANT_LIFETIME, HEARTBEAT_EXPIRY

from .core import TrackerCore
from .sqlite_store import SqliteStore

log = logging.getLogger(__name__)
TICK = 0.5  # seconds between housekeeping passes (presence expiry)


class Tracker(ServiceThread):
    """Serve with ``run()`` in the calling thread (the CLI) or ``start()`` in a background one."""

    def __init__(
        self,
        bind: str,
        db_path: str,
        *,
        expiry: float = HEARTBEAT_EXPIRY,
        grant_lifetime: float = GRANT_LIFETIME,
    ) -> None:
        self.store = SqliteStore(db_path)
        self.core = TrackerCore(self.store, expiry=expiry, grant_lifetime=grant_lifetime)
        self.ctx = new_context()
        try:
            self.service = RouterService(self.ctx, bind, self.core.handle_batch, LIMITS["tracker"])
        except BaseException:
            self.store.close()
            term_context(self.ctx)
            raise
        self.endpoint = self.service.endpoint
        super().__init__("tracker")

    def run(self) -> None:
        try:
            self.service.run(self.stopping, on_tick=self.core.tick, tick=TICK)
        finally:
            self.store.close()
            term_context(self.ctx)
