"""A tracker core on a real database (SQLite or PostgreSQL), driven with frames: no sockets.

In the spirit of h11's ConnectionPair: a test speaks the wire protocol to ``TrackerCore`` and
reads what it answers, so every rule is reached in milliseconds.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any

from broker.service import Inbound
from messages import protocol as P
from messages.control import Push, Reply, Request, decode_inbound
from messages.grants import GrantSigner
from messages.records import FileMeta
from tracker.core import TrackerCore
from tracker.passwords import scrypt
from tracker.sqlite_store import SqliteStore
from tracker.store import Store

PIECE = 16 * 1024


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def file_meta(
    name: str = "movie.mkv", group: str = "films", size: int = 3 * PIECE - 5, seed: bytes = b"a"
) -> tuple[FileMeta, bytes]:
    count = (size + PIECE - 1) // PIECE
    digests = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(count))
    root = hashlib.sha256(digests).hexdigest()
    return FileMeta(group=group, name=name, size=size, piece_size=PIECE, root=root), digests


def key_of(user: str) -> str:
    """A stand-in for the CURVE key ZeroMQ would authenticate for ``user``'s peer (40 chars)."""
    return (user * 40)[:40]


SIGNER = GrantSigner(b"tracker-secret".ljust(32, b"."))


class TrackerPair:
    """One tracker core and as many clients as a test wants; each user speaks from its own key
    and its own connection (routing id ``route-<user>``)."""

    def __init__(self, db: str | Store, *, expiry: float = 5.0) -> None:
        """``db``: an open store (SQLite or PostgreSQL), or the path of a SQLite file to open."""
        self.store = SqliteStore(db) if isinstance(db, str) else db
        self.clock = Clock()
        self.wall = Clock(1_800_000_000.0)
        self.core = TrackerCore(
            self.store, SIGNER, expiry=expiry, grant_lifetime=60.0, clock=self.clock, wall=self.wall
        )
        self.ids = itertools.count(1)
        self.tokens: dict[str, str] = {}
        self.pushed: list[tuple[bytes, Push]] = []  # every push the core sent, in order

    def close(self) -> None:
        self.store.close()

    # --- raw frames -----------------------------------------------------------------------
    def batch(
        self, *messages: list[Any], key: str = "", route: bytes = b"", keys: list[str] | None = None
    ) -> list[list[Any]]:
        """Hand several messages to the core as one batch (each from ``keys[i]``, or all from
        ``key``); their replies' frames, in order. Pushes sent along are kept in ``pushed``."""
        routes = [route or f"c{i}".encode() for i in range(len(messages))]
        senders = keys or [key] * len(messages)
        inbound = [
            Inbound(r, list(m), k, "127.0.0.1") for r, m, k in zip(routes, messages, senders, strict=True)
        ]
        out = self.core.handle_batch(inbound)
        while jobs := self.core.take_jobs():  # password hashes, done here instead of in a pool
            out += self.core.finish([(j.id, scrypt(j.password, j.salt)) for j in jobs])
        replies: dict[bytes, list[list[Any]]] = {}
        for ident, frames in out:
            item = decode_inbound(frames)
            if isinstance(item, Push):
                self.pushed.append((ident, item))
            else:
                replies.setdefault(ident, []).append(frames)
        return [replies[r].pop(0) for r in routes]

    def request(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        cid: str = "test",
        rid: int | None = None,
    ) -> Request:
        return Request(
            id=next(self.ids) if rid is None else rid, op=op, args=args or {}, cid=cid, token=token
        )

    # --- one call -------------------------------------------------------------------------
    def call(
        self, op: str, args: dict[str, Any] | None = None, *, as_user: str | None = None, **kw: Any
    ) -> Reply:
        token = self.tokens[as_user] if as_user is not None else kw.pop("token", None)
        key = kw.pop("key", key_of(as_user) if as_user else "")
        route = f"route-{as_user}".encode() if as_user else b""
        req = self.request(op, args, token=token, **kw)
        return Reply.decode(self.batch(req.encode(), key=key, route=route)[0])

    def ok(self, op: str, args: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        reply = self.call(op, args, **kw)
        assert reply.error is None, f"{op} failed: {reply.error}"
        return reply.result

    def refused(self, code: str, op: str, args: dict[str, Any] | None = None, **kw: Any) -> str:
        reply = self.call(op, args, **kw)
        assert reply.error is not None, f"{op} should have been refused with {code}"
        assert reply.error.code == code, f"{op}: got {reply.error.code}: {reply.error.message}"
        return reply.error.message

    # --- set-up helpers -------------------------------------------------------------------
    def user(self, name: str, *, login: bool = True) -> str:
        self.ok(P.OP_CREATE_USER, {"user": name, "password": f"pw-{name}"})
        if login:
            args = {"user": name, "password": f"pw-{name}"}
            self.tokens[name] = self.ok(P.OP_LOGIN, args, key=key_of(name))["token"]
        return name

    def group(self, admin: str, group: str, *members: str) -> None:
        self.ok(P.OP_CREATE_GROUP, {"group": group}, as_user=admin)
        for m in members:
            self.ok(P.OP_JOIN_GROUP, {"group": group}, as_user=m)
            self.ok(P.OP_ACCEPT_REQUEST, {"group": group, "user": m}, as_user=admin)

    def online(self, user: str, port: int, shares: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        args = {"endpoint": f"tcp://127.0.0.1:{port}", "plain": False, "shares": shares or []}
        return self.ok(P.OP_ANNOUNCE, args, as_user=user)

    def share(self, user: str, meta: FileMeta) -> dict[str, Any]:
        return self.ok(P.OP_SHARE_FILE, meta.share_args(), as_user=user)
