"""Salted slow password hashes (scrypt): a stolen state file does not give away passwords."""

from __future__ import annotations

import hashlib
import hmac
import secrets

# n=2**14, r=8: about 16 MiB and tens of milliseconds per hash, the usual interactive setting.
_N, _R, _P = 1 << 14, 8, 1


def hash_password(password: str, salt: bytes | None = None) -> tuple[bytes, bytes]:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return salt, digest


def verify_password(password: str, salt: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(hash_password(password, salt)[1], expected)
