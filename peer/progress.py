"""What a download counts, and the snapshots made of it for status() and the event bus.

The coordinator thread alone changes the counts and makes snapshots (at most every
EVENT_INTERVAL, and once more at the end); other threads only ever read the latest snapshot,
a frozen record, so nobody reads the picker while it changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import zmq

from messages.bitfield import Bitfield
from messages.events import EVENT_INTERVAL, DownloadState, ProgressEvent
from messages.records import FileMeta

from .picker import Picker


@dataclass(slots=True)
class Tally:
    reused: int = 0  # pieces found valid in an earlier partial file
    state: DownloadState = DownloadState.RUNNING
    error: str = ""
    note: str = ""
    finished: float = 0.0
    from_holders: dict[str, int] = field(default_factory=dict)  # user -> pieces received
    failures: dict[str, int] = field(default_factory=dict)  # user -> failed requests

    def received(self, user: str) -> None:
        self.from_holders[user] = self.from_holders.get(user, 0) + 1

    def failed(self, user: str) -> None:
        self.failures[user] = self.failures.get(user, 0) + 1

    def add_note(self, note: str) -> None:
        self.note = "; ".join(n for n in (self.note, note) if n)


class Reporter:
    """Snapshots of one download; published on ``pub`` (a PUB socket of the coordinator's)."""

    def __init__(self, peer: str, meta: FileMeta, dest: str, started: float) -> None:
        self.peer, self.meta, self.dest, self.started = peer, meta, dest, started
        self.tally = Tally()
        self.pub: zmq.Socket | None = None
        self._last = 0.0

    def refresh(self, picker: Picker, *, force: bool = False) -> ProgressEvent | None:
        """A new snapshot, at most every EVENT_INTERVAL (always with ``force``); None if too soon."""
        now = time.monotonic()
        if not force and now - self._last < EVENT_INTERVAL:
            return None
        self._last = now
        event = self.snapshot(picker)
        if self.pub is not None:
            try:
                self.pub.send_multipart(event.encode(), zmq.NOBLOCK)
            except zmq.Again:
                pass
        return event

    def snapshot(self, picker: Picker) -> ProgressEvent:
        t, meta = self.tally, self.meta
        flight = Bitfield(meta.num_pieces)
        if t.state is DownloadState.RUNNING:
            for piece in picker.in_flight:
                flight.add(piece)
        return ProgressEvent(
            peer=self.peer,
            group=meta.group,
            name=meta.name,
            dest=self.dest,
            size=meta.size,
            total=meta.num_pieces,
            done=len(picker.have),
            reused=t.reused,
            state=t.state,
            elapsed=(t.finished or time.monotonic()) - self.started,
            holders=dict(t.from_holders),
            sources=sum(1 for h in picker.holders.values() if picker.alive(h)),
            in_flight=len(picker.in_flight),
            have=picker.have.encode(),
            flight=flight.encode(),
            error=t.error,
            note=t.note,
        )
