"""What one connection can make libzmq hold for us: bounded, from outside libzmq.

ZeroMQ bounds a message only frame by frame (ZMQ_MAXMSGSIZE) and its queues count whole
messages (the HWMs): a message becomes readable only once its last frame is in, and until then
libzmq's I/O thread keeps every frame it has decoded. So a peer that sends frame after frame
without ending its message makes us hold all of them, however carefully we read; measured, one
such connection took a tracker from 38 to 1,500 MiB in five seconds.

The guard watches each TCP connection of one socket. The kernel counts the bytes libzmq has read
from it (TCP_INFO's bytes received, less what still waits in the receive queue); we count the
wire bytes of the messages we took from it (ZeroMQ tells each frame's descriptor, ZMQ_SRCFD).
The difference, less a little protocol overhead (the handshake, ZMTP pings), is what libzmq holds
for that connection: frames of an unfinished message, and finished messages not taken yet. A
connection holding more than its share, or the biggest ones when all of them together hold more
than the total, is over: ``check`` names it, and the owner shuts it down (libzmq then frees what
it held; an honest DEALER reconnects by itself) or closes its own DEALER.

The same look at TCP_INFO shows a connection that stopped reading what we send (the bytes it
acknowledged stay put while ours wait in the send queue): past STALL seconds it is over too: its
queued replies stay pinned until the connection ends, and nothing else would end it (ZMTP
heartbeats are off, see broker.sockets; they never ended a peer that kept talking anyway).

Looking at every connection costs a few microseconds each, so a socket with thousands of them
is not looked at every INTERVAL: only every SCAN_EVERY, or as soon as the memory this process
has allocated (glibc's mallinfo2: in use, not merely resident) has grown by HEAP_STEP since the
last look that found nobody over, which is what an attack does first. (Without glibc, every
connection is looked at every INTERVAL.)

Connections are learnt from the socket's monitor (accepted or connected: the event carries the
descriptor) and kept as a duplicate of libzmq's descriptor, so a descriptor number libzmq has
closed and reused is never mistaken for another connection.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import socket
import struct
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger(__name__)

_OPENED = zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED
_EVENTS = _OPENED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
_TCP_INFO_LEN = 136
_BYTES_ACKED = 120  # offsets in struct tcp_info (Linux 4.1+)
_BYTES_RECEIVED = 128
CURVE_OVERHEAD = 33  # a CURVE MESSAGE command around each frame: name, nonce, MAC, flags
HANDSHAKE = 4096  # greeting and handshake bytes a connection may send before any message
HEARTBEAT_RATE = 64  # bytes per second of ZMTP pings a client may send (ours send none)
INTERVAL = 0.01  # seconds between checks: at most what libzmq decodes in that time escapes
# A peer's sockets (seeder, fetcher) look five times less often: every wake of a thread costs
# (an idle peer took 2.0% of a core at 10 ms, 0.7% at 50 ms, and sixty of them on two cores
# starved the tracker), and what escapes meanwhile stays within the 64 MiB bound (a seeder fed
# frames that never end peaked 39 MiB over idle at 50 ms: tests/test_hostile.py).
PEER_INTERVAL = 0.05
SCAN_EVERY = 1.0  # seconds between looks at every connection while memory does not grow
HEAP_STEP = 4 * 1024 * 1024  # growth of our allocated memory that calls for a look at once
STALL = 8.0  # seconds a connection may leave what we send unread (a downloader gives up sooner)


@dataclass(slots=True)
class _Conn:
    sock: socket.socket  # our duplicate of libzmq's descriptor: the same connection
    opened: float
    consumed: int = 0  # wire bytes of the messages we took from it
    acked: int = 0  # bytes it had acknowledged at ``moved``
    moved: float = 0.0  # when it last acknowledged something, or had nothing to acknowledge


def _queued(sock: socket.socket, request: int) -> int:
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0"))[0])


def _counters(sock: socket.socket) -> tuple[int, int]:
    """(bytes libzmq has read from this connection, bytes the peer acknowledged)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    acked, received = struct.unpack_from("=QQ", info, _BYTES_ACKED)
    return int(received) - _queued(sock, termios.FIONREAD), int(acked)


class _MallInfo2(ctypes.Structure):
    _names = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    _fields_ = [(name, ctypes.c_size_t) for name in (*_names, "keepcost")]


