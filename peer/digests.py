"""A file's piece digests, fetched from holders and checked against the root the tracker keeps.

The tracker stores only each file's root (SHA-256 over its piece digests), so its messages stay
small whatever the file's size; a downloader asks holders for the digests, page by page, and
accepts them only if they hash to that root. A holder that sends wrong digests, or none in
time, is simply not believed: the others are asked. Several holders are asked at once, so one
that is gone costs nothing but its socket; the coordinator polls this from its own loop.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import zmq

from broker.guard import PEER_INTERVAL, ConnectionGuard
from broker.keys import KeyPair
from broker.sockets import configure_dealer, piece_limits, recv_bounded
from messages.errors import Code, LocalError, ProtocolError
from messages.pieces import PieceReply, PieceRequest
from messages.protocol import DIGEST_SIZE, DIGESTS_PER_PAGE, OP_GET_DIGESTS, PIECE_FRAMES
from messages.records import FileMeta, Grant, Holder

from .hashing import root_hash

log = logging.getLogger(__name__)
_ids = itertools.count(1)
AT_ONCE = 3  # holders asked at the same time
RETRY_AFTER = 5.0  # seconds before a holder that failed is asked again


def page_count(meta: FileMeta) -> int:
    return (meta.num_pieces + DIGESTS_PER_PAGE - 1) // DIGESTS_PER_PAGE


@dataclass(slots=True)
class _Asking:
    holder: Holder
    sock: zmq.Socket
    guard: ConnectionGuard  # what this holder may make us hold: the pages we asked for
    deadline: float
    pages: dict[int, bytes] = field(default_factory=dict)
    ids: dict[int, int] = field(default_factory=dict)  # request id -> page


class DigestFetch:
    """Asks holders for the digests; ``poll`` returns them once one holder's set checks out."""

    def __init__(self, ctx: zmq.Context, meta: FileMeta, keys: KeyPair, timeout: float) -> None:
        self.ctx, self.meta, self.keys, self.timeout = ctx, meta, keys, timeout
        self.asking: dict[str, _Asking] = {}
        self.failed: dict[str, float] = {}  # holder endpoint -> when it failed
        self.reasons: list[str] = []

    def offer(self, holders: list[Holder], grant: Grant, now: float) -> None:
        """Start asking listed holders we are not asking yet, up to AT_ONCE at a time."""
        for h in holders:
            if len(self.asking) >= AT_ONCE:
                return
            if h.endpoint in self.asking or now - self.failed.get(h.endpoint, -1e9) < RETRY_AFTER:
                continue
            try:
                self.asking[h.endpoint] = self._ask(h, grant, now)
            except zmq.ZMQError as exc:
                self._fail(h.endpoint, f"cannot reach {h.user}: {exc}", now)

    def _ask(self, h: Holder, grant: Grant, now: float) -> _Asking:
        sock = self.ctx.socket(zmq.DEALER)
        limits = piece_limits(self.meta.piece_size)
        try:
            server = "" if h.plain else h.key
            configure_dealer(sock, limits, self.keys if server else None, server)
            most = page_count(self.meta) * limits.max_msg
            guard = ConnectionGuard(sock, most, most, stall=None, scan_every=0, interval=PEER_INTERVAL)
            sock.connect(h.endpoint)
        except zmq.ZMQError:
            sock.close(linger=0)
            raise
        asking = _Asking(h, sock, guard, now + self.timeout)
        for page in range(page_count(self.meta)):
            req = PieceRequest(next(_ids), self.meta.group, self.meta.name, page, grant, op=OP_GET_DIGESTS)
            sock.send_multipart(req.encode())
            asking.ids[req.id] = page
        return asking

    def poll(self, timeout_ms: int) -> bytes | None:
        """Wait up to ``timeout_ms`` for replies; the digests once one holder's are all in.

        Looks at least every guard PEER_INTERVAL at what each holder makes us hold (see _guard)."""
        end = time.monotonic() + timeout_ms / 1000
        while True:
            digests = self._poll_once(max(0, min(timeout_ms, int(PEER_INTERVAL * 1000))))
            if digests is not None or time.monotonic() >= end or not self.asking:
                return digests

    def _poll_once(self, timeout_ms: int) -> bytes | None:
        poller = zmq.Poller()
        for a in self.asking.values():
            poller.register(a.sock, zmq.POLLIN)
        ready = dict(poller.poll(timeout_ms)) if self.asking else {}
        now = time.monotonic()
        for endpoint, a in list(self.asking.items()):
            if a.sock in ready:
                digests = self._take(endpoint, a, now)
                if digests is not None:
                    return digests
            if endpoint not in self.asking:
                continue
            if a.guard.check(now):  # more than the pages we asked for: a reply that never ends
                self._fail(endpoint, f"{a.holder.user} sent more than it was asked for", now)
            elif a.deadline <= now:
                self._fail(endpoint, f"{a.holder.user} sent no piece digests in {self.timeout:.0f}s", now)
        return None

    def _take(self, endpoint: str, a: _Asking, now: float) -> bytes | None:
        while True:
            try:
                reply = PieceReply.decode(recv_bounded(a.sock, PIECE_FRAMES, zmq.NOBLOCK, guard=a.guard))
            except zmq.Again:
                return None
            except ProtocolError:
                continue
            page = a.ids.get(reply.id)
            if page is None:
                continue
            if reply.error is not None:
                self._fail(endpoint, f"{a.holder.user}: {reply.error.message}", now)
                return None
            a.pages[page] = bytes(reply.payload)
            if len(a.pages) == len(a.ids):
                return self._check(endpoint, a, now)

    def _check(self, endpoint: str, a: _Asking, now: float) -> bytes | None:
        digests = b"".join(a.pages[i] for i in range(len(a.pages)))
        if len(digests) == self.meta.num_pieces * DIGEST_SIZE and root_hash(digests) == self.meta.root:
            self.close()
            return digests
        self._fail(endpoint, f"{a.holder.user} sent piece digests that do not match the file's root", now)
        return None

    def _fail(self, endpoint: str, reason: str, now: float) -> None:
        log.info("no digests: %s", reason)
        self.reasons.append(reason)
        self.failed[endpoint] = now
        a = self.asking.pop(endpoint, None)
        if a is not None:
            a.guard.close()
            a.sock.close(linger=0)

    def close(self) -> None:
        for a in self.asking.values():
            a.guard.close()
            a.sock.close(linger=0)
        self.asking.clear()

    def error(self) -> LocalError:
        why = "; ".join(self.reasons[-3:]) or "no online peer holds it"
        return LocalError(
            Code.NO_HOLDERS, f"cannot get the piece digests of [{self.meta.group}] {self.meta.name}: {why}"
        )
