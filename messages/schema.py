"""What each operation takes: one table, checked on both ends.

The client validates before sending (fail fast, with the same message the tracker would give),
and the tracker validates everything it receives, because a peer may be anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import protocol as P
from .errors import Code, ProtocolError
from .names import check_file_name, check_name

Validator = Callable[[Any], Any]

_ENDPOINT_RE = re.compile(r"tcp://([A-Za-z0-9][A-Za-z0-9.\-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\]):([0-9]{1,5})")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")


def _user(v: Any) -> str:
    return check_name(v, "user name")


def _group(v: Any) -> str:
    return check_name(v, "group name")


def _password(v: Any) -> str:
    if not isinstance(v, str) or not 1 <= len(v) <= P.MAX_PASSWORD_LEN:
        raise ProtocolError(Code.BAD_ARGS, f"password must be 1-{P.MAX_PASSWORD_LEN} characters")
    return v


def _size(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > 1 << 50:
        raise ProtocolError(Code.BAD_ARGS, "size must be a non-negative integer")
    return v


def _piece_size(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not P.MIN_PIECE_SIZE <= v <= P.MAX_PIECE_SIZE:
        raise ProtocolError(
            Code.BAD_ARGS, f"piece size must be an integer from {P.MIN_PIECE_SIZE} to {P.MAX_PIECE_SIZE}"
        )
    return v


def _hex64(v: Any) -> str:
    if not isinstance(v, str) or not _HEX64_RE.fullmatch(v):
        raise ProtocolError(Code.BAD_ARGS, "expected 64 lowercase hex digits")
    return v


def _endpoint(v: Any) -> str:
    m = _ENDPOINT_RE.fullmatch(v) if isinstance(v, str) else None
    if m is None or not 1 <= int(m.group(2)) <= 65535:
        raise ProtocolError(Code.BAD_ARGS, "endpoint must look like tcp://HOST:PORT (port 1-65535)")
    return v


def _bitfield_text(v: Any) -> str:
    if not isinstance(v, str) or len(v) > P.MAX_PIECES // 6 + 8:
        raise ProtocolError(Code.BAD_ARGS, "have must be a base64 bitfield")
    return v


def _share_refs(v: Any) -> list[dict[str, Any]]:
    """announce's list of what a peer serves: complete files, or partial ones with a bitfield."""
    if not isinstance(v, list) or len(v) > 10_000:
        raise ProtocolError(Code.BAD_ARGS, "shares must be a list (at most 10000)")
    out = []
    for item in v:
        if not isinstance(item, dict):
            raise ProtocolError(Code.BAD_ARGS, "each share must be an object")
        ref = {"group": _group(item.get("group")), "file": check_file_name(item.get("file"))}
        if item.get("have") is not None:
            ref["have"] = _bitfield_text(item["have"])
        out.append(ref)
    return out


_G = {"group": _group}
_GF = {"group": _group, "file": check_file_name}
_GU = {"group": _group, "user": _user}

# op -> (needs a session token, {field: validator}, carries a blob frame)
OPS: dict[str, tuple[bool, dict[str, Validator], bool]] = {
    P.OP_PING: (False, {}, False),
    P.OP_CREATE_USER: (False, {"user": _user, "password": _password}, False),
    P.OP_LOGIN: (False, {"user": _user, "password": _password}, False),
    P.OP_LOGOUT: (True, {}, False),
    P.OP_CREATE_GROUP: (True, _G, False),
    P.OP_JOIN_GROUP: (True, _G, False),
    P.OP_LEAVE_GROUP: (True, _G, False),
    P.OP_LIST_GROUPS: (True, {}, False),
    P.OP_LIST_REQUESTS: (True, _G, False),
    P.OP_ACCEPT_REQUEST: (True, _GU, False),
    P.OP_REJECT_REQUEST: (True, _GU, False),
    P.OP_LIST_FILES: (True, _G, False),
    P.OP_FILE_INFO: (True, _GF, False),
    P.OP_SHARE_FILE: (
        True,
        {**_GF, "size": _size, "piece_size": _piece_size, "root": _hex64},
        True,
    ),
    P.OP_STOP_SHARE: (True, _GF, False),
    P.OP_HOLDERS: (True, _GF, False),
    P.OP_ANNOUNCE: (True, {"endpoint": _endpoint, "seed_key": _hex64, "shares": _share_refs}, False),
    P.OP_PROGRESS: (True, {**_GF, "have": _bitfield_text}, False),
    P.OP_HEARTBEAT: (True, {}, False),
}

# Ops whose effects are durable: the tracker commits before replying and caches the reply
# so a retried request (same client id and request id) gets the same answer.
WRITE_OPS = frozenset(
    {
        P.OP_CREATE_USER,
        P.OP_LOGIN,
        P.OP_LOGOUT,
        P.OP_CREATE_GROUP,
        P.OP_JOIN_GROUP,
        P.OP_LEAVE_GROUP,
        P.OP_ACCEPT_REQUEST,
        P.OP_REJECT_REQUEST,
        P.OP_SHARE_FILE,
        P.OP_STOP_SHARE,
    }
)


def validate_args(op: str, args: Any, has_blob: bool) -> dict[str, Any]:
    """Return the cleaned arguments of ``op`` or raise a ProtocolError naming the problem."""
    spec = OPS.get(op)
    if spec is None:
        raise ProtocolError(Code.UNKNOWN_OP, f"unknown operation {str(op)[:40]!r}")
    _, fields, wants_blob = spec
    if not isinstance(args, dict):
        raise ProtocolError(Code.BAD_ARGS, "args must be an object")
    extra = set(args) - set(fields)
    if extra:
        raise ProtocolError(Code.BAD_ARGS, f"{op}: unexpected argument {sorted(extra)[0][:40]!r}")
    clean = {}
    for name, check in fields.items():
        if name not in args:
            raise ProtocolError(Code.BAD_ARGS, f"{op}: missing argument {name!r}")
        clean[name] = check(args[name])
    if wants_blob != has_blob:
        raise ProtocolError(Code.BAD_FRAME, f"{op}: {'missing' if wants_blob else 'unexpected'} data frame")
    return clean


def needs_token(op: str) -> bool:
    return OPS[op][0]
