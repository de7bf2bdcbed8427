"""How long the tracker takes to answer anybody, whatever else goes on: a thread that pings it
every ``every`` seconds on a connection of its own (``scripts/bench --scale`` runs one while
10,000 sessions expire at once and during the swarm)."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import zmq

from broker.client import ControlClient
from broker.keys import KeyPair
from broker.trackers import TrackerSet
from messages import protocol as P
from messages.errors import TorrentError


class Pinger(threading.Thread):
    def __init__(self, ctx: zmq.Context, endpoint: str, server_key: str, keys: KeyPair, every: float = 0.1):
        super().__init__(name="pinger", daemon=True)
        self.client = ControlClient(ctx, TrackerSet([endpoint], server_key, keys), timeout=30.0, retries=0)
        self.every = every
        self.latencies: list[float] = []
        self.failed = 0
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                t0 = time.monotonic()
                try:
                    self.client.call(P.OP_PING)
                    self.latencies.append(time.monotonic() - t0)
                except TorrentError:
                    self.failed += 1
                self._halt.wait(max(0.0, self.every - (time.monotonic() - t0)))
        finally:
            self.client.close()

    def finish(self) -> dict[str, Any]:
        """Stop; the latencies seen (milliseconds)."""
        self._halt.set()
        self.join(timeout=35)
        lat = sorted(self.latencies)
        if not lat:
            return {"count": 0, "failed": self.failed}
        return {
            "count": len(lat),
            "failed": self.failed,
            "p50_ms": 1000 * statistics.median(lat),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "max_ms": 1000 * lat[-1],
        }
