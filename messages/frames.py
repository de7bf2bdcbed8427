"""Checks shared by every codec: frame layout, the JSON header, integers on the wire.

Nothing here trusts its input: sizes are checked before anything is parsed, so a hostile
message costs its length in bytes and no more.
"""

from __future__ import annotations

from typing import Any, TypeGuard

import orjson

from .errors import Code, ProtocolError
from .protocol import MAX_HEADER_BYTES, MAX_ID


def is_int(value: Any) -> TypeGuard[int]:
    """A JSON integer (``True`` is an int in Python, never on our wire)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: Any, lo: int, hi: int, what: str, code: Code = Code.BAD_ARGS) -> int:
    if not is_int(value) or not lo <= value <= hi:
        raise ProtocolError(code, f"{what} must be an integer from {lo} to {hi}")
    return value


def check_id(value: Any) -> int:
    if not is_int(value) or not 0 <= value <= MAX_ID:
        raise ProtocolError(Code.BAD_ARGS, "request id must be a non-negative integer")
    return value


def as_bytes(frame: Any) -> bytes:
    """The bytes of a frame, whether it came as ``bytes`` or as a zero-copy ``zmq.Frame``."""
    return frame if isinstance(frame, bytes) else bytes(getattr(frame, "buffer", frame))


def check_frames(frames: list[Any], tag: bytes, counts: tuple[int, ...]) -> None:
    if len(frames) not in counts:
        want = " or ".join(map(str, counts))
        raise ProtocolError(Code.BAD_FRAME, f"expected {want} frames, got {len(frames)}")
    if as_bytes(frames[0]) != tag:
        raise ProtocolError(Code.BAD_FRAME, "unknown protocol tag")


def loads_header(raw: Any) -> dict[str, Any]:
    """Parse a JSON object header, refusing anything over MAX_HEADER_BYTES unparsed."""
    raw = getattr(raw, "buffer", raw)
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(Code.TOO_LARGE, f"header over {MAX_HEADER_BYTES} bytes")
    try:
        header = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError(Code.BAD_JSON, "header is not valid JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError(Code.BAD_JSON, "header must be a JSON object")
    return header


def dumps(header: dict[str, Any]) -> bytes:
    return orjson.dumps(header)


def peek_id(frames: list[Any]) -> int:
    """Best-effort request id of a message that failed to decode, so the error can be matched.

    Never parses an oversized header: building an error reply must not cost more than the
    message that caused it.
    """
    if len(frames) < 2:
        return 0
    try:
        header = loads_header(frames[1])
    except ProtocolError:
        return 0
    value = header.get("id")
    return value if is_int(value) and 0 <= value <= MAX_ID else 0
