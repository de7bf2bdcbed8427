"""CURVE key pairs on disk, and the authenticator every CURVE server needs.

Keys are pyzmq's own certificate files (``zmq.auth.create_certificates``), the secret one made
readable by its owner only (0600). Every process that serves over CURVE starts pyzmq's ZAP
authenticator (``zmq.auth``) in its context before binding: without one, libzmq accepts any
client key without asking anybody. Who may do what is then decided per request, from the
client key ZeroMQ authenticated (the frame's ``User-Id``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from messages.errors import Code, LocalError

KEY_LENGTH = 40  # a Z85-encoded 32-byte CURVE key


@dataclass(frozen=True, slots=True)
class KeyPair:
    public: str  # Z85
    secret: str

    @property
    def public_bytes(self) -> bytes:
        return self.public.encode("ascii")

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh pair kept in memory only (tools and tests that need no identity to keep)."""
        public, secret = zmq.curve_keypair()
        return cls(public.decode("ascii"), secret.decode("ascii"))


def check_key(text: str, what: str = "key") -> str:
    """A Z85 public key as given by a user (LocalError with a clear reason otherwise)."""
    try:
        if len(text) == KEY_LENGTH and len(zmq.utils.z85.decode(text.encode("ascii"))) == 32:
            return text
    except (ValueError, UnicodeEncodeError, KeyError):
        pass
    raise LocalError(
        Code.BAD_KEY, f"{what} must be a {KEY_LENGTH}-character Z85 CURVE key, got {text[:60]!r}"
    )


def load_or_create(folder: str, name: str) -> KeyPair:
    """The key pair ``<folder>/<name>.key{,_secret}``, made (secret file 0600) if missing."""
    secret_file = os.path.join(folder, f"{name}.key_secret")
    if not os.path.exists(secret_file):
        os.makedirs(folder, exist_ok=True)
        old = os.umask(0o077)  # create_certificates writes with plain open(): mind the mode
        try:
            zmq.auth.create_certificates(folder, name)
        finally:
            os.umask(old)
        os.chmod(secret_file, 0o600)
    try:
        public, secret = zmq.auth.load_certificate(secret_file)
    except (OSError, ValueError) as exc:
        raise LocalError(Code.BAD_KEY, f"cannot read the key pair in {secret_file}: {exc}") from None
    if secret is None:
        raise LocalError(Code.BAD_KEY, f"{secret_file} holds no secret key")
    return KeyPair(public.decode("ascii"), secret.decode("ascii"))


def start_authenticator(ctx: zmq.Context) -> ThreadAuthenticator:
    """pyzmq's ZAP handler for this context: any client key may complete the handshake.

    Anyone may create an account, so the tracker cannot know client keys in advance; seeders
    check each request's key against a tracker-signed grant. The handler still has to run:
    it is what makes ZeroMQ authenticate the key it then reports as each message's User-Id.
    """
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
    return auth


def serve_curve(sock: zmq.Socket, keys: KeyPair) -> None:
    """Make ``sock`` a CURVE server (before it binds)."""
    sock.curve_server = True
    sock.curve_secretkey = keys.secret.encode("ascii")
    sock.curve_publickey = keys.public_bytes


def client_curve(sock: zmq.Socket, keys: KeyPair, server_key: str) -> None:
    """Make ``sock`` a CURVE client of the server with ``server_key`` (before it connects)."""
    sock.curve_publickey = keys.public_bytes
    sock.curve_secretkey = keys.secret.encode("ascii")
    sock.curve_serverkey = server_key.encode("ascii")
