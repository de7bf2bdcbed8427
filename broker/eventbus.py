"""An in-process event bus: an XSUB/XPUB proxy in its own thread.

Publishers (one PUB per thread, e.g. each download's coordinator) connect to ``inbound``;
subscribers (the shell's live view) connect a SUB to ``outbound``. With ``forward_to`` the XPUB
also connects out over tcp, so another process (the demo) sees every peer's events. PUB drops
what nobody subscribed to, so publishing never blocks or costs the data path anything.
"""

from __future__ import annotations

import itertools
import logging
import threading

import zmq

from .thread import ServiceThread

log = logging.getLogger(__name__)
_ids = itertools.count(1)


class EventBus(ServiceThread):
    def __init__(self, ctx: zmq.Context, forward_to: str | None = None) -> None:
        super().__init__("event-bus")
        n = next(_ids)
        self.ctx = ctx
        self.inbound = f"inproc://events-in-{n}"
        self.outbound = f"inproc://events-out-{n}"
        self._control = f"inproc://events-ctl-{n}"
        self.forward_to = forward_to
        self._ready = threading.Event()

    def start(self) -> None:
        super().start()
        self._ready.wait(5)

    def run(self) -> None:
        xsub = self.ctx.socket(zmq.XSUB)
        xpub = self.ctx.socket(zmq.XPUB)
        ctl = self.ctx.socket(zmq.PAIR)
        try:
            xsub.bind(self.inbound)
            xpub.bind(self.outbound)
            ctl.bind(self._control)
            if self.forward_to:
                xpub.connect(self.forward_to)
            self._ready.set()
            zmq.proxy_steerable(xsub, xpub, None, ctl)
        except zmq.ZMQError as exc:
            if exc.errno != zmq.ETERM:
                log.warning("event bus stopped: %s", exc)
        finally:
            self._ready.set()
            for sock in (xsub, xpub, ctl):
                sock.close(linger=0)

    def publisher(self) -> zmq.Socket:
        """A PUB for the calling thread (which must close it)."""
        pub = self.ctx.socket(zmq.PUB)
        pub.linger = 0
        pub.sndhwm = 100
        pub.connect(self.inbound)
        return pub

    def subscriber(self) -> zmq.Socket:
        sub = self.ctx.socket(zmq.SUB)
        sub.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self.outbound)
        return sub

    def stop(self, timeout: float = 5.0) -> None:
        if not self.alive:
            return
        ctl = self.ctx.socket(zmq.PAIR)
        ctl.linger = 0
        ctl.connect(self._control)
        ctl.send(b"TERMINATE")
        ctl.close()
        super().stop(timeout)
