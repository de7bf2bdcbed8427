"""Keeps this peer known to the tracker: heartbeats, announcing again when needed, and pushes.

Its own thread with its own DEALER. A heartbeat answered with ``online: false`` (the tracker
restarted, or dropped us after a silence), a new epoch, or a move to another tracker of the set
makes it announce our endpoint and everything we serve again, so a tracker restart or failover
needs nothing from the user. Between heartbeats it listens on the same socket for what the
tracker pushes (revocations for our seeder, removed files) and runs what those need.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import zmq

from broker.client import ControlClient
from broker.thread import ServiceThread
from broker.trackers import TrackerSet
from messages import protocol as P
from messages.control import Push
from messages.errors import Code, TorrentError
from messages.records import Heartbeat

log = logging.getLogger(__name__)
LISTEN_SLICE = 0.05  # seconds between looks at the wake-up flag while waiting for pushes


class PresenceKeeper(ServiceThread):
    def __init__(
        self,
        ctx: zmq.Context,
        trackers: TrackerSet,
        token: Callable[[], str | None],
        announce: Callable[[ControlClient, str], list[str]],
        on_session_lost: Callable[[], None],
        on_push: Callable[[Push, ControlClient], None],
        interval: float = P.HEARTBEAT_INTERVAL,
    ) -> None:
        super().__init__("presence")
        self.ctx = ctx
        self.trackers = trackers
        self.token = token
        self.announce = announce
        self.on_session_lost = on_session_lost
        self.on_push = on_push
        self.interval = interval
        self.epoch: str | None = None
        self.tracker_used = ""  # the tracker our last announce went to
        self.pending: Callable[[ControlClient, str], None] | None = None  # set by the Peer
        self._wake = threading.Event()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self._wake.set()
        super().stop(timeout)

    def nudge(self) -> None:
        """Heartbeat now (after login) instead of at the next interval."""
        self._wake.set()

    def run(self) -> None:
        client: ControlClient | None = None

        def pushed(push: Push) -> None:
            if client is not None:
                self.on_push(push, client)

        client = ControlClient(
            self.ctx, self.trackers, timeout=max(1.0, self.interval), retries=0, on_push=pushed
        )
        try:
            while not self.stopping.is_set():
                token = self.token()
                if token:
                    self._beat_safely(client, token)
                self._listen(client, token)
        finally:
            client.close()

    def _beat_safely(self, client: ControlClient, token: str) -> None:
        try:
            try:
                self._beat(client, token)
            except TorrentError as exc:
                if exc.code != Code.TIMEOUT or len(self.trackers.endpoints) < 2:
                    raise
                # Our tracker is gone and the client moved to the next: beat there at once,
                # before our lease runs out, so we never look gone to downloaders.
                self._beat(client, token)
        except TorrentError as exc:
            if exc.code == Code.UNAUTHORIZED and token == self.token():
                log.warning("tracker forgot our session: %s", exc.message)
                self.on_session_lost()
            else:
                log.info("heartbeat failed: %s", exc.message)

    def _listen(self, client: ControlClient, token: str | None) -> None:
        """Until the next heartbeat is due (or a nudge): take pushes, run what they need."""
        end = time.monotonic() + self.interval
        while not self._wake.is_set() and time.monotonic() < end and not self.stopping.is_set():
            if client.connected:
                client.wait_pushes(LISTEN_SLICE)
            else:
                self._wake.wait(LISTEN_SLICE)
            if token and self.pending is not None:
                self.pending(client, token)
        self._wake.clear()

    def _beat(self, client: ControlClient, token: str) -> None:
        beat = Heartbeat.from_wire(client.call(P.OP_HEARTBEAT, token=token).unwrap())
        moved = client.endpoint != self.tracker_used
        if beat.online and beat.epoch == self.epoch and not moved:
            return
        for note in self.announce(client, token):
            log.warning("%s", note)
        if beat.epoch != self.epoch and self.epoch is not None:
            log.info("tracker restarted or changed (epoch %s); announced again", beat.epoch)
        self.epoch, self.tracker_used = beat.epoch, client.endpoint
