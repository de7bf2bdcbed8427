"""A download worker: takes assignments from the ventilator, fetches pieces, verifies them.

Each worker owns its sockets (a PULL from the ventilator, a PUSH to the sink, one DEALER per
holder it talks to) and keeps several requests in flight at once, so one worker hides the
round trip to several holders. Hashing happens here, in parallel threads (hashlib releases the
GIL); only verified bytes go on to the sink, as the received frame itself (no copy).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
import time

import zmq

from broker.sockets import configure_dealer
from messages.errors import Code, ProtocolError
from messages.pieces import PieceRequest, decode_piece_reply, encode_piece_request
from messages.pipeline import READY, Assignment, Result
from messages.protocol import PIECE_MAX_MSG
from messages.records import FileMeta, Grant

from .hashing import digest_at

log = logging.getLogger(__name__)

# Error replies after which a holder is not asked again in this download.
DISTRUST = {Code.FILE_CHANGED, Code.IO_ERROR}


class Fetcher(threading.Thread):
    def __init__(
        self,
        ctx: zmq.Context,
        ventilator: str,
        sink: str,
        meta: FileMeta,
        digests: bytes,
        stop: threading.Event,
        name: str,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.ctx = ctx
        self.ventilator = ventilator
        self.sink = sink
        self.meta = meta
        self.digests = digests
        self.stop_event = stop
        self._ids = itertools.count(1)
        self._dealers: dict[str, zmq.Socket] = {}
        self._pending: dict[int, tuple[Assignment, float]] = {}

    def run(self) -> None:
        pull = self.ctx.socket(zmq.PULL)
        push = self.ctx.socket(zmq.PUSH)
        self._push = push
        try:
            pull.connect(self.ventilator)
            push.connect(self.sink)
            push.send(READY)
            self._loop(pull)
        except zmq.ContextTerminated:
            pass
        finally:
            for sock in self._dealers.values():
                sock.close(linger=0)
            pull.close(linger=0)
            push.close(linger=0)

    def _loop(self, pull: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        while not self.stop_event.is_set():
            events = dict(poller.poll(100))
            if pull in events:
                while True:
                    try:
                        frames = pull.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    a = Assignment.decode(frames)
                    try:
                        self._send(a, poller)
                    except zmq.ZMQError as exc:  # e.g. an endpoint zmq cannot connect to
                        self._drop(a.endpoint, poller)
                        msg = f"cannot connect to {a.holder}: {exc}"
                        self._report(Result(a.piece, a.holder, False, str(Code.IO_ERROR), msg, True))
            for endpoint, sock in list(self._dealers.items()):
                if sock in events:
                    self._drain(endpoint, sock)
            self._expire(poller)

    def _send(self, a: Assignment, poller: zmq.Poller) -> None:
        sock = self._dealers.get(a.endpoint)
        if sock is None:
            sock = self._dealers[a.endpoint] = self.ctx.socket(zmq.DEALER)
            poller.register(sock, zmq.POLLIN)
            configure_dealer(sock, max_msg=PIECE_MAX_MSG)
            sock.connect(a.endpoint)
        req_id = next(self._ids)
        try:
            grant = Grant.from_wire(a.grant)
        except ProtocolError as exc:
            self._report(Result(a.piece, a.holder, False, str(exc.code), exc.message))
            return
        req = PieceRequest(id=req_id, group=self.meta.group, file=self.meta.name, piece=a.piece, grant=grant)
        sock.send_multipart(encode_piece_request(req))
        self._pending[req_id] = (a, time.monotonic() + a.timeout)

    def _drain(self, endpoint: str, sock: zmq.Socket) -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                reply = decode_piece_reply(frames)
            except ProtocolError as exc:
                log.warning("malformed piece reply from %s: %s", endpoint, exc)
                continue
            entry = self._pending.get(reply.id)
            if entry is None or entry[0].endpoint != endpoint:
                continue  # an answer to a request we already gave up on
            del self._pending[reply.id]
            self._report(self._check(entry[0], reply.piece, reply.payload, reply.error))

    def _check(self, a: Assignment, piece: int, payload: object, error: object) -> Result:
        if error is not None:
            code = getattr(error, "code", Code.INTERNAL)
            return Result(a.piece, a.holder, False, str(code), str(error), bad_data=code in DISTRUST)
        expected = self.meta.piece_len(a.piece)
        buf = payload.buffer  # type: ignore[attr-defined]
        if piece != a.piece or len(buf) != expected:
            return Result(
                a.piece, a.holder, False, "bad_piece", f"wrong piece or length from {a.holder}", True
            )
        if hashlib.sha256(buf).digest() != digest_at(self.digests, a.piece):
            return Result(
                a.piece, a.holder, False, "bad_piece", f"piece {a.piece} from {a.holder} failed SHA-256", True
            )
        return Result(a.piece, a.holder, True, payload=payload)

    def _expire(self, poller: zmq.Poller) -> None:
        now = time.monotonic()
        late = {a.endpoint for a, deadline in self._pending.values() if deadline <= now}
        for endpoint in late:
            # The link is suspect: drop the socket (and whatever it still queues) and fail every
            # request on it, so the pieces go to other holders at once.
            self._drop(endpoint, poller)
            for req_id, (a, _) in list(self._pending.items()):
                if a.endpoint == endpoint:
                    del self._pending[req_id]
                    self._report(Result(a.piece, a.holder, False, str(Code.TIMEOUT), f"{a.holder} timed out"))

    def _drop(self, endpoint: str, poller: zmq.Poller) -> None:
        sock = self._dealers.pop(endpoint, None)
        if sock is not None:
            poller.unregister(sock)
            sock.close(linger=0)

    def _report(self, result: Result) -> None:
        self._push.send_multipart(result.encode(), copy=False)
