"""The connection guard against real CURVE sockets on 127.0.0.1 in this process: its count of
what libzmq holds is exact, a message that never ends is caught, and so is a peer that never
reads what it asked for."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import zmq

from broker import guard as G
from broker.guard import ConnectionGuard
from broker.keys import KeyPair, client_curve
from broker.sockets import LIMITS, bound_endpoint, recv_bounded, router

SERVER = KeyPair.generate()


@pytest.fixture
def served(ctx: zmq.Context) -> Iterator[tuple[zmq.Socket, ConnectionGuard]]:
    sock = router(ctx, "tcp://127.0.0.1:0", LIMITS["seeder"], SERVER)
    guard = ConnectionGuard(sock, per_conn=64 * 1024, total=1 << 20, stall=0.5, scan_every=0)
    yield sock, guard
    guard.close()
    sock.close(linger=0)


def client(ctx: zmq.Context, server: zmq.Socket, rcvhwm: int = 1000) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvhwm = rcvhwm
    client_curve(sock, KeyPair.generate(), SERVER.public)
    sock.connect(bound_endpoint(server))
    return sock


def held(guard: ConnectionGuard) -> list[int]:
    """What the guard thinks libzmq holds per connection, less its allowances."""
    now = time.monotonic()
    out = []
    for conn in guard._conns.values():
        received, _ = G._counters(conn.sock)
        out.append(received - conn.consumed - G.HANDSHAKE - int(G.HEARTBEAT_RATE * (now - conn.opened)))
    return out


def until(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_the_count_is_exact_for_every_frame_size_and_for_dropped_frames(served, ctx) -> None:  # type: ignore[no-untyped-def]
    sock, guard = served
    peer = client(ctx, sock)
    messages = [[b"x" * n for n in sizes] for sizes in ([4, 60], [4, 300], [60_000], [1] * 40, [200, 222])]
    for frames in messages:
        peer.send_multipart(frames)
    got = []
    while len(got) < len(messages):
        assert sock.poll(2000)
        got.append(recv_bounded(sock, 3, copy=False, guard=guard))
    assert [len(f) for f in got] == [3, 3, 2, 4, 3]  # routing id + frames, at most 3 + 1 kept
    guard.check(time.monotonic())
    (h,) = held(guard)
    # Everything taken is accounted for to the byte: what is left is the handshake (under its
    # allowance), whatever the frame sizes, and the 36 frames dropped from the fourth message.
    assert -G.HANDSHAKE < h <= 0
    assert guard.check(time.monotonic() + 1) == []
    peer.close(linger=0)


def test_a_message_that_never_ends_is_caught(served, ctx) -> None:  # type: ignore[no-untyped-def]
    sock, guard = served
    honest, hostile = client(ctx, sock), client(ctx, sock)
    honest.send_multipart([b"ping", b"x" * 100])
    assert sock.poll(2000)
    recv_bounded(sock, 3, copy=False, guard=guard)
    # 60 MB in one message. (libzmq sends a message once it is whole, and holds it on the
    # receiving side until it is whole again: a message that never ends looks the same there.)
    hostile.send_multipart([b"y" * 60_000] * 1000)
    over: list[int] = []
    until(lambda: over.extend(guard.check(time.monotonic() + 1)) or over)
    assert len(over) == 1  # the hostile connection only
    assert max(held(guard)) > guard.per_conn
    guard.shutdown(over[0])
    until(lambda: len(guard._conns) == 1)
    honest.send_multipart([b"ping", b"again"])  # the other connection is served as before
    assert sock.poll(2000)
    assert recv_bounded(sock, 3, guard=guard)[1:] == [b"ping", b"again"]
    honest.close(linger=0)
    hostile.close(linger=0)


def test_many_connections_together_are_bounded_by_the_total(served, ctx) -> None:  # type: ignore[no-untyped-def]
    sock, guard = served
    guard.per_conn, guard.total = 1 << 20, 150_000
    peers = [client(ctx, sock) for _ in range(4)]
    for i, peer in enumerate(peers):  # each under the per-connection bound, all over the total
        peer.send_multipart([b"z" * 40_000] * (i + 1))
    # (1 + 2 + 3 + 4) x 40 kB sent: wait until libzmq has it all, then one look.
    until(lambda: guard._events(time.monotonic()) or sum(max(0, h) for h in held(guard)) > 380_000)
    over = guard.check(time.monotonic() + 1)
    assert len(over) == 2  # the two biggest go, and the rest fits
    for p in peers:
        p.close(linger=0)


def test_a_peer_that_never_reads_is_caught(served, ctx) -> None:  # type: ignore[no-untyped-def]
    sock, guard = served
    peer = client(ctx, sock, rcvhwm=1)
    peer.setsockopt(zmq.RCVBUF, 4096)
    peer.send_multipart([b"hello"])
    assert sock.poll(2000)
    ident = recv_bounded(sock, 3, guard=guard)[0]
    for _ in range(200):  # 20 MB it will never read
        try:
            sock.send_multipart([ident, b"x" * 100_000], zmq.NOBLOCK)
        except zmq.Again:
            break
    over: list[int] = []
    until(lambda: over.extend(guard.check(time.monotonic())) or over, timeout=5)
    assert len(over) == 1
    peer.close(linger=0)


def test_many_connections_are_looked_at_when_memory_grows(ctx) -> None:  # type: ignore[no-untyped-def]
    sock = router(ctx, "tcp://127.0.0.1:0", LIMITS["seeder"], SERVER)
    guard = ConnectionGuard(sock, per_conn=64 * 1024, total=1 << 20, scan_every=3600)
    hostile = client(ctx, sock)
    try:
        assert guard.check(time.monotonic()) == []  # the first look; the next one in an hour
        hostile.send_multipart([b"y" * 60_000] * 200)  # 12 MB libzmq holds: our memory grows
        over: list[int] = []
        until(lambda: over.extend(guard.check(time.monotonic())) or over)
        assert len(over) == 1
    finally:
        hostile.close(linger=0)
        guard.close()
        sock.close(linger=0)
