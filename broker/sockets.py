"""Socket construction with the options every socket here needs, and bounded receiving.

LINGER is short everywhere so that closing never hangs on unsent messages (pyzmq#102,
libzmq#2586). ZeroMQ bounds a message only frame by frame (MAXMSGSIZE), so a hostile peer could
send one message of thousands of maximal frames: ``recv_bounded`` reads frame by frame and
keeps at most a message's worth, throwing the rest away, and small receive HWMs cap how many
messages libzmq queues per connection. That bounds what we hold once a message is ours, but not
what libzmq holds before: a message is readable only once all its frames are in, so a message
that never ends grows inside libzmq. ``broker.guard.ConnectionGuard`` bounds that, per
connection (``Limits.backlog``) and for a whole socket (``Limits.backlog_total``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import zmq

from messages import protocol as P

from .guard import ConnectionGuard
from .keys import KeyPair, client_curve, serve_curve

LINGER_MS = 200


@dataclass(frozen=True, slots=True)
class Limits:
    """What one socket accepts: bytes per frame, frames per message, messages queued."""

    max_msg: int  # ZMQ_MAXMSGSIZE: a longer frame drops the connection
    max_frames: int  # frames of a message kept (the routing id included on a ROUTER)
    rcvhwm: int = 1000  # messages queued per connection, inbound
    sndhwm: int = 1000  # messages queued per connection, outbound
    # Wire bytes libzmq may hold for one connection (the frames of a message not yet ended, and
    # whole messages not yet taken), and for all connections of a socket (see ConnectionGuard).
    # Our clients have a request or a few small ones outstanding; one that sends faster than it
    # is served, or a message that never ends, is hung up on.
    backlog: int = 256 * 1024
    backlog_total: int = 16 * 1024 * 1024


def new_context() -> zmq.Context:
    """A fresh Context per process (never shared across fork), short linger by default."""
    ctx = zmq.Context()
    ctx.linger = LINGER_MS
    return ctx


def _apply(sock: zmq.Socket, limits: Limits) -> None:
    sock.setsockopt(zmq.MAXMSGSIZE, limits.max_msg)
    sock.setsockopt(zmq.SNDHWM, limits.sndhwm)
    sock.setsockopt(zmq.RCVHWM, limits.rcvhwm)
    # A peer that vanished without a word is found by TCP keepalives. Not by ZMTP heartbeats:
    # in libzmq (4.3.5 and master, libzmq#4364, #3937) the heartbeat timer of a connection whose
    # input is stopped (its queue at RCVHWM) and whose peer hung up asserts (!_io_error) and
    # aborts the whole process, so any client could crash a tracker or a seeder by filling its
    # queue and resetting the connection (tests/test_hostile.py). Connections that stop reading
    # are dropped by broker.guard instead; requests have their own timeouts.
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 10)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 2)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)


def router(ctx: zmq.Context, bind: str, limits: Limits, keys: KeyPair | None = None) -> zmq.Socket:
    """A ROUTER that raises instead of silently dropping replies to gone peers; a CURVE server
    with ``keys`` (the context must run an authenticator, see broker.keys)."""
    sock = ctx.socket(zmq.ROUTER)
    try:
        if keys is not None:
            serve_curve(sock, keys)
        if "[" in bind or bind.startswith("tcp://*"):  # IPv6 (or any address): dual-stack
            sock.setsockopt(zmq.IPV6, 1)
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        _apply(sock, limits)
        sock.bind(bind)
    except zmq.ZMQError:
        sock.close(linger=0)
        raise
    return sock


def dealer(
    ctx: zmq.Context, endpoint: str, limits: Limits, keys: KeyPair | None = None, server_key: str = ""
) -> zmq.Socket:
    """A DEALER that reconnects quickly; a CURVE client of ``server_key`` when given ``keys``.
    (A dead link is found by the caller's request timeouts, and by TCP keepalives.)"""
    sock = ctx.socket(zmq.DEALER)
    try:
        configure_dealer(sock, limits, keys, server_key)
        sock.connect(endpoint)
    except zmq.ZMQError:
        sock.close(linger=0)
        raise
    return sock


def configure_dealer(
    sock: zmq.Socket, limits: Limits, keys: KeyPair | None = None, server_key: str = ""
) -> None:
    """Options for a DEALER: set before connect (CURVE and TCP options only apply then)."""
    if keys is not None and server_key:
        client_curve(sock, keys, server_key)
    sock.setsockopt(zmq.IPV6, 1)
    sock.setsockopt(zmq.LINGER, 0)
    _apply(sock, limits)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)


def recv_bounded(
    sock: zmq.Socket,
    max_frames: int,
    flags: int = 0,
    *,
    copy: bool = True,
    guard: ConnectionGuard | None = None,
) -> list[Any]:
    """One whole message, but at most ``max_frames + 1`` of its frames.

    A message with more frames than allowed comes back with exactly ``max_frames + 1`` (so its
    decoder refuses it by count); the frames past that are received and dropped one by one,
    never held together. ``guard`` is told the message's size on the wire. Raises zmq.Again
    like ``recv`` when nothing waits (with NOBLOCK).
    """
    frame = sock.recv(flags, copy=False)  # Frame.more is much cheaper than getsockopt(RCVMORE)
    frames = [frame]
    dropped = dropped_bytes = 0
    while frame.more:
        frame = sock.recv(copy=False)  # the rest of a message is already here: never blocks
        if len(frames) <= max_frames:
            frames.append(frame)
        elif guard is not None:
            dropped += 1
            dropped_bytes += guard.wire(len(frame))
    if guard is not None:
        guard.took(frames, dropped, dropped_bytes)
    return frames if not copy else [f.bytes for f in frames]


def bound_endpoint(sock: zmq.Socket) -> str:
    """The endpoint a socket really listens on (after binding to port 0)."""
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def term_context(ctx: zmq.Context, timeout: float = 5.0) -> bool:
    """Terminate ``ctx`` but never hang on it: a socket some thread failed to close would make
    ``term`` block forever (pyzmq#991). Returns False when it gave up waiting."""
    t = threading.Thread(target=ctx.term, name="zmq-term", daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


# --- the limits of each kind of socket (sizes from messages.protocol) -------------------------


def _limits() -> dict[str, Limits]:
    return {
        # The tracker: small requests from anyone; a few outstanding per connection.
        "tracker": Limits(P.CONTROL_MAX_MSG, 1 + P.CONTROL_FRAMES, rcvhwm=64, sndhwm=1000),
        # A peer's DEALER to the tracker (replies and pushes).
        "control": Limits(P.CONTROL_MAX_MSG, P.CONTROL_FRAMES, rcvhwm=256, sndhwm=64),
        # A seeder: tiny requests in, pieces out (memory for those is budgeted by the seeder).
        "seeder": Limits(P.SEEDER_MAX_MSG, 1 + 2, rcvhwm=64, sndhwm=64),
    }


LIMITS = _limits()


def piece_limits(piece_size: int) -> Limits:
    """A downloader's DEALER to one holder: frames no larger than this file's pieces."""
    page = P.DIGESTS_PER_PAGE * P.DIGEST_SIZE
    return Limits(max(piece_size, page) + P.MAX_HEADER_BYTES, P.PIECE_FRAMES, rcvhwm=32, sndhwm=32)
