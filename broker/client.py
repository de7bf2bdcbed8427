"""A DEALER client for request/reply with ids, timeouts and retries (Lazy Pirate, with DEALER).

Each request carries an id; replies with other ids are stale (answers to attempts we gave up on)
and are dropped. On a timeout the same request (same client id and request id) is sent again:
trackers answer a retried write from their shared reply cache rather than doing it twice. With
several trackers the socket is first closed with LINGER 0 and made anew on the next one, so a
dead link cannot keep queued requests. With one tracker the socket stays: a tracker that is
slow is not dead (ZMTP heartbeats find a dead link and ZeroMQ reconnects by itself), and a new
socket would cost it one more CURVE handshake just when it is short of time; peers that did so
every second under load stopped getting heartbeats through at all (``scripts/bench --scale``).
The tracker may also push messages on the same socket; they go to ``on_push``. Every socket is
a CURVE client of the trackers' key; a handshake the tracker refused is reported as such, not
as a silent timeout.
"""

from __future__ import annotations

import itertools
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from messages.control import Push, Reply, Request, decode_inbound
from messages.errors import Code, LocalError, ProtocolError
from messages.protocol import CONTROL_FRAMES, REQUEST_RETRIES, REQUEST_TIMEOUT
from messages.schema import validate_args

from .sockets import LIMITS, dealer, recv_bounded
from .trackers import TrackerSet

log = logging.getLogger(__name__)
BUSY_PATIENCE = 60.0  # seconds of BUSY replies a call waits through before it gives the error

_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


