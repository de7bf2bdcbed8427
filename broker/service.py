"""A ROUTER service: one socket, one thread, one poll loop (the Majordomo broker's shape).

The loop drains what is already waiting into a batch (bounded in messages and in bytes),
hands the batch to the handler, a sans-I/O core that maps it to replies, and sends them.
Batching is what lets the tracker commit many writes with one fsync before it acknowledges
any of them (group commit); the byte bound keeps one batch from holding much memory whatever
the senders send. Each inbound message carries what ZeroMQ knows of its sender: the CURVE key
it authenticated and the address it came from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import zmq

from messages.frames import as_bytes

from .guard import INTERVAL, ConnectionGuard
from .keys import KeyPair
from .sockets import Limits, bound_endpoint, recv_bounded, router

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Inbound:
    ident: bytes  # the ROUTER's routing id of the sender's connection
    frames: list[Any]  # the message after the routing id
    key: str = ""  # the sender's CURVE public key (Z85) as ZeroMQ authenticated it; "" if none
    address: str = ""  # the sender's IP address as ZeroMQ saw it


Outbound = tuple[bytes, list[Any]]  # (routing id, frames)
BatchHandler = Callable[[list[Inbound]], Iterable[Outbound]]


class Watch(Protocol):
    """Something else the loop polls beside its socket: a database listener's descriptor, or
    an inproc socket of results from worker threads."""

    def pollable(self) -> zmq.Socket | int | None: ...  # None while there is nothing to poll
    def ready(self) -> Iterable[Outbound]:
        """Called when it is readable (and at every tick): messages to send."""
        ...


BATCH_BYTES = 4 * 1024 * 1024
BATCH_FRAMES = 16 * 1024  # frames cost time to read even when dropped: bound a batch's work too


def frames_size(frames: list[Any]) -> int:
    return sum(len(getattr(f, "buffer", f)) for f in frames)


def _property(frame: Any, name: str) -> str:
    try:
        return str(frame.get(name)) if hasattr(frame, "get") else ""
    except zmq.ZMQError:  # not set for this connection (no CURVE)
        return ""


class RouterService:
    def __init__(
        self,
        ctx: zmq.Context,
        bind: str,
        handler: BatchHandler,
        limits: Limits,
        *,
        keys: KeyPair | None = None,
        batch: int = 256,
        before_send: Callable[[list[Any]], None] | None = None,
        guard_interval: float = INTERVAL,
    ) -> None:
        """``handler`` maps a batch to its replies (a sans-I/O core); ``before_send`` runs before
        each reply goes out, e.g. to pace replies under an upload limit. With ``keys`` the
        socket is a CURVE server."""
        self.sock = router(ctx, bind, limits, keys)
        self.guard = ConnectionGuard(self.sock, limits.backlog, limits.backlog_total, interval=guard_interval)
        self.endpoint = bound_endpoint(self.sock)
        self.limits = limits
        self.handler = handler
        self.batch = batch
        self.before_send = before_send
        self.dropped = 0  # replies we could not deliver (peer gone or its queue full)
        self.empty_at = time.monotonic()  # when the loop last found nothing waiting to be read

    def run(
        self,
        stop: threading.Event,
        on_tick: Callable[[], Iterable[Outbound] | None] | None = None,
        tick: float = 0.5,
        watches: list[Watch] | None = None,
    ) -> None:
        """Serve until ``stop`` is set; ``on_tick`` runs at least every ``tick`` seconds and may
        return messages to send (pushes), as may each watch when it is readable."""
        next_tick = time.monotonic() + tick
        watches = watches or []
        try:
            while not stop.is_set():
                poller, polled = self._poller(watches)
                timeout = max(0.0, next_tick - time.monotonic())
                ready = dict(poller.poll(int(min(timeout, self.guard.interval) * 1000)))
                if not ready:
                    self.empty_at = time.monotonic()
                if self.sock in ready:
                    self._serve_batch()
                for fd in self.guard.check(time.monotonic()):
                    self.guard.shutdown(fd)
                due = time.monotonic() >= next_tick
                for w, p in polled:
                    if due or (p is not None and p in ready):
                        self._send_all(w.ready())
                if on_tick is not None and due:
                    self._send_all(on_tick() or ())
                    next_tick = time.monotonic() + tick
        finally:
            self.guard.close()
            self.sock.close(linger=0)

    def _poller(self, watches: list[Watch]) -> tuple[zmq.Poller, list[tuple[Watch, Any]]]:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        polled = []
        for w in watches:
            p = w.pollable()
            if p is not None and p != -1:
                poller.register(p, zmq.POLLIN)
            polled.append((w, p))
        return poller, polled

    def _send_all(self, messages: Iterable[Outbound]) -> None:
        for ident, frames in messages:
            self.send(ident, frames)

    def take_batch(self) -> list[Inbound]:
        """What is waiting, up to ``batch`` messages, BATCH_BYTES or BATCH_FRAMES, whichever
        comes first."""
        batch: list[Inbound] = []
        size = 0
        frames_before = self.guard.frames
        while (
            len(batch) < self.batch
            and size < BATCH_BYTES
            and self.guard.frames - frames_before < BATCH_FRAMES
        ):
            try:
                frames = recv_bounded(
                    self.sock, self.limits.max_frames, zmq.NOBLOCK, copy=False, guard=self.guard
                )
            except zmq.Again:
                self.empty_at = time.monotonic()  # everything sent before now is in this batch
                break
            size += frames_size(frames)
            first = frames[0]
            key, address = _property(first, "User-Id"), _property(first, "Peer-Address")
            batch.append(Inbound(as_bytes(first), frames[1:], key, address))
        return batch

    def _serve_batch(self) -> None:
        batch = self.take_batch()
        if batch:
            for ident, reply in self.handler(batch):
                if self.before_send is not None:
                    self.before_send(reply)
                self.send(ident, reply)

    def send(self, ident: bytes, frames: list[Any]) -> bool:
        """Send without blocking; a gone or stalled peer costs us a dropped reply, not a hang."""
        try:
            self.sock.send_multipart([ident, *frames], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self.dropped += 1
            log.debug("reply dropped: peer queue full")
            return False
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            self.dropped += 1
            log.debug("reply dropped: peer gone")
            return False
        return True
