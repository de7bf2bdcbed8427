"""Error codes and the exceptions that carry them.

Codes are stable strings: scripts and tests match on them, people read the message. As in h11,
``RemoteError`` (the other side refused or misbehaved) is kept apart from ``LocalError`` (our
caller misused the API or the local disk failed), so callers can tell whom to blame.
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
    NO_HOLDERS = "no_holders"
    TIMEOUT = "timeout"
    NOT_LOGGED_IN = "not_logged_in"
    ALREADY_LOGGED_IN = "already_logged_in"
    DOWNLOAD_FAILED = "download_failed"
    BAD_PATH = "bad_path"
    IO_ERROR = "io_error"
    INTERNAL = "internal"


class TorrentError(Exception):
    """Base: a failure with a stable ``code`` and a human ``message``."""

    def __init__(self, code: Code | str, message: str) -> None:
        super().__init__(message)
        self.code = Code(code) if code in Code._value2member_map_ else code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "message": self.message}


class RemoteError(TorrentError):
    """The tracker or a seeder answered with an error."""


class LocalError(TorrentError):
    """We refused before sending anything, or a local resource failed."""


class ProtocolError(TorrentError):
    """A message on the wire did not follow the protocol."""
