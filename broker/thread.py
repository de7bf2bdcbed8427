"""The start/stop boilerplate of a long-running thread, in one place.

Subclasses put their loop in ``run`` and check ``stopping`` (or wait on it); ``stop`` asks and
joins. A thread that creates sockets closes them itself before ``run`` returns (one socket,
one thread).
"""

from __future__ import annotations

import threading


class ServiceThread:
    def __init__(self, name: str) -> None:
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)

    def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the loop to end (safe from a signal handler)."""
        self.stopping.set()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
