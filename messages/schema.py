"""What each operation takes: one table, checked on both ends.

The client validates before sending (fail fast, with the same message the tracker would give),
and the tracker validates everything it receives, because a peer may be anything.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import protocol as P
from .endpoints import check_endpoint
from .errors import Code, ProtocolError
from .frames import check_int
from .names import check_file_name, check_name

Validator = Callable[[Any], Any]

_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_Z85_KEY_RE = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


def _user(v: Any) -> str:
    return check_name(v, "user name")


def _group(v: Any) -> str:
    return check_name(v, "group name")


def _password(v: Any) -> str:
    if not isinstance(v, str) or not 1 <= len(v) <= P.MAX_PASSWORD_LEN:
        raise ProtocolError(Code.BAD_ARGS, f"password must be 1-{P.MAX_PASSWORD_LEN} characters")
    return v


def _size(v: Any) -> int:
    return check_int(v, 0, P.MAX_FILE_SIZE, "size")


def _piece_size(v: Any) -> int:
    return check_int(v, P.MIN_PIECE_SIZE, P.MAX_PIECE_SIZE, "piece size")


def _hex64(v: Any) -> str:
    if not isinstance(v, str) or not _HEX64_RE.fullmatch(v):
        raise ProtocolError(Code.BAD_ARGS, "expected 64 lowercase hex digits")
    return v


def _endpoint(v: Any) -> str:
    return check_endpoint(v)


def _key(v: Any) -> str:
    if not isinstance(v, str) or not _Z85_KEY_RE.fullmatch(v):
        raise ProtocolError(Code.BAD_ARGS, "a key must be a 40-character Z85 CURVE key")
    return v


def _flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ProtocolError(Code.BAD_ARGS, "expected true or false")
    return v


def _piece_index(v: Any) -> int:
    return check_int(v, 0, P.MAX_PIECES - 1, "piece")


def _bitfield_text(v: Any) -> str:
    if not isinstance(v, str) or len(v) > P.MAX_PIECES // 6 + 8:
        raise ProtocolError(Code.BAD_ARGS, "have must be a base64 bitfield")
    return v


def _share_refs(v: Any) -> list[dict[str, Any]]:
    """announce's list of what a peer serves: complete files, or partial ones with a bitfield."""
    if not isinstance(v, list) or len(v) > P.MAX_SHARES:
        raise ProtocolError(Code.BAD_ARGS, f"shares must be a list (at most {P.MAX_SHARES})")
    out = []
    for item in v:
        if not isinstance(item, dict):
            raise ProtocolError(Code.BAD_ARGS, "each share must be an object")
        ref = {"group": _group(item.get("group")), "file": check_file_name(item.get("file"))}
        if item.get("have") is not None:
            ref["have"] = _bitfield_text(item["have"])
        out.append(ref)
    return out


def _cursor(v: Any) -> str:
    """Where a page starts: after this name (user, group or file name; "" for the first page)."""
    if not isinstance(v, str) or len(v.encode("utf-8", "surrogatepass")) > P.MAX_FILE_NAME_BYTES:
        raise ProtocolError(Code.BAD_ARGS, f"after must be a name of at most {P.MAX_FILE_NAME_BYTES} bytes")
    return v


def _limit(v: Any) -> int:
    return check_int(v, 1, P.MAX_PAGE, "limit")


def _want(v: Any) -> int:
    return check_int(v, 0, P.HOLDER_SAMPLE, "want")


def _keys(v: Any) -> list[str]:
    if not isinstance(v, list) or len(v) > P.MAX_KNOWN:
        raise ProtocolError(Code.BAD_ARGS, f"known must be a list of at most {P.MAX_KNOWN} keys")
    return [_key(k) for k in v]


PAGE: dict[str, Validator] = {"after": _cursor, "limit": _limit}  # optional on every listing
_G: dict[str, Validator] = {"group": _group}
_GF: dict[str, Validator] = {"group": _group, "file": check_file_name}
_GU: dict[str, Validator] = {"group": _group, "user": _user}


@dataclass(frozen=True, slots=True)
class OpSpec:
    """How the tracker treats one operation."""

    fields: dict[str, Validator]
    optional: dict[str, Validator] = dataclasses.field(default_factory=dict)  # absent: a default
    token: bool = True  # needs a session: the tracker checks it once, before any handler runs
    write: bool = False  # durable: committed before the reply, answered from a cache on retry
    read: bool = False  # changes nothing, so it needs no savepoint of its own


OPS: dict[str, OpSpec] = {
    P.OP_PING: OpSpec({}, token=False, read=True),
    P.OP_CREATE_USER: OpSpec({"user": _user, "password": _password}, token=False, write=True),
    P.OP_LOGIN: OpSpec({"user": _user, "password": _password}, token=False, write=True),
    P.OP_LOGOUT: OpSpec({}, write=True),
    P.OP_CREATE_GROUP: OpSpec(_G, write=True),
    P.OP_JOIN_GROUP: OpSpec(_G, write=True),
    P.OP_LEAVE_GROUP: OpSpec(_G, write=True),
    P.OP_LIST_GROUPS: OpSpec({}, PAGE, read=True),
    P.OP_LIST_REQUESTS: OpSpec(_G, PAGE, read=True),
    P.OP_ACCEPT_REQUEST: OpSpec(_GU, write=True),
    P.OP_REJECT_REQUEST: OpSpec(_GU, write=True),
    P.OP_LIST_FILES: OpSpec(_G, PAGE, read=True),
    P.OP_FILE_INFO: OpSpec(_GF, read=True),
    P.OP_SHARE_FILE: OpSpec({**_GF, "size": _size, "piece_size": _piece_size, "root": _hex64}, write=True),
    P.OP_STOP_SHARE: OpSpec(_GF, write=True),
    P.OP_HOLDERS: OpSpec(_GF, {"known": _keys, "want": _want}, read=True),
    # "more": a further batch of shares for the session the first announce registered.
    P.OP_ANNOUNCE: OpSpec({"endpoint": _endpoint, "plain": _flag, "shares": _share_refs}, {"more": _flag}),
    P.OP_PROGRESS: OpSpec({**_GF, "have": _bitfield_text}),
    P.OP_HEARTBEAT: OpSpec({}),
    P.OP_REMOVE_FILE: OpSpec(_GF, write=True),
    P.OP_REMOVE_MEMBER: OpSpec(_GU, write=True),
    P.OP_REPORT: OpSpec({**_GF, "holder": _key, "piece": _piece_index}),
    P.OP_VERIFIED: OpSpec(_GF),
}


def validate_args(op: str, args: Any) -> dict[str, Any]:
    """Return the cleaned arguments of ``op`` or raise a ProtocolError naming the problem."""
    spec = OPS.get(op)
    if spec is None:
        raise ProtocolError(Code.UNKNOWN_OP, f"unknown operation {str(op)[:40]!r}")
    if not isinstance(args, dict):
        raise ProtocolError(Code.BAD_ARGS, "args must be an object")
    extra = set(args) - set(spec.fields) - set(spec.optional)
    if extra:
        raise ProtocolError(Code.BAD_ARGS, f"{op}: unexpected argument {sorted(extra)[0][:40]!r}")
    clean = {}
    for name, check in spec.fields.items():
        if name not in args:
            raise ProtocolError(Code.BAD_ARGS, f"{op}: missing argument {name!r}")
        clean[name] = check(args[name])
    for name, check in spec.optional.items():
        if name in args:
            clean[name] = check(args[name])
    return clean
