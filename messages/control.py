"""Encoding and decoding of control messages (tracker requests and replies).

Pure functions over lists of frames: nothing here touches a socket, so every rule is tested
without one (h11's sans-I/O style). Decoding never trusts its input: a bad message raises a
ProtocolError whose code and message go straight back to the sender.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import Code, ProtocolError, RemoteError, TorrentError
from .protocol import CONTROL_TAG, MAX_HEADER_BYTES
from .schema import validate_args

_MAX_ID = (1 << 53) - 1
_MAX_CID = 64
_MAX_TOKEN = 128


@dataclass(slots=True)
class Request:
    id: int
    op: str
    args: dict[str, Any]
    cid: str = ""
    token: str | None = None
    blob: bytes | None = None


@dataclass(slots=True)
class Reply:
    id: int
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    error: TorrentError | None = None
    blob: bytes | None = None

    def unwrap(self) -> dict[str, Any]:
        """The result, or the remote error raised as an exception."""
        if not self.ok:
            assert self.error is not None
            raise RemoteError(self.error.code, self.error.message)
        return self.result


def loads_header(raw: Any) -> dict[str, Any]:
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(Code.TOO_LARGE, f"header over {MAX_HEADER_BYTES} bytes")
    try:
        header = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError(Code.BAD_JSON, "header is not valid JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError(Code.BAD_JSON, "header must be a JSON object")
    return header


def _split(frames: list[Any], tag: bytes) -> tuple[dict[str, Any], bytes | None]:
    if len(frames) not in (2, 3):
        raise ProtocolError(Code.BAD_FRAME, f"expected 2 or 3 frames, got {len(frames)}")
    if bytes(frames[0]) != tag:
        raise ProtocolError(Code.BAD_FRAME, "unknown protocol tag")
    header = loads_header(frames[1])
    blob = bytes(frames[2]) if len(frames) == 3 else None
    return header, blob


def check_id(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_ID:
        raise ProtocolError(Code.BAD_ARGS, "request id must be a non-negative integer")
    return value


def peek_id(frames: list[Any]) -> int:
    """Best-effort request id of a message that failed to decode, so the error can be matched."""
    try:
        header = orjson.loads(frames[1]) if len(frames) >= 2 else None
    except (orjson.JSONDecodeError, TypeError):
        return 0
    value = header.get("id") if isinstance(header, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_ID else 0


def encode_request(req: Request) -> list[bytes]:
    header: dict[str, Any] = {"id": req.id, "op": req.op, "cid": req.cid, "args": req.args}
    if req.token is not None:
        header["token"] = req.token
    frames = [CONTROL_TAG, orjson.dumps(header)]
    if req.blob is not None:
        frames.append(req.blob)
    return frames


def decode_request(frames: list[Any]) -> Request:
    header, blob = _split(frames, CONTROL_TAG)
    req_id = check_id(header.get("id"))
    op = header.get("op")
    if not isinstance(op, str):
        raise ProtocolError(Code.UNKNOWN_OP, "missing operation")
    cid = header.get("cid", "")
    if not isinstance(cid, str) or len(cid) > _MAX_CID:
        raise ProtocolError(Code.BAD_ARGS, "client id must be a short string")
    token = header.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > _MAX_TOKEN):
        raise ProtocolError(Code.BAD_ARGS, "token must be a short string")
    args = validate_args(op, header.get("args", {}), blob is not None)
    return Request(id=req_id, op=op, args=args, cid=cid, token=token, blob=blob)


def encode_reply(reply: Reply) -> list[bytes]:
    header: dict[str, Any] = {"id": reply.id, "ok": reply.ok}
    if reply.ok:
        header["result"] = reply.result
    else:
        assert reply.error is not None
        header["error"] = reply.error.to_dict()
    frames = [CONTROL_TAG, orjson.dumps(header)]
    if reply.blob is not None:
        frames.append(reply.blob)
    return frames


def error_reply(req_id: int, err: TorrentError) -> Reply:
    return Reply(id=req_id, ok=False, error=err)


def decode_reply(frames: list[Any]) -> Reply:
    header, blob = _split(frames, CONTROL_TAG)
    req_id = check_id(header.get("id"))
    ok = header.get("ok")
    if ok is True:
        result = header.get("result", {})
        if not isinstance(result, dict):
            raise ProtocolError(Code.BAD_JSON, "result must be an object")
        return Reply(id=req_id, ok=True, result=result, blob=blob)
    err = header.get("error")
    if ok is not False or not isinstance(err, dict):
        raise ProtocolError(Code.BAD_JSON, "reply needs ok and a result or an error")
    code, message = err.get("code"), err.get("message")
    if not isinstance(code, str) or not isinstance(message, str):
        raise ProtocolError(Code.BAD_JSON, "error needs a code and a message")
    return Reply(id=req_id, ok=False, error=RemoteError(code, message), blob=blob)
