"""Validation of names that reach a file system or a database.

A file name becomes a path component on every downloader's disk, so it must not be able to
climb out of the destination folder (``..``, separators, NUL) whatever the sender intends.
"""

from __future__ import annotations

import re

from .errors import Code, ProtocolError
from .protocol import MAX_FILE_NAME_BYTES, MAX_NAME_LEN

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def check_name(value: object, what: str = "name") -> str:
    """User and group names: short, ASCII, no separators, no leading dot."""
    if not isinstance(value, str):
        raise ProtocolError(Code.BAD_ARGS, f"{what} must be a string")
    if not 1 <= len(value) <= MAX_NAME_LEN or not _NAME_RE.fullmatch(value):
        raise ProtocolError(
            Code.BAD_NAME,
            f"bad {what} {value[:80]!r}: use 1-{MAX_NAME_LEN} letters, digits, '_', '-', '.'"
            " (not starting with '.' or '-')",
        )
    return value


def check_file_name(value: object) -> str:
    """A shared file's name: one safe path component, at most 255 UTF-8 bytes."""
    if not isinstance(value, str):
        raise ProtocolError(Code.BAD_ARGS, "file name must be a string")
    shown = repr(value[:80])
    if value in ("", ".", ".."):
        raise ProtocolError(Code.BAD_NAME, f"bad file name {shown}")
    if "/" in value or "\\" in value:
        raise ProtocolError(Code.BAD_NAME, f"bad file name {shown}: no path separators")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ProtocolError(Code.BAD_NAME, f"bad file name {shown}: control characters")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(Code.BAD_NAME, f"bad file name {shown}: not valid UTF-8") from None
    if len(encoded) > MAX_FILE_NAME_BYTES:
        raise ProtocolError(Code.BAD_NAME, f"file name longer than {MAX_FILE_NAME_BYTES} bytes")
    return value
