"""Download progress: one record for the shell, the live view and the event bus.

A download publishes a ``ProgressEvent`` at most every EVENT_INTERVAL (inproc PUB, optionally
forwarded to another process); ``show_downloads`` reads the same record from the download
directly. An event is small (two bitfields and a few counters), so views never poll files or
the downloader.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from .errors import Code, ProtocolError
from .records import Record

TOPIC_PROGRESS = b"progress"
EVENT_INTERVAL = 0.1  # seconds between progress events of one download


class DownloadState(StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ProgressEvent(Record):
    """A snapshot of one download.

    Frames on the event bus: ``[TOPIC_PROGRESS, JSON of the fields]``.
    """

    peer: str  # who downloads
    group: str
    name: str
    dest: str  # where the finished file goes
    size: int
    total: int  # pieces
    done: int
    reused: int  # pieces found valid in an earlier partial file
    state: DownloadState
    elapsed: float
    holders: dict[str, int]  # holder user -> pieces received from it
    sources: int  # holders we may currently ask
    in_flight: int
    have: str  # base64 bitfield of pieces done
    flight: str  # base64 bitfield of pieces in flight
    error: str
    note: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.peer, self.group, self.name)

    @property
    def done_bytes(self) -> float:
        if not self.total:
            return float(self.size)
        return min(float(self.size), self.done * self.size / self.total)

    @property
    def rate(self) -> float:
        """Bytes per second fetched so far (pieces reused from a partial file do not count)."""
        fetched = (self.done - self.reused) * (self.size / self.total) if self.total else 0.0
        return fetched / self.elapsed if self.elapsed > 0 else 0.0

    def encode(self) -> list[bytes]:
        return [TOPIC_PROGRESS, orjson.dumps(self.to_wire())]

    @classmethod
    def decode(cls, frames: list[Any]) -> ProgressEvent:
        if len(frames) != 2 or bytes(frames[0]) != TOPIC_PROGRESS:
            raise ProtocolError(Code.BAD_FRAME, "not a progress event")
        try:
            return cls.from_wire(orjson.loads(frames[1]))
        except orjson.JSONDecodeError:
            raise ProtocolError(Code.BAD_JSON, "event is not valid JSON") from None
