"""Salted slow password hashes (scrypt): a stolen state file does not give away passwords."""

from __future__ import annotations

import hashlib
import hmac
import secrets

# n=2**14, r=8: about 16 MiB and tens of milliseconds per hash, the usual interactive setting.
_N, _R, _P = 1 << 14, 8, 1


def new_salt() -> bytes:
    return secrets.token_bytes(16)


def scrypt(password: bytes, salt: bytes) -> bytes:
    """The slow part, on its own: the hashing pool's workers run this (it releases the GIL)."""
    return hashlib.scrypt(password, salt=salt, n=_N, r=_R, p=_P, dklen=32)


def hash_password(password: str, salt: bytes | None = None) -> tuple[bytes, bytes]:
    salt = salt if salt is not None else new_salt()
    return salt, scrypt(password.encode(), salt)


def verify_password(password: str, salt: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(hash_password(password, salt)[1], expected)


def same_digest(digest: bytes, expected: bytes) -> bool:
    """Constant-time comparison of a hash computed elsewhere (the hashing pool) with the stored one."""
    return hmac.compare_digest(digest, expected)
