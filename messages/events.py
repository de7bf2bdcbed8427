"""Progress events that downloads publish (inproc PUB, optionally forwarded over tcp).

Views subscribe to these instead of polling files or the downloader: an event is small (two
bitfields and a few counters) and goes out at most every EVENT_INTERVAL per download.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from .errors import Code, ProtocolError
from .records import Record

TOPIC_PROGRESS = b"progress"
EVENT_INTERVAL = 0.1  # seconds between progress events of one download


@dataclass(frozen=True, slots=True)
class ProgressEvent(Record):
    peer: str  # who downloads
    group: str
    name: str
    size: int
    total: int  # pieces
    done: int
    reused: int
    state: str  # running, complete, failed
    elapsed: float
    holders: dict[str, int]  # holder user -> pieces received from it
    in_flight: int
    have: str  # base64 bitfield of pieces done
    flight: str  # base64 bitfield of pieces in flight
    error: str
    note: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.peer, self.group, self.name)

    def encode(self) -> list[bytes]:
        return [TOPIC_PROGRESS, orjson.dumps(self.to_wire())]

    @classmethod
    def decode(cls, frames: list[bytes]) -> ProgressEvent:
        if len(frames) != 2 or frames[0] != TOPIC_PROGRESS:
            raise ProtocolError(Code.BAD_FRAME, "not a progress event")
        try:
            return cls.from_wire(orjson.loads(frames[1]))
        except orjson.JSONDecodeError:
            raise ProtocolError(Code.BAD_JSON, "event is not valid JSON") from None