def _heap_reader() -> Callable[[], int] | None:
    """A function giving the bytes this process has allocated (all arenas, mmapped chunks
    included), or None without glibc 2.33+."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2

    def in_use() -> int:
        info = mallinfo2()
        return int(info.uordblks + info.hblkhd)

    return in_use


_heap_in_use = _heap_reader()


def _stalled(conn: _Conn, acked: int, now: float, stall: float) -> bool:
    """Whether the peer has left our bytes unacknowledged for ``stall`` seconds."""
    if acked != conn.acked:
        conn.acked, conn.moved = acked, now
    elif now - conn.moved > stall:
        if not _queued(conn.sock, termios.TIOCOUTQ):
            conn.moved = now  # idle, not stalled: nothing of ours is waiting
        return now - conn.moved > stall
    return False


class ConnectionGuard:
    """Bounds the bytes libzmq holds per connection of ``sock`` (``per_conn``, which its owner
    may change as it goes) and for all of them together (``total``); with ``stall``, also ends
    connections that leave what we send unread that long. Make it before ``sock`` connects (a
    bound socket: right after binding); it belongs to the socket's thread, like the socket."""

    def __init__(
        self,
        sock: zmq.Socket,
        per_conn: int,
        total: int,
        stall: float | None = STALL,
        scan_every: float = SCAN_EVERY,
        interval: float = INTERVAL,
    ) -> None:
        """``scan_every``: INTERVAL for a socket with a connection or two (a DEALER)."""
        self.per_conn = per_conn
        self.interval = interval  # how often the owner wakes to call check
        self.total = total
        self.stall = stall
        self.scan_every = scan_every if _heap_in_use is not None else 0.0
        self._scanned = 0.0  # when we last looked at every connection
        self._quiet = 0  # our allocated memory when a look last found nobody over
        self.curve = sock.getsockopt(zmq.MECHANISM) == zmq.CURVE
        self.router = sock.type == zmq.ROUTER  # its first frame is not on the wire
        self._monitor = sock.get_monitor_socket(_EVENTS)
        self._sock = sock
        self._conns: dict[int, _Conn] = {}
        self._next = 0.0
        self.dropped = 0  # connections shut down
        self.frames = 0  # frames taken from the socket, dropped ones included (a cost measure)

    def wire(self, size: int) -> int:
        """The bytes a frame of ``size`` takes on the wire (ZMTP framing, CURVE box)."""
        size += CURVE_OVERHEAD if self.curve else 0
        return size + (2 if size <= 255 else 9)

    def took(self, frames: list[zmq.Frame], dropped: int = 0, dropped_bytes: int = 0) -> None:
        """A message taken from the socket: ``frames`` kept, and ``dropped`` frames past the
        limit, ``dropped_bytes`` on the wire, that were thrown away."""
        self.frames += len(frames) + dropped
        wire_frames = frames[1:] if self.router else frames
        if not wire_frames:
            return
        fd = wire_frames[0].get(zmq.SRCFD)
        conn = self._conns.get(fd)
        if conn is None:  # its first message: learn it now (from the monitor, or by itself)
            self._events(time.monotonic())
            conn = self._conns.get(fd) or self._track(fd, time.monotonic())
        if conn is not None:
            conn.consumed += dropped_bytes + sum(self.wire(len(f)) for f in wire_frames)

    def check(self, now: float) -> list[int]:
        """Descriptors of connections over their share ([] when it is not time to look)."""
        if now < self._next:
            return []
        self._next = now + self.interval
        self._events(now)
        if not self._time_to_scan(now):
            return []
        over = self._scan(now)
        if not over and _heap_in_use is not None:
            self._quiet = _heap_in_use()  # what we hold now is ours: look again past it
        return over

    def _scan(self, now: float) -> list[int]:
        held: dict[int, int] = {}
        over = []
        for fd, conn in list(self._conns.items()):
            try:
                received, acked = _counters(conn.sock)
                extra = HANDSHAKE + HEARTBEAT_RATE * (now - conn.opened)
                held[fd] = received - conn.consumed - int(extra)
                stalled = self.stall is not None and _stalled(conn, acked, now, self.stall)
                if held[fd] > self.per_conn or stalled:
                    over.append(fd)
            except OSError:
                self._forget(fd)
        left = sum(n for fd, n in held.items() if n > 0 and fd not in over)
        for fd in sorted(held, key=held.__getitem__, reverse=True):
            if left <= self.total:
                break
            if fd not in over:
                over.append(fd)
                left -= held[fd]
        for fd in over:
            log.warning("connection %d holds %d bytes for us, or reads nothing: dropping it", fd, held[fd])
        return over

    def _time_to_scan(self, now: float) -> bool:
        if now - self._scanned >= self.scan_every:
            self._scanned = now
            return True
        assert _heap_in_use is not None  # scan_every is 0 without it
        in_use = _heap_in_use()
        self._quiet = min(self._quiet, in_use)
        return in_use - self._quiet >= HEAP_STEP

    def shutdown(self, fd: int) -> None:
        """End a connection: libzmq sees it close and frees what it held for it."""
        conn = self._conns.pop(fd, None)
        if conn is not None:
            self.dropped += 1
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.sock.close()

    def _events(self, now: float) -> None:
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            fd = event["value"]
            if event["event"] & _OPENED:
                self._track(fd, now)
            else:
                self._forget(fd)

    def _track(self, fd: int, now: float) -> _Conn | None:
        """Start watching the connection on ``fd`` (kept if we already watch that very one)."""
        conn = self._conns.get(fd)
        try:
            if conn is not None and os.fstat(fd).st_ino == os.fstat(conn.sock.fileno()).st_ino:
                return conn
            self._forget(fd)
            dup = os.dup(fd)
        except OSError:  # already gone
            return None
        try:
            conn = self._conns[fd] = _Conn(socket.socket(fileno=dup), now, moved=now)
        except OSError:  # not a socket any more: libzmq closed it, the number was reused
            os.close(dup)
            return None
        return conn

    def _forget(self, fd: int) -> None:
        conn = self._conns.pop(fd, None)
        if conn is not None:
            conn.sock.close()

    def close(self) -> None:
        for fd in list(self._conns):
            self._forget(fd)
        self._sock.disable_monitor()
        self._monitor.close(linger=0)
