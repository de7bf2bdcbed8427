"""A download worker: takes assignments from the ventilator, fetches and verifies pieces.

Each worker owns its sockets (a PULL from the ventilator, a PUSH to the sink, a PUSH to its
writer, one DEALER per holder it talks to) and keeps several requests in flight at once, so one
worker hides the round trip to several holders. Hashing happens here, in parallel threads
(hashlib releases the GIL); a verified piece goes to the worker's own writer thread
(peer/writer.py), which writes it and tells the sink, so a worker never waits on the disk.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import logging
import threading
import time

import zmq

from broker.guard import PEER_INTERVAL, ConnectionGuard
from broker.keys import KeyPair
from broker.sockets import configure_dealer, piece_limits, recv_bounded
from messages.errors import Code, ProtocolError
from messages.pieces import PieceReply, PieceRequest
from messages.pipeline import READY, Assignment, Result, Verified
from messages.protocol import PIECE_FRAMES
from messages.records import FileMeta

from .hashing import digest_at
from .piecewriter import PieceWriter
from .writer import START_TIMEOUT, Writer

log = logging.getLogger(__name__)

# Error replies after which a holder is not asked again in this download: its copy is broken.
DISTRUST = frozenset({Code.FILE_CHANGED, Code.IO_ERROR})
# Errors opening a socket to a holder that are ours (a busy peer out of sockets or descriptors):
# the piece is asked again later, the holder is not banned nor reported for them.
OUR_SIDE = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, zmq.ETERM})


class Fetcher(threading.Thread):
    def __init__(
        self,
        ctx: zmq.Context,
        pipes: tuple[str, str],
        meta: FileMeta,
        digests: bytes,
        writer: PieceWriter,
        keys: KeyPair,
        stop: threading.Event,
        name: str,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.ctx = ctx
        self.ventilator, self.sink = pipes
        self.meta = meta
        self.digests = digests
        # The writer stops once this worker has (its own flag): stopped on the download's flag,
        # it could leave first and a piece handed over after that would block on a PUSH with
        # nobody at the other end.
        self.writer = Writer(ctx, f"{name}-write", self.sink, writer, threading.Event(), f"{name}-writer")
        self.keys = keys
        self.stop_event = stop
        self._ids = itertools.count(1)
        self._dealers: dict[str, zmq.Socket] = {}
        self._guards: dict[str, ConnectionGuard] = {}  # per holder: what it may make us hold
        self._pending: dict[int, tuple[Assignment, float]] = {}
        self._poller = zmq.Poller()

    def run(self) -> None:
        # Sockets are made inside the try, so a context out of sockets ends this worker
        # cleanly (it never says READY, and the download says its workers did not start).
        sockets: list[zmq.Socket] = []
        to_writer: zmq.Socket | None = None
        try:
            to_writer = self.ctx.socket(zmq.PUSH)
            for kind in (zmq.PULL, zmq.PUSH):
                sockets.append(self.ctx.socket(kind))
            pull, push = sockets
            to_writer.bind(self.writer.inbox)
            self.writer.start()
            pull.connect(self.ventilator)
            push.connect(self.sink)
            if not self.writer.ready.wait(START_TIMEOUT) or not self.writer.up:
                return
            push.send(READY)
            self._loop(pull, push, to_writer)
        except zmq.ContextTerminated:
            pass
        except zmq.ZMQError as exc:
            log.warning("download worker %s stopped: %s", self.name, exc)
        finally:
            for endpoint in list(self._dealers):
                self._drop(endpoint)
            for sock in sockets:
                sock.close(linger=0)
            self.writer.stop_event.set()
            if self.writer.is_alive():
                self.writer.join(timeout=2)
            if to_writer is not None:  # after the writer: what it was handed is still written
                to_writer.close(linger=0)

    def _loop(self, pull: zmq.Socket, push: zmq.Socket, to_writer: zmq.Socket) -> None:
        self._poller.register(pull, zmq.POLLIN)
        while not self.stop_event.is_set():
            events = dict(self._poller.poll(int(PEER_INTERVAL * 1000) if self._pending else 100))
            if pull in events:
                self._take_assignments(pull, push)
            for endpoint, sock in list(self._dealers.items()):
                if sock in events:
                    self._drain(endpoint, sock, push, to_writer)
            self._guard(push)
            self._expire(push)

    def _take_assignments(self, pull: zmq.Socket, push: zmq.Socket) -> None:
        while True:
            try:
                a = Assignment.decode(pull.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            try:
                self._send(a)
            except zmq.ZMQError as exc:
                self._drop(a.holder)
                if exc.errno in OUR_SIDE:  # out of sockets or descriptors here: not the holder's fault
                    failed = Result.fail(a.piece, a.holder, Code.INTERNAL, f"cannot open a socket: {exc}")
                else:  # e.g. an endpoint zmq cannot connect to
                    failed = Result.bad_data(a.piece, a.holder, f"cannot connect: {exc}")
                push.send_multipart(failed.encode())

    def _send(self, a: Assignment) -> None:
        sock = self._dealers.get(a.holder)
        if sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            limits = piece_limits(self.meta.piece_size)
            try:
                configure_dealer(sock, limits, self.keys if a.key else None, a.key)
                guard = ConnectionGuard(
                    sock, limits.max_msg, limits.max_msg, stall=None, scan_every=0, interval=PEER_INTERVAL
                )
                sock.connect(a.holder)
            except zmq.ZMQError:
                sock.close(linger=0)
                raise
            self._dealers[a.holder], self._guards[a.holder] = sock, guard
            self._poller.register(sock, zmq.POLLIN)
        req = PieceRequest(
            id=next(self._ids), group=self.meta.group, file=self.meta.name, piece=a.piece, grant=a.grant
        )
        sock.send_multipart(req.encode())
        self._pending[req.id] = (a, time.monotonic() + a.timeout)

    def _drain(self, endpoint: str, sock: zmq.Socket, push: zmq.Socket, to_writer: zmq.Socket) -> None:
        while True:
            try:
                frames = recv_bounded(
                    sock, PIECE_FRAMES, zmq.NOBLOCK, copy=False, guard=self._guards[endpoint]
                )
            except zmq.Again:
                return
            try:
                reply = PieceReply.decode(frames)
            except ProtocolError as exc:
                log.warning("malformed piece reply from %s: %s", endpoint, exc)
                continue
            entry = self._pending.get(reply.id)
            if entry is None or entry[0].holder != endpoint:
                continue  # an answer to a request we already gave up on
            del self._pending[reply.id]
            failed = self._check(entry[0], reply)
            if failed is not None:
                push.send_multipart(failed.encode())
                continue
            piece = Verified(reply.piece, endpoint, reply.piece * self.meta.piece_size, reply.payload)
            try:  # never blocks while the writer runs (pieces in flight are far below the HWM)
                to_writer.send_multipart(piece.encode(), zmq.NOBLOCK, copy=False)
            except zmq.Again:
                why = "the download's writer thread stopped"
                push.send_multipart(Result.local(reply.piece, endpoint, Code.INTERNAL, why).encode())

    def _check(self, a: Assignment, reply: PieceReply) -> Result | None:
        """None when the reply holds the piece asked for, intact; otherwise what became of it."""
        if reply.error is not None:
            if reply.error.code in DISTRUST:
                return Result.bad_data(a.piece, a.holder, reply.error.message)
            return Result.fail(a.piece, a.holder, reply.error.code, reply.error.message)
        buf = reply.payload.buffer
        if reply.piece != a.piece or len(buf) != self.meta.piece_len(a.piece):
            return Result.bad_data(a.piece, a.holder, f"wrong piece or length from {a.holder}")
        if hashlib.sha256(buf).digest() != digest_at(self.digests, a.piece):
            return Result.bad_data(a.piece, a.holder, f"piece {a.piece} from {a.holder} failed SHA-256")
        return None

    def _guard(self, push: zmq.Socket) -> None:
        """A holder may make us hold its replies to what we asked of it, and no more: one that
        sends more (say, a reply that never ends) is dropped, its pieces asked of others."""
        now = time.monotonic()
        reply = piece_limits(self.meta.piece_size).max_msg
        asked: dict[str, int] = {}
        for a, _ in self._pending.values():
            asked[a.holder] = asked.get(a.holder, 0) + 1
        for endpoint, guard in list(self._guards.items()):
            guard.per_conn = guard.total = max(1, asked.get(endpoint, 0)) * reply
            if guard.check(now):
                self._drop(endpoint)
                for req_id, (a, _) in list(self._pending.items()):
                    if a.holder == endpoint:
                        del self._pending[req_id]
                        why = f"{a.holder} sent more than it was asked for"
                        push.send_multipart(Result.bad_data(a.piece, a.holder, why).encode())

    def _expire(self, push: zmq.Socket) -> None:
        now = time.monotonic()
        late = {a.holder for a, deadline in self._pending.values() if deadline <= now}
        for endpoint in late:
            # The link is suspect: drop the socket (and whatever it still queues) and fail every
            # request on it, so the pieces go to other holders at once.
            self._drop(endpoint)
            for req_id, (a, _) in list(self._pending.items()):
                if a.holder == endpoint:
                    del self._pending[req_id]
                    push.send_multipart(
                        Result.fail(a.piece, a.holder, Code.TIMEOUT, f"{a.holder} timed out").encode()
                    )

    def _drop(self, endpoint: str) -> None:
        guard = self._guards.pop(endpoint, None)
        if guard is not None:
            guard.close()
        sock = self._dealers.pop(endpoint, None)
        if sock is not None:
            self._poller.unregister(sock)
            sock.close(linger=0)
