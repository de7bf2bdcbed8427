"""The downloader's internal pipeline messages (inproc, between threads of one process).

    coordinator (ventilator) --PUSH Assignment--> workers --PUSH Verified--> writers
    workers and writers --PUSH Result--> coordinator (sink)

Workers fetch and verify each piece; each worker's own writer thread writes it at its offset
and reports it in (a worker never waits on the disk); the sink owns which pieces are in.
These messages never leave the process, so their decoders trust their input (the coordinator
validated every grant and holder when the tracker's list arrived).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from .errors import Code
from .frames import as_bytes
from .records import Grant

ASSIGN = b"A"
READY = b"W"  # a worker's first message: its sockets are up, the ventilator may send
RESULT = b"R"
VERIFIED = b"V"


@dataclass(frozen=True, slots=True)
class Assignment:
    """Fetch ``piece`` from the holder at ``holder`` (its endpoint) within ``timeout`` seconds.

    Frames: ``[ASSIGN, {"p": piece, "h": holder, "k": holder's key, "g": Grant, "t": timeout}]``.
    """

    piece: int
    holder: str
    grant: Grant
    timeout: float
    key: str = ""  # the holder's public key ("" when it serves without encryption)

    def encode(self) -> list[bytes]:
        h = {"p": self.piece, "h": self.holder, "k": self.key, "g": self.grant.to_wire(), "t": self.timeout}
        return [ASSIGN, orjson.dumps(h)]

    @classmethod
    def decode(cls, frames: list[Any]) -> Assignment:
        h = orjson.loads(as_bytes(frames[1]))
        return cls(piece=h["p"], holder=h["h"], grant=Grant(**h["g"]), timeout=h["t"], key=h["k"])


@dataclass(frozen=True, slots=True)
class Verified:
    """A piece that passed SHA-256, for a writer: write ``payload`` at ``offset``.

    Frames: ``[VERIFIED, {"p": piece, "h": holder, "o": offset}, payload]``; the payload is the
    frame the holder's reply came in, passed on without a copy.
    """

    piece: int
    holder: str
    offset: int
    payload: Any

    def encode(self) -> list[Any]:
        return [VERIFIED, orjson.dumps({"p": self.piece, "h": self.holder, "o": self.offset}), self.payload]

    @classmethod
    def decode(cls, frames: list[Any]) -> Verified:
        h = orjson.loads(as_bytes(frames[1]))
        return cls(h["p"], h["h"], h["o"], frames[2])


class Outcome(StrEnum):
    OK = "ok"  # verified and written at its offset
    FAILED = "failed"  # the holder did not deliver (timeout, error reply): try elsewhere
    BAD_DATA = "bad_data"  # the holder sent bytes that failed verification: never ask it again
    LOCAL = "local"  # our side failed (disk full, I/O error): the download cannot go on


@dataclass(frozen=True, slots=True)
class Result:
    """What became of one assignment.

    Frames: ``[RESULT, {"p": piece, "h": holder, "o": outcome, "c": code, "m": message}]``.
    """

    piece: int
    holder: str
    outcome: Outcome
    code: str = ""
    message: str = ""

    @classmethod
    def ok(cls, piece: int, holder: str) -> Result:
        return cls(piece, holder, Outcome.OK)

    @classmethod
    def fail(cls, piece: int, holder: str, code: Code | str, message: str) -> Result:
        return cls(piece, holder, Outcome.FAILED, str(code), message)

    @classmethod
    def bad_data(cls, piece: int, holder: str, message: str) -> Result:
        return cls(piece, holder, Outcome.BAD_DATA, str(Code.BAD_PIECE), message)

    @classmethod
    def local(cls, piece: int, holder: str, code: Code, message: str) -> Result:
        return cls(piece, holder, Outcome.LOCAL, str(code), message)

    def encode(self) -> list[bytes]:
        h = {"p": self.piece, "h": self.holder, "o": str(self.outcome), "c": self.code, "m": self.message}
        return [RESULT, orjson.dumps(h)]

    @classmethod
    def decode(cls, frames: list[Any]) -> Result:
        h = orjson.loads(as_bytes(frames[1]))
        return cls(h["p"], h["h"], Outcome(h["o"]), h["c"], h["m"])
