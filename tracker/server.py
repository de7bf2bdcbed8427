"""The tracker process: a ROUTER service over the durable state, with group commit.

Every poll batch runs in one SQLite transaction, each request inside its own SAVEPOINT (so a
refused request undoes only itself); the batch commits once and only then are the replies sent.
An acknowledged write is therefore always on disk, and many writes share one fsync.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import threading
from collections import OrderedDict
from typing import Any

from broker.service import Message, RouterService
from broker.sockets import new_context, term_context
from messages.control import Reply, decode_request, encode_reply, error_reply, peek_id
from messages.errors import Code, ProtocolError, RemoteError, TorrentError
from messages.protocol import GRANT_LIFETIME, HEARTBEAT_EXPIRY, TRACKER_MAX_MSG
from messages.schema import WRITE_OPS

from .db import connect
from .handlers import HANDLERS, Context
from .online import Presence
from .state import State

log = logging.getLogger(__name__)

REPLY_CACHE_SIZE = 10_000  # answers to recent writes, for retried requests


class Tracker:
    def __init__(
        self,
        bind: str,
        db_path: str,
        *,
        expiry: float = HEARTBEAT_EXPIRY,
        grant_lifetime: float = GRANT_LIFETIME,
    ) -> None:
        self.ctx = new_context()
        self.conn = connect(db_path)
        self.state = State(self.conn)
        self.presence = Presence(expiry)
        self.hctx = Context(self.state, self.presence, secrets.token_hex(8), grant_lifetime)
        self.service = RouterService(self.ctx, bind, self._handle_batch, max_msg=TRACKER_MAX_MSG)
        self.endpoint = self.service.endpoint
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._replies: OrderedDict[tuple[str, int], tuple[bytes, list[bytes]]] = OrderedDict()

    def serve_forever(self) -> None:
        try:
            self.service.run(self._stop, on_tick=self.presence.expire, tick=0.5)
        finally:
            self.conn.close()
            term_context(self.ctx)

    def start(self) -> None:
        """Serve from a background thread (for in-process use: benchmarks, embedding)."""
        self._thread = threading.Thread(target=self.serve_forever, name="tracker", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the loop to end (safe from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _handle_batch(self, batch: list[Message]) -> list[Message]:
        replies: list[Message] = []
        cached: list[tuple[str, int]] = []
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for ident, frames in batch:
                replies.append((ident, self._handle_one(frames, cached)))
            self.conn.execute("COMMIT")
        except sqlite3.Error:
            # Nothing of this batch is durable, so nothing of it may be acknowledged.
            log.exception("commit failed; refusing the whole batch")
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self.state.forget_cached_sessions()
            for key in cached:
                self._replies.pop(key, None)
            err = RemoteError(Code.INTERNAL, "tracker could not store the change; try again")
            replies = [(ident, encode_reply(error_reply(peek_id(f), err))) for ident, f in batch]
        return replies

    def _handle_one(self, frames: list[Any], cached: list[tuple[str, int]]) -> list[bytes]:
        try:
            req = decode_request(frames)
        except ProtocolError as exc:
            return encode_reply(error_reply(peek_id(frames), exc))
        key = None
        if req.op in WRITE_OPS and req.cid:
            # A retry must be the very same request: a different one reusing the ids gets no
            # one else's answer (a login reply carries a token).
            key = (req.cid, req.id)
            fingerprint = hashlib.blake2b(bytes(frames[1]), digest_size=16).digest()
            hit = self._replies.get(key)
            if hit is not None and hit[0] == fingerprint:
                return hit[1]
        reply = self._run(req)
        out = encode_reply(reply)
        if key is not None:
            self._replies[key] = (fingerprint, out)
            cached.append(key)
            if len(self._replies) > REPLY_CACHE_SIZE:
                self._replies.popitem(last=False)
        return out

    def _run(self, req: Any) -> Reply:
        # Only writes need a savepoint (so a refused one undoes just itself); reads skip it.
        write = req.op in WRITE_OPS
        if write:
            self.conn.execute("SAVEPOINT req")
        try:
            reply = HANDLERS[req.op](self.hctx, req)
        except TorrentError as exc:
            if write:
                self.conn.execute("ROLLBACK TO req")
            reply = error_reply(req.id, exc)
        except sqlite3.Error:
            raise
        except Exception:  # a bug must cost one request, not the tracker
            log.exception("internal error in %s", req.op)
            if write:
                self.conn.execute("ROLLBACK TO req")
            reply = error_reply(req.id, RemoteError(Code.INTERNAL, f"internal error in {req.op}"))
        if write:
            self.conn.execute("RELEASE req")
        return reply