class ControlClient:
    """Talks to the tracker. Owned by one thread: make one per thread that needs the tracker."""

    def __init__(
        self,
        ctx: zmq.Context,
        trackers: TrackerSet,
        *,
        timeout: float = REQUEST_TIMEOUT,
        retries: int = REQUEST_RETRIES,
        cid: str | None = None,
        on_push: Callable[[Push], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.trackers = trackers
        self.timeout = timeout
        self.retries = retries
        self.cid = cid or secrets.token_hex(8)
        self.on_push = on_push
        self._ids = itertools.count(1)
        self._sock: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self.endpoint = ""  # the tracker the socket is connected to

    @property
    def socket(self) -> zmq.Socket:
        if self._sock is None:
            self.endpoint = self.trackers.current()
            self._sock = dealer(
                self.ctx, self.endpoint, LIMITS["control"], self.trackers.keys, self.trackers.server_key
            )
            self._monitor = self._sock.get_monitor_socket(_HANDSHAKE_FAILED)
        return self._sock

    def close(self) -> None:
        self.reset()

    @property
    def connected(self) -> bool:
        return self._sock is not None

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

        Raises LocalError(TIMEOUT) when no tracker answered any attempt, LocalError(BAD_KEY)
        when the tracker refused our secure handshake, and LocalError for arguments the
        tracker would refuse anyway. A tracker too busy for the request now (BUSY: say, a burst
        of logins) is asked again after a growing, jittered pause, for BUSY_PATIENCE seconds.
        """
        req_id, frames = self.build(op, args or {}, token=token)
        timeout = self.timeout if timeout is None else timeout
        attempts = 1 + (self.retries if retries is None else retries)
        refused = 0  # attempts in a row whose secure handshake failed
        busy_until, pause = time.monotonic() + BUSY_PATIENCE, 0.1
        attempt = 0
        while attempt < attempts:
            self.send(frames)
            reply = self.receive(req_id, time.monotonic() + timeout)
            busy = reply is not None and reply.error is not None and reply.error.code == Code.BUSY
            if busy and time.monotonic() + pause < busy_until:
                time.sleep(pause * random.uniform(0.5, 1.5))
                pause = min(2.0, pause * 2)
                continue
            if reply is not None:
                return reply
            attempt += 1
            endpoint = self.endpoint
            refused = refused + 1 if self.handshake_failed() else 0
            if refused >= 2 or (refused and attempt == attempts):
                self.reset()
                raise LocalError(
                    Code.BAD_KEY,
                    f"the tracker at {endpoint} failed the secure handshake: it does not hold the "
                    f"key we trust ({self.trackers.server_key[:10]}...)",
                )
            log.info("no reply to %s from %s (attempt %d/%d)", op, endpoint, attempt, attempts)
            self.unanswered(endpoint)
        raise LocalError(
            Code.TIMEOUT, f"no tracker answered {op} (tried {', '.join(self.trackers.endpoints)})"
        )

    def build(self, op: str, args: dict[str, Any], *, token: str | None = None) -> tuple[int, list[bytes]]:
        """A validated request with a fresh id, encoded; retries resend these same frames."""
        try:
            validate_args(op, args)
        except ProtocolError as exc:
            raise LocalError(exc.code, exc.message) from None
        req = Request(id=next(self._ids), op=op, args=args, cid=self.cid, token=token)
        return req.id, req.encode()

    def send(self, frames: list[bytes]) -> None:
        self.socket.send_multipart(frames, copy=False)

    def receive(self, req_id: int, deadline: float) -> Reply | None:
        """The reply to ``req_id`` if it arrives before ``deadline``; stale replies are dropped,
        pushes handed to ``on_push`` on the way."""
        sock = self.socket
        while True:
            left = deadline - time.monotonic()
            if not sock.poll(int(max(0.0, left) * 1000), zmq.POLLIN):
                return None
            try:
                msg = decode_inbound(recv_bounded(sock, CONTROL_FRAMES))
            except ProtocolError as exc:
                log.warning("malformed message from tracker: %s", exc)
                continue
            if isinstance(msg, Push):
                self._push(msg)
            elif msg.id == req_id:
                return msg
            else:
                log.debug("dropping stale reply %d", msg.id)

    def wait_pushes(self, timeout: float) -> None:
        """Hand pushes that arrive within ``timeout`` to ``on_push`` (for an idle thread)."""
        self.receive(-1, time.monotonic() + timeout)

    def _push(self, push: Push) -> None:
        if self.on_push is None:
            return
        try:
            self.on_push(push)
        except Exception:  # a bad push must not take the thread down
            log.exception("handling a %s push", push.kind)

    def handshake_failed(self) -> bool:
        """Whether a CURVE handshake of this socket failed (a wrong tracker key, or a tracker
        that died mid-handshake: callers count repeats before blaming the key)."""
        mon, failed = self._monitor, False
        while mon is not None and mon.poll(0):
            failed |= bool(recv_monitor_message(mon)["event"] & _HANDSHAKE_FAILED)
        return failed

    def unanswered(self, endpoint: str) -> None:
        """A call to ``endpoint`` timed out: with several trackers, move to the next one on a
        new socket; with one, keep the socket (see the module's docstring)."""
        if len(self.trackers.endpoints) > 1:
            self.reset()
            self.trackers.failed(endpoint)

    def reset(self) -> None:
        """Drop the socket (and whatever it still queues); the next send makes a new one."""
        if self._sock is not None:
            if self._monitor is not None:
                self._sock.disable_monitor()
                self._monitor.close(linger=0)
                self._monitor = None
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
    its timeout is abandoned (on the next tracker, if there are several) and reported as ``None``,
    never retried here: the owner decides whether the call still matters. Pushes arriving on
    the socket go to ``on_push``.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        trackers: TrackerSet,
        *,
        timeout: float = REQUEST_TIMEOUT,
        on_push: Callable[[Push], None] | None = None,
    ) -> None:
        self.client = ControlClient(ctx, trackers, timeout=timeout, retries=0, on_push=on_push)
        self.timeout = timeout
        self.op: str | None = None
        self._id = 0
        self._deadline = 0.0

    @property
    def busy(self) -> bool:
        return self.op is not None

    def follow(self) -> None:
        """Move to the tracker now in use (another thread found ours gone): drop the socket;
        a call under way is abandoned and reported unanswered by the next ``poll``."""
        self.client.reset()
        self._deadline = 0.0

    def start(self, op: str, args: dict[str, Any], *, token: str | None = None) -> None:
        self._id, frames = self.client.build(op, args, token=token)
        self.client.send(frames)
        self.op, self._deadline = op, time.monotonic() + self.timeout

    def poll(self) -> Outcome | None:
        """The outcome once the call ended (answered or timed out); None while still waiting."""
        if self.op is None:
            if self.client.connected:  # idle: still take pushes
                self.client.wait_pushes(0)
            return None
        reply = self.client.receive(self._id, 0.0)  # only what has already arrived
        if reply is None and time.monotonic() < self._deadline:
            return None
        if reply is None:
            self.client.unanswered(self.client.endpoint)
        op, self.op = self.op, None
        return Outcome(op, reply)

    def close(self) -> None:
        self.client.close()
