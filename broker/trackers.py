"""The trackers a peer may talk to, the key they share, and which one is in use now.

Every thread of a peer makes its own DEALER (one socket, one thread) but they share this
object, so when one of them finds the tracker in use dead and moves to the next (Lazy Pirate
across a list, as BitTorrent's tracker tiers do), the others follow on their next request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .keys import KeyPair


class TrackerSet:
    def __init__(self, endpoints: list[str], server_key: str, keys: KeyPair) -> None:
        if not endpoints:
            raise ValueError("at least one tracker endpoint")
        self.endpoints = list(endpoints)
        self.server_key = server_key
        self.keys = keys
        self._current = 0
        self.switches = 0  # bumped at every change of tracker: clients on the old one move too
        self._lock = threading.Lock()
        self._switched: list[Callable[[str], None]] = []

    def current(self) -> str:
        with self._lock:
            return self.endpoints[self._current]

    def failed(self, endpoint: str) -> str:
        """``endpoint`` did not answer: move on to the next tracker (if it is still the one in
        use); the one to use now."""
        with self._lock:
            if self.endpoints[self._current] == endpoint and len(self.endpoints) > 1:
                self._current = (self._current + 1) % len(self.endpoints)
                self.switches += 1
                now = self.endpoints[self._current]
            else:
                return self.endpoints[self._current]
        for callback in self._switched:
            callback(now)
        return now

    def on_switch(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(endpoint)`` whenever the tracker in use changes."""
        self._switched.append(callback)
