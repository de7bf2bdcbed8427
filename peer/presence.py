"""Keeps this peer known to the tracker: heartbeats, and announcing again when needed.

Its own thread with its own DEALER. A heartbeat answered with ``online: false`` (the tracker
restarted, or dropped us after a silence) or with a new epoch makes it announce our endpoint
and everything we serve again, so a tracker restart needs nothing from the user.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import zmq

from broker.client import ControlClient
from broker.thread import ServiceThread
from messages import protocol as P
from messages.errors import Code, TorrentError
from messages.records import Heartbeat

log = logging.getLogger(__name__)


class PresenceKeeper(ServiceThread):
    def __init__(
        self,
        ctx: zmq.Context,
        tracker: str,
        token: Callable[[], str | None],
        announce: Callable[[ControlClient, str], list[str]],
        on_session_lost: Callable[[], None],
        interval: float = P.HEARTBEAT_INTERVAL,
    ) -> None:
        super().__init__("presence")
        self.ctx = ctx
        self.tracker = tracker
        self.token = token
        self.announce = announce
        self.on_session_lost = on_session_lost
        self.interval = interval
        self.epoch: str | None = None
        self._wake = threading.Event()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self._wake.set()
        super().stop(timeout)

    def nudge(self) -> None:
        """Heartbeat now (after login) instead of at the next interval."""
        self._wake.set()

    def run(self) -> None:
        client = ControlClient(self.ctx, self.tracker, timeout=max(1.0, self.interval), retries=0)
        try:
            while not self.stopping.is_set():
                token = self.token()
                if token:
                    try:
                        self._beat(client, token)
                    except TorrentError as exc:
                        if exc.code == Code.UNAUTHORIZED and token == self.token():
                            log.warning("tracker forgot our session: %s", exc.message)
                            self.on_session_lost()
                        else:
                            log.info("heartbeat failed: %s", exc.message)
                self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            client.close()

    def _beat(self, client: ControlClient, token: str) -> None:
        beat = Heartbeat.from_wire(client.call(P.OP_HEARTBEAT, token=token).unwrap())
        if beat.online and beat.epoch == self.epoch:
            return
        for note in self.announce(client, token):
            log.warning("%s", note)
        if beat.epoch != self.epoch and self.epoch is not None:
            log.info("tracker restarted (epoch %s); announced again", beat.epoch)
        self.epoch = beat.epoch
