"""The tracker's public key, handed out in the clear for peers that trust on first use.

A CURVE client must know the server's key before it connects, so a peer that was not given
``--tracker-key`` asks here once, remembers the answer in its home (as ssh does with
known_hosts) and refuses, with a clear message, if the tracker ever shows another key. The
service answers ``[KEY_TAG]`` with ``[KEY_TAG, key]`` and nothing else; it listens on the
tracker's port plus one unless told otherwise.
"""

from __future__ import annotations

import time

import zmq

from broker.guard import INTERVAL, ConnectionGuard
from broker.sockets import Limits, bound_endpoint, recv_bounded, router
from broker.thread import ServiceThread
from messages.protocol import KEY_TAG

_LIMITS = Limits(max_msg=64, max_frames=2, rcvhwm=16, sndhwm=16, backlog=4096, backlog_total=1 << 20)


class KeyService(ServiceThread):
    def __init__(self, ctx: zmq.Context, bind: str, public_key: str) -> None:
        super().__init__("key-service")
        self.sock = router(ctx, bind, _LIMITS)
        self.guard = ConnectionGuard(self.sock, _LIMITS.backlog, _LIMITS.backlog_total)
        self.endpoint = bound_endpoint(self.sock)
        self.answer = [KEY_TAG, public_key.encode("ascii")]

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                ready = self.sock.poll(int(INTERVAL * 1000))
                for fd in self.guard.check(time.monotonic()):  # endless messages: see broker.guard
                    self.guard.shutdown(fd)
                for _ in range(256 if ready else 0):  # then the guard gets its turn
                    try:
                        frames = recv_bounded(self.sock, 2, zmq.NOBLOCK, guard=self.guard)
                    except zmq.Again:
                        break
                    if len(frames) == 2 and frames[1] == KEY_TAG:
                        try:
                            self.sock.send_multipart([frames[0], *self.answer], zmq.NOBLOCK)
                        except zmq.ZMQError:
                            pass  # gone or not reading: it can ask again
        finally:
            self.guard.close()
            self.sock.close(linger=0)
