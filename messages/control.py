"""Control messages: a peer's requests to the tracker and the tracker's replies.

Pure values with ``encode() -> frames`` and ``decode(frames)``: nothing here touches a socket,
so every rule is tested without one (h11's sans-I/O style). Decoding never trusts its input:
a bad message raises a ProtocolError whose code and message go straight back to the sender.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import Code, ProtocolError, RemoteError, TorrentError
from .frames import check_frames, check_id, dumps, loads_header
from .protocol import CONTROL_TAG, MAX_CID, MAX_TOKEN
from .schema import validate_args


@dataclass(frozen=True, slots=True)
class Request:
    """A request to the tracker.

    Frames: ``[CONTROL_TAG, header]`` with header
    ``{"id": int, "op": str, "cid": str, "args": {...}, "token": str (optional)}``. ``id`` pairs
    the reply with the request; ``cid`` names the client, so (cid, id) identifies a retry.
    """

    id: int
    op: str
    args: dict[str, Any]
    cid: str = ""
    token: str | None = None

    def encode(self) -> list[bytes]:
        header: dict[str, Any] = {"id": self.id, "op": self.op, "cid": self.cid, "args": self.args}
        if self.token is not None:
            header["token"] = self.token
        return [CONTROL_TAG, dumps(header)]

    @classmethod
    def decode(cls, frames: list[Any]) -> Request:
        check_frames(frames, CONTROL_TAG, (2,))
        header = loads_header(frames[1])
        req_id = check_id(header.get("id"))
        op = header.get("op")
        if not isinstance(op, str):
            raise ProtocolError(Code.UNKNOWN_OP, "missing operation")
        cid = header.get("cid", "")
        if not isinstance(cid, str) or len(cid) > MAX_CID:
            raise ProtocolError(Code.BAD_ARGS, "client id must be a short string")
        token = header.get("token")
        if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN):
            raise ProtocolError(Code.BAD_ARGS, "token must be a short string")
        args = validate_args(op, header.get("args", {}))
        return cls(id=req_id, op=op, args=args, cid=cid, token=token)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: Code | str
    message: str


@dataclass(frozen=True, slots=True)
class Reply:
    """The tracker's answer to one request.

    Frames: ``[CONTROL_TAG, header]`` with header ``{"id", "ok": true, "result": {...}}``
    or ``{"id", "ok": false, "error": {"code", "message"}}``. Build with ``success`` or
    ``failure``, so a reply is always either a result or an error, never both.
    """

    id: int
    result: dict[str, Any] = field(default_factory=dict)
    error: ErrorInfo | None = None

    @classmethod
    def success(cls, req_id: int, result: dict[str, Any] | None = None) -> Reply:
        return cls(id=req_id, result=result or {})

    @classmethod
    def failure(cls, req_id: int, err: TorrentError) -> Reply:
        return cls(id=req_id, error=ErrorInfo(err.code, err.message))

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> dict[str, Any]:
        """The result, or the remote error raised as an exception."""
        if self.error is not None:
            raise RemoteError(self.error.code, self.error.message)
        return self.result

    def encode(self) -> list[bytes]:
        header: dict[str, Any] = {"id": self.id, "ok": self.error is None}
        if self.error is None:
            header["result"] = self.result
        else:
            header["error"] = {"code": str(self.error.code), "message": self.error.message}
        return [CONTROL_TAG, dumps(header)]

    @classmethod
    def decode(cls, frames: list[Any]) -> Reply:
        check_frames(frames, CONTROL_TAG, (2,))
        return cls.from_header(loads_header(frames[1]))

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> Reply:
        req_id = check_id(header.get("id"))
        ok = header.get("ok")
        if ok is True:
            result = header.get("result", {})
            if not isinstance(result, dict):
                raise ProtocolError(Code.BAD_JSON, "result must be an object")
            return cls(id=req_id, result=result)
        err = header.get("error")
        if ok is not False or not isinstance(err, dict):
            raise ProtocolError(Code.BAD_JSON, "reply needs ok and a result or an error")
        code, message = err.get("code"), err.get("message")
        if not isinstance(code, str) or not isinstance(message, str):
            raise ProtocolError(Code.BAD_JSON, "error needs a code and a message")
        known: Code | str = Code(code) if code in Code._value2member_map_ else code
        return cls(id=req_id, error=ErrorInfo(known, message[:1000]))


@dataclass(frozen=True, slots=True)
class Push:
    """Something the tracker tells a peer unasked: a revocation, a removed file, a holder change.

    Frames: ``[CONTROL_TAG, {"push": kind, "body": {...}}]`` on the same DEALER the peer uses
    for its requests (the tracker knows its routing id from them). Kinds are PUSH_* in
    ``protocol``; a peer ignores kinds it does not know.
    """

    kind: str
    body: dict[str, Any]

    def encode(self) -> list[bytes]:
        return [CONTROL_TAG, dumps({"push": self.kind, "body": self.body})]


def decode_inbound(frames: list[Any]) -> Reply | Push:
    """What a peer's DEALER received from the tracker: a reply to a request, or a push."""
    check_frames(frames, CONTROL_TAG, (2,))
    header = loads_header(frames[1])
    kind = header.get("push")
    if kind is None:
        return Reply.from_header(header)
    body = header.get("body")
    if not isinstance(kind, str) or not isinstance(body, dict):
        raise ProtocolError(Code.BAD_JSON, "push needs a kind and a body")
    return Push(kind[:40], body)
