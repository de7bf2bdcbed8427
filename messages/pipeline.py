"""The downloader's internal pipeline messages (inproc, between threads of one process).

ventilator -> worker:  [ASSIGN, header]            header = {piece, holder, endpoint, grant}
worker -> sink:        [READY]                     once, when the worker's sockets are up
                       [RESULT, header, payload?]  header = {piece, holder, ok, code, message, bad}

A result's payload is the very zmq.Frame the seeder's bytes arrived in: passing it over inproc
moves a reference, not the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

ASSIGN = b"A"
READY = b"W"
RESULT = b"R"


@dataclass(slots=True)
class Assignment:
    piece: int
    holder: str
    endpoint: str
    grant: dict[str, Any]
    timeout: float

    def encode(self) -> list[bytes]:
        h = {"p": self.piece, "h": self.holder, "e": self.endpoint, "g": self.grant, "t": self.timeout}
        return [ASSIGN, orjson.dumps(h)]

    @classmethod
    def decode(cls, frames: list[Any]) -> Assignment:
        h = orjson.loads(frames[1])
        return cls(piece=h["p"], holder=h["h"], endpoint=h["e"], grant=h["g"], timeout=h["t"])


@dataclass(slots=True)
class Result:
    piece: int
    holder: str
    ok: bool
    code: str = ""
    message: str = ""
    bad_data: bool = False  # the holder sent bytes that failed verification: do not ask it again
    payload: Any = None

    def encode(self) -> list[Any]:
        h = {
            "p": self.piece,
            "h": self.holder,
            "ok": self.ok,
            "c": self.code,
            "m": self.message,
            "b": self.bad_data,
        }
        frames: list[Any] = [RESULT, orjson.dumps(h)]
        if self.payload is not None:
            frames.append(self.payload)
        return frames

    @classmethod
    def decode(cls, frames: list[Any]) -> Result:
        h = orjson.loads(frames[1].bytes if hasattr(frames[1], "bytes") else frames[1])
        payload = frames[2] if len(frames) > 2 else None
        return cls(h["p"], h["h"], h["ok"], h["c"], h["m"], h["b"], payload)
