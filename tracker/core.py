"""The tracker's logic behind one call: a batch of messages in, their replies out, no socket.

``handle_batch`` runs the whole batch in one transaction, each state-changing request inside
its own savepoint (so a refused request undoes only itself), commits once, and only then hands
back the replies: an acknowledged write is always durable and many writes share one fsync
(group commit). If the commit fails, every request of the batch is answered with an error,
because nothing of it was stored, presence included (it lives in the same transaction).

Pushes that handlers queue (revocations to seeders, removed files, holder changes to the
downloads that follow a file) go out with the replies, and only if the batch committed: to this
tracker's connections directly, to the other trackers' through database notifications.

Retried writes (same client id and request id, identical bytes) are answered from a durable
cache of their replies, so a write whose reply was lost, even across a tracker restart, is never
done twice nor answered "already exists". Logins are not cached: a reply carrying a session
token is never stored, and logging in again is harmless.

Logins and new users wait for a password hash computed off the loop (``deferred``): the core
hands out ``HashJob``s (``take_jobs``) and takes their digests back (``finish``), which runs the
rest of those requests in a transaction of its own.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from functools import partial

from broker.service import Inbound, Outbound
from messages import protocol as P
from messages.control import Reply, Request
from messages.errors import Code, ProtocolError, TorrentError
from messages.frames import as_bytes, peek_id
from messages.grants import GrantSigner
from messages.schema import OPS

from .call import Call, Deferred, Env, Handler
from .deferred import HashJob, HashQueue
from .handlers import HANDLERS
from .postman import Postman
from .presence import Presence
from .rules import Rules
from .store import Store, StoreError

log = logging.getLogger(__name__)

REPLY_TTL = 900.0  # seconds a write's reply stays in the retry cache
UNCACHED = frozenset({P.OP_LOGIN})  # replies that carry a secret are never stored
HASH_QUEUE = 64  # password hashes waiting at most (about 3 s of work for one worker)
Step = Callable[[Call], "Reply | Deferred"]


class TrackerCore:
    def __init__(
        self,
        store: Store,
        signer: GrantSigner,
        *,
        expiry: float = P.HEARTBEAT_EXPIRY,
        grant_lifetime: float = P.GRANT_LIFETIME,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] | None = None,
        hash_queue: int = HASH_QUEUE,
    ) -> None:
        """``clock`` (leases) and ``wall`` (grants, throttling) default to the store's clock,
        the one every tracker on the store shares."""
        self.store = store
        self.clock = clock or store.clock
        self.wall = wall or store.clock
        epoch = secrets.token_hex(8)
        self.presence = Presence(store, expiry, epoch)
        self.env = Env(Rules(store), self.presence, signer, epoch, grant_lifetime)
        self.postman = Postman(store, self.presence, epoch)
        self.hashes = HashQueue(hash_queue)

    @property
    def epoch(self) -> str:
        return self.env.epoch

    # --- requests -------------------------------------------------------------------------
    def handle_batch(self, batch: list[Inbound]) -> list[Outbound]:
        """Replies to a batch (those waiting for a hash come later, from ``finish``). Only a
        batch with a durable write excludes other trackers' batches while it runs."""
        decoded = [(m, _decode(m)) for m in batch]
        exclusive = any(isinstance(r, Request) and OPS[r.op].write for _, r in decoded)

        def run(now: float, wall: float) -> list[Outbound | None]:
            return [self._handle(m, r, now, wall) for m, r in decoded]

        return self._transaction(run, batch, exclusive)

    def take_jobs(self) -> list[HashJob]:
        """Password hashes to compute (after each batch): see ``finish``."""
        return self.hashes.take_new()

    def finish(self, digests: list[tuple[int, bytes]]) -> list[Outbound]:
        """Replies to the requests whose hashes are done: ``(job id, digest)`` pairs."""
        waiting = [(w, d) for job, d in digests if (w := self.hashes.done(job)) is not None]

        def run(now: float, wall: float) -> list[Outbound | None]:
            out: list[Outbound | None] = []
            for w, digest in waiting:
                m, req = w.message, w.request
                reply = self._run(req, m, now, wall, partial(self._resume, w.deferred, digest))
                out.append(self._reply(m, req, reply, w.fingerprint))
            return out

        return self._transaction(run, [w.message for w, _ in waiting])

    def _resume(self, d: Deferred, digest: bytes, c: Call) -> Reply:
        return d.then(self.env, c, digest)

    def _transaction(
        self,
        work: Callable[[float, float], list[Outbound | None]],
        batch: list[Inbound],
        exclusive: bool = True,
    ) -> list[Outbound]:
        """``work`` in one transaction, committed before any reply leaves, pushes after it."""
        self._forget_news()
        try:
            self.store.begin(exclusive)
            replies = [r for r in work(self.clock(), self.wall()) if r is not None]
            pushes = self._pushes()
            self.store.commit()
        except StoreError as exc:
            # Nothing of this batch is durable, so nothing of it may be acknowledged.
            log.exception("batch failed in the database; refusing all %d requests", len(batch))
            self._rollback()
            if exc.fatal:
                raise  # a damaged database: stop rather than fail every request forever
            self._forget_news()
            err = TorrentError(Code.INTERNAL, "tracker could not store the change; try again")
            return [(m.ident, Reply.failure(peek_id(m.frames), err).encode()) for m in batch]
        return replies + pushes

    def _pushes(self) -> list[Outbound]:
        """This batch's notices and holder changes, as frames for us (notifications for others)."""
        notices = self.env.notices + self.postman.holder_news(self.presence.changes)
        self._forget_news()
        return self.postman.deliver(notices)

    def _forget_news(self) -> None:
        self.env.notices.clear()
        self.presence.changes.clear()

    def _handle(self, m: Inbound, req: Request | ProtocolError, now: float, wall: float) -> Outbound | None:
        if isinstance(req, ProtocolError):
            return m.ident, Reply.failure(peek_id(m.frames), req).encode()
        spec = OPS[req.op]
        fingerprint = b""
        if spec.write and req.cid and req.op not in UNCACHED:
            # A retry must be the very same request: a different one reusing the ids gets no
            # one else's answer.
            fingerprint = hashlib.blake2b(as_bytes(m.frames[1]), digest_size=16).digest()
            cached = self._cached(req, fingerprint)
            if cached is not None:
                return m.ident, cached
        if self.hashes.retry_of(m, req):
            return None  # still waiting for its hash: the reply will go where this came from
        handler: Handler = HANDLERS[req.op]
        reply = self._run(req, m, now, wall, lambda c: handler(self.env, c), savepoint=not spec.read)
        if isinstance(reply, Deferred):
            try:
                self.hashes.add(reply, m, req, fingerprint)
                return None
            except TorrentError as exc:  # BUSY: too many hashes waiting
                return m.ident, Reply.failure(req.id, exc).encode()
        return self._reply(m, req, reply, fingerprint)

    def _reply(self, m: Inbound, req: Request, reply: Reply | Deferred, fingerprint: bytes) -> Outbound:
        if isinstance(reply, Deferred):  # a continuation never defers again
            reply = Reply.failure(req.id, TorrentError(Code.INTERNAL, f"internal error in {req.op}"))
        out = reply.encode()
        if fingerprint:
            self._remember(req, fingerprint, out)
        return m.ident, out

    def _run(
        self, req: Request, m: Inbound, now: float, wall: float, step: Step, *, savepoint: bool = True
    ) -> Reply | Deferred:
        if savepoint:
            self.store.savepoint()
        queued = (len(self.env.notices), len(self.presence.changes))
        try:
            session = self.env.rules.session(req.token, m.key) if OPS[req.op].token else None
            reply = step(Call(req, session, now, wall, route=m.ident, key=m.key, address=m.address))
        except TorrentError as exc:
            reply = self._undo(req, exc, savepoint, queued)
        except StoreError:
            raise
        except Exception:  # a bug must cost one request, not the tracker
            log.exception("internal error in %s", req.op)
            reply = self._undo(
                req, TorrentError(Code.INTERNAL, f"internal error in {req.op}"), savepoint, queued
            )
        if savepoint:
            self.store.release()
        return reply

    def _undo(self, req: Request, exc: TorrentError, savepoint: bool, queued: tuple[int, int]) -> Reply:
        if savepoint:
            self.store.rollback_to()
        del self.env.notices[queued[0] :]  # a refused request tells nobody anything
        del self.presence.changes[queued[1] :]
        return Reply.failure(req.id, exc)

    # --- the durable reply cache ----------------------------------------------------------
    def _cached(self, req: Request, fingerprint: bytes) -> list[bytes] | None:
        """The stored reply to this very request, if it was answered before."""
        row = self.store.one("SELECT fp, header FROM replies WHERE cid=? AND rid=?", req.cid, req.id)
        if row is None or bytes(row[0]) != fingerprint:
            return None
        return [P.CONTROL_TAG, bytes(row[1])]

    def _remember(self, req: Request, fingerprint: bytes, out: list[bytes]) -> None:
        self.store.run(
            """INSERT INTO replies VALUES (?,?,?,?,?) ON CONFLICT (cid, rid) DO UPDATE
               SET fp=excluded.fp, header=excluded.header, at=excluded.at""",
            req.cid,
            req.id,
            fingerprint,
            out[1],
            self.wall(),
        )

    # --- housekeeping ---------------------------------------------------------------------
    def tick(self, lag: float = 0.0) -> list[Outbound]:
        """Housekeeping, in a short transaction of its own: expire silent peers (telling the
        downloads they served), old cached replies and hashes waiting too long.

        ``lag``: seconds since the loop last found no request waiting. Leases are measured up
        to then, not up to now: heartbeats still queued behind slow work must not count as
        missed."""
        self._forget_news()
        failed = self._overdue_hashes()
        try:
            self.store.begin()
            now = self.clock()
            self.presence.mark_drained(now - lag)
            gone = self.presence.expire(now, now - lag)
            self.store.run("DELETE FROM replies WHERE at < ?", self.wall() - REPLY_TTL)
            pushes = self._pushes()
            self.store.commit()
        except StoreError as exc:
            log.exception("housekeeping failed")
            self._rollback()
            self._forget_news()
            if exc.fatal:
                raise
            return failed
        if gone:
            log.info("%d silent peer(s) dropped", gone)
        return failed + pushes

    def _overdue_hashes(self) -> list[Outbound]:
        """Requests whose hash never came back (a pool that failed): answered, not forgotten."""
        err = TorrentError(Code.INTERNAL, "the tracker could not check the password; try again")
        return [(w.message.ident, Reply.failure(w.request.id, err).encode()) for w in self.hashes.overdue()]

    def notified(self, payloads: list[str]) -> list[Outbound]:
        """Pushes other trackers asked us to deliver to our connections."""
        return self.postman.received(payloads)

    def _rollback(self) -> None:
        try:
            self.store.rollback()
        except StoreError:
            log.exception("rollback failed")


def _decode(m: Inbound) -> Request | ProtocolError:
    try:
        return Request.decode(m.frames)
    except ProtocolError as exc:
        return exc
