"""Piece requests and replies between a downloader and a seeder.

The payload is a raw frame: never JSON, never base64. Decoders accept ``zmq.Frame`` objects or
bytes, and the payload is handed on as the frame itself so nobody copies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .control import check_id, loads_header
from .errors import Code, ProtocolError, RemoteError, TorrentError
from .names import check_file_name, check_name
from .protocol import MAX_PIECES, OP_GET_PIECE, PIECE_TAG
from .records import Grant


@dataclass(slots=True)
class PieceRequest:
    id: int
    group: str
    file: str
    piece: int
    grant: Grant


@dataclass(slots=True)
class PieceReply:
    id: int
    piece: int
    payload: Any = None  # zmq.Frame or bytes when ok
    error: TorrentError | None = None


def encode_piece_request(req: PieceRequest) -> list[bytes]:
    header = {
        "id": req.id,
        "op": OP_GET_PIECE,
        "g": req.group,
        "f": req.file,
        "p": req.piece,
        "grant": req.grant.to_wire(),
    }
    return [PIECE_TAG, orjson.dumps(header)]


def decode_piece_request(frames: list[Any]) -> PieceRequest:
    if len(frames) != 2:
        raise ProtocolError(Code.BAD_FRAME, f"expected 2 frames, got {len(frames)}")
    if bytes(frames[0]) != PIECE_TAG:
        raise ProtocolError(Code.BAD_FRAME, "unknown protocol tag")
    h = loads_header(frames[1])
    req_id = check_id(h.get("id"))
    if h.get("op") != OP_GET_PIECE:
        raise ProtocolError(Code.UNKNOWN_OP, f"unknown piece operation {str(h.get('op'))[:40]!r}")
    piece = h.get("p")
    if not isinstance(piece, int) or isinstance(piece, bool) or not 0 <= piece < MAX_PIECES:
        raise ProtocolError(Code.BAD_ARGS, "piece must be a non-negative integer")
    return PieceRequest(
        id=req_id,
        group=check_name(h.get("g"), "group name"),
        file=check_file_name(h.get("f")),
        piece=piece,
        grant=Grant.from_wire(h.get("grant")),
    )


def encode_piece_reply(req_id: int, piece: int, payload: Any) -> list[Any]:
    return [PIECE_TAG, orjson.dumps({"id": req_id, "p": piece, "ok": True}), payload]


def encode_piece_error(req_id: int, piece: int, err: TorrentError) -> list[bytes]:
    return [PIECE_TAG, orjson.dumps({"id": req_id, "p": piece, "ok": False, "error": err.to_dict()})]


def decode_piece_reply(frames: list[Any]) -> PieceReply:
    if len(frames) not in (2, 3) or bytes(frames[0]) != PIECE_TAG:
        raise ProtocolError(Code.BAD_FRAME, "malformed piece reply")
    h = loads_header(getattr(frames[1], "bytes", frames[1]))
    req_id = check_id(h.get("id"))
    piece = h.get("p")
    if not isinstance(piece, int) or isinstance(piece, bool):
        raise ProtocolError(Code.BAD_JSON, "piece reply without a piece index")
    if h.get("ok") is True:
        if len(frames) == 3:
            return PieceReply(id=req_id, piece=piece, payload=frames[2])
        # Answer the request as failed now rather than let it run into its timeout.
        return PieceReply(
            id=req_id, piece=piece, error=RemoteError(Code.BAD_FRAME, "piece reply without payload")
        )
    err = h.get("error")
    if not isinstance(err, dict):
        raise ProtocolError(Code.BAD_FRAME, "piece reply with neither payload nor error")
    code, message = err.get("code", Code.BAD_FRAME), err.get("message", "malformed piece reply")
    return PieceReply(id=req_id, piece=piece, error=RemoteError(str(code), str(message)))
