"""The tracker process: a CURVE ROUTER service around the sans-I/O core, plus its key service.

All logic lives in ``TrackerCore``; this module only loads the key pair, starts pyzmq's
authenticator, binds the sockets, runs the loop and closes things in order.
"""

from __future__ import annotations

import logging

import zmq

from broker.keys import KeyPair, start_authenticator
from broker.service import Outbound, RouterService
from broker.sockets import LIMITS, new_context, term_context
from broker.thread import ServiceThread
from messages.grants import GrantSigner
from messages.protocol import GRANT_LIFETIME, HEARTBEAT_EXPIRY

from .core import TrackerCore
from .keyservice import KeyService
from .pg_store import PgStore
from .sqlite_store import SqliteStore
from .store import Listener, Store

log = logging.getLogger(__name__)
TICK = 0.25  # seconds between housekeeping passes (presence expiry): dead holders seen fast


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://")) or "host=" in db or "dbname=" in db


def open_store(db: str) -> Store:
    """A PostgreSQL store for a libpq URL or conninfo, else a SQLite file at that path."""
    return PgStore(db) if is_postgres(db) else SqliteStore(db)


class Tracker(ServiceThread):
    """Serve with ``run()`` in the calling thread (the CLI) or ``start()`` in a background one."""

    def __init__(
        self,
        bind: str,
        db: str | Store,
        keys: KeyPair,
        *,
        key_bind: str | None = None,
        expiry: float = HEARTBEAT_EXPIRY,
        grant_lifetime: float = GRANT_LIFETIME,
    ) -> None:
        self.store = open_store(db) if isinstance(db, str) else db
        self.keys = keys
        signer = GrantSigner(zmq.utils.z85.decode(keys.secret.encode("ascii")))
        self.core = TrackerCore(self.store, signer, expiry=expiry, grant_lifetime=grant_lifetime)
        self.ctx = new_context()
        self.auth = start_authenticator(self.ctx)
        self.service: RouterService | None = None
        self.keyservice: KeyService | None = None
        try:
            self.service = RouterService(self.ctx, bind, self.core.handle_batch, LIMITS["tracker"], keys=keys)
            self.keyservice = self._key_service(key_bind) if key_bind else None
        except BaseException:
            if self.service is not None:
                self.service.sock.close(linger=0)
            self._close()
            raise
        self.endpoint = self.service.endpoint
        self.key_endpoint = self.keyservice.endpoint if self.keyservice else ""
        super().__init__("tracker")

    def _key_service(self, bind: str) -> KeyService | None:
        """The key service, if its port is free: without it peers need --tracker-key, nothing else."""
        try:
            return KeyService(self.ctx, bind, self.keys.public)
        except zmq.ZMQError as exc:
            log.warning("no key service on %s (%s): peers need --tracker-key", bind, exc)
            return None

    def run(self) -> None:
        if self.keyservice is not None:
            self.keyservice.start()
        listener = self.store.listener()
        watch = _ListenerWatch(listener, self.core) if listener is not None else None
        try:
            if self.service is not None:
                self.service.run(self.stopping, on_tick=self.core.tick, tick=TICK, watch=watch)
        finally:
            if self.keyservice is not None:
                self.keyservice.stop()
            if listener is not None:
                listener.close()
            self._close()

    def _close(self) -> None:
        self.store.close()
        self.auth.stop()
        term_context(self.ctx)


class _ListenerWatch:
    """Other trackers' notifications, polled by the service loop beside its socket."""

    def __init__(self, listener: Listener, core: TrackerCore) -> None:
        self.listener = listener
        self.core = core

    def fileno(self) -> int:
        return self.listener.fileno()

    def ready(self) -> list[Outbound]:
        return self.core.notified(self.listener.drain())
