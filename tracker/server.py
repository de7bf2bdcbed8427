"""The tracker process: a CURVE ROUTER service around the sans-I/O core, plus its key service.

All logic lives in ``TrackerCore``; this module only loads the key pair, starts pyzmq's
authenticator, binds the sockets, runs the loop and closes things in order.
"""

from __future__ import annotations

import logging
import time

import zmq

from broker.keys import KeyPair, start_authenticator
from broker.service import Inbound, Outbound, RouterService, Watch
from broker.sockets import LIMITS, new_context, term_context
from broker.thread import ServiceThread
from messages.grants import GrantSigner
from messages.protocol import GRANT_LIFETIME, HEARTBEAT_EXPIRY

from .core import TrackerCore
from .hashpool import HashPool
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
        hash_workers: int | None = None,
    ) -> None:
        self.store = open_store(db) if isinstance(db, str) else db
        self.keys = keys
        signer = GrantSigner(zmq.utils.z85.decode(keys.secret.encode("ascii")))
        self.core = TrackerCore(self.store, signer, expiry=expiry, grant_lifetime=grant_lifetime)
        self.ctx = new_context()
        self.auth = start_authenticator(self.ctx)
        self.service: RouterService | None = None
        self.keyservice: KeyService | None = None
        self.hashing: HashPool | None = None
        try:
            self.hashing = HashPool(self.ctx, hash_workers)
            self.service = RouterService(self.ctx, bind, self._handle, LIMITS["tracker"], keys=keys)
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

    def _handle(self, batch: list[Inbound]) -> list[Outbound]:
        out = self.core.handle_batch(batch)
        assert self.hashing is not None
        self.hashing.submit(self.core.take_jobs())
        return out

    def _tick(self) -> list[Outbound]:
        assert self.service is not None
        return self.core.tick(lag=time.monotonic() - self.service.empty_at)

    def run(self) -> None:
        if self.keyservice is not None:
            self.keyservice.start()
        listener = self.store.listener()
        assert self.hashing is not None
        watches: list[Watch] = [_HashWatch(self.hashing, self.core)]
        if listener is not None:
            watches.append(_ListenerWatch(listener, self.core))
        try:
            if self.service is not None:
                self.service.run(self.stopping, on_tick=self._tick, tick=TICK, watches=watches)
        finally:
            if self.keyservice is not None:
                self.keyservice.stop()
            if listener is not None:
                listener.close()
            self._close()

    def _close(self) -> None:
        if self.hashing is not None:
            self.hashing.close()
        self.store.close()
        self.auth.stop()
        term_context(self.ctx)


class _ListenerWatch:
    """Other trackers' notifications, polled by the service loop beside its socket."""

    def __init__(self, listener: Listener, core: TrackerCore) -> None:
        self.listener = listener
        self.core = core

    def pollable(self) -> int:
        return self.listener.fileno()

    def ready(self) -> list[Outbound]:
        return self.core.notified(self.listener.drain())


class _HashWatch:
    """Digests from the hashing pool: the rest of those logins and new users, then replies."""

    def __init__(self, pool: HashPool, core: TrackerCore) -> None:
        self.pool = pool
        self.core = core

    def pollable(self) -> zmq.Socket:
        return self.pool.results

    def ready(self) -> list[Outbound]:
        done = self.pool.drain()
        return self.core.finish(done) if done else []
