"""Piece requests and replies between a downloader and a seeder.

The payload is a raw frame: never JSON, never base64. Decoders accept ``zmq.Frame`` objects or
bytes, and the payload is handed on as the frame itself so nobody copies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .control import ErrorInfo
from .errors import Code, ProtocolError, TorrentError
from .frames import check_frames, check_id, check_int, dumps, is_int, loads_header
from .names import check_file_name, check_name
from .protocol import MAX_DIGEST_PAGES, MAX_PIECES, OP_GET_DIGESTS, OP_GET_PIECE, PIECE_TAG
from .records import Grant

_INDEX_LIMIT = {OP_GET_PIECE: MAX_PIECES, OP_GET_DIGESTS: MAX_DIGEST_PAGES}


@dataclass(frozen=True, slots=True)
class PieceRequest:
    """Ask a seeder for one piece, or for one page of the file's piece digests.

    Frames: ``[PIECE_TAG, header]`` with header
    ``{"id": int, "op": "get" | "digests", "g": group, "f": file, "p": index, "grant": Grant}``;
    ``p`` is a piece index for "get" and a page index (DIGESTS_PER_PAGE digests) for "digests".
    """

    id: int
    group: str
    file: str
    piece: int
    grant: Grant
    op: str = OP_GET_PIECE

    def encode(self) -> list[bytes]:
        header = {
            "id": self.id,
            "op": self.op,
            "g": self.group,
            "f": self.file,
            "p": self.piece,
            "grant": self.grant.to_wire(),
        }
        return [PIECE_TAG, dumps(header)]

    @classmethod
    def decode(cls, frames: list[Any]) -> PieceRequest:
        check_frames(frames, PIECE_TAG, (2,))
        h = loads_header(frames[1])
        req_id = check_id(h.get("id"))
        op = h.get("op")
        if op not in _INDEX_LIMIT:
            raise ProtocolError(Code.UNKNOWN_OP, f"unknown piece operation {str(op)[:40]!r}")
        return cls(
            id=req_id,
            group=check_name(h.get("g"), "group name"),
            file=check_file_name(h.get("f")),
            piece=check_int(h.get("p"), 0, _INDEX_LIMIT[op] - 1, "piece"),
            grant=Grant.from_wire(h.get("grant")),
            op=op,
        )


@dataclass(frozen=True, slots=True)
class PieceReply:
    """A seeder's answer: the piece's bytes, or why not.

    Frames: ``[PIECE_TAG, {"id", "p", "ok": true}, payload]`` or
    ``[PIECE_TAG, {"id", "p", "ok": false, "error": {"code", "message"}}]``. ``payload`` is
    the received frame itself (a ``zmq.Frame``), or bytes/a buffer when sending.
    """

    id: int
    piece: int
    payload: Any = None
    error: ErrorInfo | None = None

    @classmethod
    def failure(cls, req_id: int, piece: int, err: TorrentError) -> PieceReply:
        return cls(id=req_id, piece=piece, error=ErrorInfo(err.code, err.message))

    def encode(self) -> list[Any]:
        if self.error is None:
            return [PIECE_TAG, dumps({"id": self.id, "p": self.piece, "ok": True}), self.payload]
        err = {"code": str(self.error.code), "message": self.error.message}
        return [PIECE_TAG, dumps({"id": self.id, "p": self.piece, "ok": False, "error": err})]

    @classmethod
    def decode(cls, frames: list[Any]) -> PieceReply:
        check_frames(frames, PIECE_TAG, (2, 3))
        h = loads_header(frames[1])
        req_id = check_id(h.get("id"))
        piece = h.get("p")
        if not is_int(piece):
            raise ProtocolError(Code.BAD_JSON, "piece reply without a piece index")
        if h.get("ok") is True:
            if len(frames) == 3:
                return cls(id=req_id, piece=piece, payload=frames[2])
            # Answer the request as failed now rather than let it run into its timeout.
            return cls(id=req_id, piece=piece, error=ErrorInfo(Code.BAD_FRAME, "piece reply without payload"))
        err = h.get("error")
        if h.get("ok") is not False or not isinstance(err, dict) or len(frames) != 2:
            raise ProtocolError(Code.BAD_FRAME, "piece reply with neither payload nor error")
        code, message = err.get("code"), err.get("message")
        if not isinstance(code, str) or not isinstance(message, str):
            raise ProtocolError(Code.BAD_JSON, "error needs a code and a message")
        known: Code | str = Code(code) if code in Code._value2member_map_ else code
        return cls(id=req_id, piece=piece, error=ErrorInfo(known, message[:1000]))
