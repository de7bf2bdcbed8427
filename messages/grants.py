"""Download grants: the tracker vouches for a member, seeders check without a round trip.

A grant says "the holder of CURVE key ``key`` (user ``user``) may fetch ``group/file`` until
``exp``", signed by the tracker with Ed25519. Seeders know the tracker's verification key (it
comes with the announce reply, over the CURVE channel to the tracker the peer pinned), check
the signature, check that the request really comes from ``key`` (ZeroMQ authenticated it), and
refuse grants issued before a revocation the tracker pushed (a member who left, logged out, or
a file removed). No secret ever leaves the tracker: trackers sharing one CURVE key pair derive
the same signing key from it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import Code, Refused
from .records import Grant

_DERIVE = b"torrent grant signing key v1\0"


def _message(g: Grant) -> bytes:
    return f"grant\n{g.user}\n{g.key}\n{g.group}\n{g.file}\n{g.issued:.3f}\n{g.exp:.3f}".encode()


class GrantSigner:
    """The tracker's half: signs grants with a key derived from its CURVE secret."""

    def __init__(self, secret: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(_DERIVE + secret).digest())
        raw = self._key.public_key().public_bytes_raw()
        self.public = base64.b64encode(raw).decode("ascii")

    def grant(
        self, user: str, key: str, group: str, file: str, lifetime: float, now: float | None = None
    ) -> Grant:
        issued = round(time.time() if now is None else now, 3)
        unsigned = Grant(
            user=user, key=key, group=group, file=file, issued=issued, exp=round(issued + lifetime, 3), sig=""
        )
        sig = base64.b64encode(self._key.sign(_message(unsigned))).decode("ascii")
        return Grant(user, key, group, file, unsigned.issued, unsigned.exp, sig)


class GrantChecker:
    """A seeder's half: the tracker's verification key, and a memory of signatures checked."""

    def __init__(self, public: str) -> None:
        try:
            self._key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public, validate=True))
        except (binascii.Error, ValueError):
            raise Refused(Code.BAD_KEY, "the tracker's grant key is malformed") from None
        self.public = public
        self._good: dict[Grant, float] = {}  # whole grants already verified -> their expiry

    def check(self, g: Grant, group: str, file: str, requester: str | None, now: float | None = None) -> None:
        """Raise BAD_GRANT unless ``g`` is the tracker's, for this file, current, and (when the
        connection was authenticated) issued to the very key that sent the request."""
        now = time.time() if now is None else now
        if g.group != group or g.file != file:
            raise Refused(Code.BAD_GRANT, "grant is for another file")
        if g.exp < now:
            raise Refused(Code.BAD_GRANT, "grant expired; ask the tracker for a fresh one")
        if requester is not None and requester != g.key:
            raise Refused(Code.BAD_GRANT, "grant was issued to another key")
        if g in self._good:  # the whole grant, not just its signature: a changed field is rechecked
            return
        try:
            self._key.verify(base64.b64decode(g.sig, validate=True), _message(g))
        except (InvalidSignature, binascii.Error, ValueError):
            raise Refused(Code.BAD_GRANT, "grant signature does not match the tracker's key") from None
        if len(self._good) > 10_000:
            self._good = {known: exp for known, exp in self._good.items() if exp >= now}
        self._good[g] = g.exp
