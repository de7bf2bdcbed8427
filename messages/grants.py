"""Download grants: the tracker vouches for a member, the seeder checks without a round trip.

Each seeder picks a random key and gives it to the tracker when it announces; the tracker
signs (user, group, file, expiry) with that key. A non-member never gets a grant, a forged one
fails the HMAC, and a departed member's grants run out with GRANT_LIFETIME.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from .errors import Code, Refused
from .records import Grant


def _mac(key: bytes, user: str, group: str, file: str, exp: float) -> str:
    msg = f"{user}\n{group}\n{file}\n{exp:.3f}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def make_grant(key: bytes, user: str, group: str, file: str, lifetime: float) -> Grant:
    exp = round(time.time() + lifetime, 3)
    return Grant(user=user, group=group, file=file, exp=exp, mac=_mac(key, user, group, file, exp))


def check_grant(key: bytes, grant: Grant, group: str, file: str, now: float | None = None) -> None:
    """Raise BAD_GRANT unless ``grant`` was signed with ``key`` for this file and is current."""
    if grant.group != group or grant.file != file:
        raise Refused(Code.BAD_GRANT, "grant is for another file")
    if grant.exp < (time.time() if now is None else now):
        raise Refused(Code.BAD_GRANT, "grant expired")
    expected = _mac(key, grant.user, grant.group, grant.file, grant.exp)
    if not hmac.compare_digest(expected.encode(), grant.mac.encode("utf-8", "replace")):
        raise Refused(Code.BAD_GRANT, "grant signature does not match")
