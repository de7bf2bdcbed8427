"""Error codes and the exceptions that carry them.

Codes are stable strings: scripts and tests match on them, people read the message. The
exception classes name a *kind*, not a point of view (h11's lesson): a rule that says no raises
``Refused``; malformed input is a ``ProtocolError``; ``RemoteError`` is made only by the
decoders, from an error reply the other side sent; ``LocalError`` only by the peer's own
checks and its local disk. A server answers any of them with the same code and message.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    BAD_FRAME = "bad_frame"  # wrong frame count or tag
    BAD_JSON = "bad_json"
    TOO_LARGE = "too_large"
    UNKNOWN_OP = "unknown_op"
    BAD_ARGS = "bad_args"
    BAD_NAME = "bad_name"
    UNAUTHORIZED = "unauthorized"  # no session, or an unknown/expired token
    WRONG_PASSWORD = "wrong_password"
    THROTTLED = "throttled"  # too many wrong passwords: wait before trying again
    NO_SUCH_USER = "no_such_user"
    USER_EXISTS = "user_exists"
    NO_SUCH_GROUP = "no_such_group"
    GROUP_EXISTS = "group_exists"
    NOT_MEMBER = "not_member"
    NOT_ADMIN = "not_admin"
    ALREADY_MEMBER = "already_member"
    ALREADY_REQUESTED = "already_requested"
    NO_SUCH_REQUEST = "no_such_request"
    NO_SUCH_FILE = "no_such_file"
    FILE_CONFLICT = "file_conflict"  # same name, other content
    NOT_SHARING = "not_sharing"
    BAD_GRANT = "bad_grant"
    FILE_CHANGED = "file_changed"  # the seeder's copy changed on disk since it was shared
    NO_SUCH_PIECE = "no_such_piece"
    BAD_PIECE = "bad_piece"  # a piece whose length or SHA-256 does not match
    BUSY = "busy"  # the other side is at capacity: ask elsewhere or later
    NO_HOLDERS = "no_holders"
    UNREACHABLE = "unreachable"  # holders are listed, but none answers from here
    TIMEOUT = "timeout"
    NOT_LOGGED_IN = "not_logged_in"
    NOT_ONLINE = "not_online"  # a further announce batch before the first one
    ALREADY_LOGGED_IN = "already_logged_in"
    DOWNLOAD_FAILED = "download_failed"
    BAD_PATH = "bad_path"
    NO_SPACE = "no_space"  # a local disk is full
    IO_ERROR = "io_error"
    BAD_KEY = "bad_key"  # a CURVE key that is malformed, unknown or not the pinned one
    INTERNAL = "internal"


class TorrentError(Exception):
    """Base: a failure with a stable ``code`` and a human ``message``.

    ``code`` is a ``Code``; only a RemoteError from a newer peer may carry a code string this
    version does not know, which is kept as the plain string.
    """

    def __init__(self, code: Code | str, message: str) -> None:
        super().__init__(message)
        self.code: Code | str = Code(code) if code in Code._value2member_map_ else code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "message": self.message}


class Refused(TorrentError):
    """A rule said no: not a member, no such file, wrong password, piece not held."""


class ProtocolError(TorrentError):
    """A message did not follow the protocol (frames, JSON, types, names, limits)."""


class RemoteError(TorrentError):
    """The tracker or a seeder answered with an error (made only by the decoders)."""


class LocalError(TorrentError):
    """We refused before sending anything, or a local resource (disk, folder) failed."""
