"""A DEALER client for request/reply with ids, timeouts and retries (Lazy Pirate, with DEALER).

Each request carries an id; replies with other ids are stale (answers to attempts we gave up on)
and are dropped. On a timeout the socket is closed with LINGER 0 and made anew, so a dead link
cannot keep queued requests, and the same request (same id) is sent again: the tracker answers a
retried write from its reply cache rather than doing it twice.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import zmq

from messages.control import Reply, Request
from messages.errors import Code, LocalError, ProtocolError
from messages.protocol import CONTROL_FRAMES, REQUEST_RETRIES, REQUEST_TIMEOUT
from messages.schema import validate_args

from .sockets import LIMITS, dealer, recv_bounded

log = logging.getLogger(__name__)


class ControlClient:
    """Talks to the tracker. Owned by one thread: make one per thread that needs the tracker."""

    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        *,
        timeout: float = REQUEST_TIMEOUT,
        retries: int = REQUEST_RETRIES,
        cid: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.timeout = timeout
        self.retries = retries
        self.cid = cid or secrets.token_hex(8)
        self._ids = itertools.count(1)
        self._sock: zmq.Socket | None = None

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            self._sock = dealer(self.ctx, self.endpoint, LIMITS["control"])
        return self._sock

    def close(self) -> None:
        self.reset()

    def call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Reply:
        """Send one request and return its reply (which may be an error reply).

        Raises LocalError(TIMEOUT) when the tracker did not answer any attempt, and
        LocalError for arguments the tracker would refuse anyway.
        """
        req_id, frames = self.build(op, args or {}, token=token)
        timeout = self.timeout if timeout is None else timeout
        attempts = 1 + (self.retries if retries is None else retries)
        for attempt in range(attempts):
            self.send(frames)
            reply = self.receive(req_id, time.monotonic() + timeout)
            if reply is not None:
                return reply
            log.info("no reply to %s from %s (attempt %d/%d)", op, self.endpoint, attempt + 1, attempts)
            self.reset()
        raise LocalError(Code.TIMEOUT, f"tracker at {self.endpoint} did not answer {op}")

    def build(self, op: str, args: dict[str, Any], *, token: str | None = None) -> tuple[int, list[bytes]]:
        """A validated request with a fresh id, encoded; retries resend these same frames."""
        try:
            validate_args(op, args)
        except ProtocolError as exc:
            raise LocalError(exc.code, exc.message) from None
        req = Request(id=next(self._ids), op=op, args=args, cid=self.cid, token=token)
        return req.id, req.encode()

    def send(self, frames: list[bytes]) -> None:
        self._socket().send_multipart(frames, copy=False)

    def receive(self, req_id: int, deadline: float) -> Reply | None:
        """The reply to ``req_id`` if it arrives before ``deadline``; stale replies are dropped."""
        sock = self._socket()
        while True:
            left = deadline - time.monotonic()
            if not sock.poll(int(max(0.0, left) * 1000), zmq.POLLIN):
                return None
            try:
                reply = Reply.decode(recv_bounded(sock, CONTROL_FRAMES))
            except ProtocolError as exc:
                log.warning("malformed reply from tracker: %s", exc)
                continue
            if reply.id == req_id:
                return reply
            log.debug("dropping stale reply %d", reply.id)

    def reset(self) -> None:
        """Drop the socket (and whatever it still queues); the next send makes a new one."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call of an AsyncControl ended: its reply, or ``None`` when it timed out."""

    op: str
    reply: Reply | None


class AsyncControl:
    """One tracker call at a time without blocking: for a thread whose loop must keep moving.

    The owner starts a call and polls for its outcome from its own loop; a call that outlives
    its timeout is abandoned (socket made anew) and reported as ``None``, never retried here:
    the owner decides whether the call still matters.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.client = ControlClient(ctx, endpoint, timeout=timeout, retries=0)
        self.timeout = timeout
        self.op: str | None = None
        self._id = 0
        self._deadline = 0.0

    @property
    def busy(self) -> bool:
        return self.op is not None

    def start(self, op: str, args: dict[str, Any], *, token: str | None = None) -> None:
        self._id, frames = self.client.build(op, args, token=token)
        self.client.send(frames)
        self.op, self._deadline = op, time.monotonic() + self.timeout

    def poll(self) -> Outcome | None:
        """The outcome once the call ended (answered or timed out); None while still waiting."""
        if self.op is None:
            return None
        reply = self.client.receive(self._id, 0.0)  # only what has already arrived
        if reply is None and time.monotonic() < self._deadline:
            return None
        if reply is None:
            self.client.reset()
        op, self.op = self.op, None
        return Outcome(op, reply)

    def close(self) -> None:
        self.client.close()
