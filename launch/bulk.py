"""A tracker's durable state written straight into its store: thousands of users, groups and
files in a second, for the scale tests and ``scripts/bench --scale``.

Making 20,000 users through the protocol would cost 20,000 password hashes (minutes); what is
measured is how the tracker serves a large state, not how fast it was built. Every user gets the
same password hash (one scrypt), so logins of these users are real logins. Rows are written with
the same columns the rules write (see ``tracker.schema``); the caller commits.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence

from tracker.passwords import hash_password
from tracker.rules import token_hash
from tracker.store import Store


def users(store: Store, names: Sequence[str], password: str = "pw") -> None:
    salt, digest = hash_password(password)
    now = time.time()
    store.many("INSERT INTO users VALUES (?,?,?,?)", [(n, salt, digest, now) for n in names])


def sessions(store: Store, names: Sequence[str], key: str) -> dict[str, str]:
    """A session for each user, opened from CURVE key ``key``; user -> token."""
    tokens = {n: secrets.token_urlsafe(24) for n in names}
    now = time.time()
    store.many(
        "INSERT INTO sessions VALUES (?,?,?,?)", [(token_hash(t), n, key, now) for n, t in tokens.items()]
    )
    return tokens


def group(store: Store, name: str, admin: str, members: Sequence[str] = ()) -> None:
    store.run("INSERT INTO groups VALUES (?,?,?)", name, admin, time.time())
    rows = [(name, admin, 1)] + [(name, m, i + 2) for i, m in enumerate(m for m in members if m != admin)]
    store.many("INSERT INTO members VALUES (?,?,?)", rows)


def groups(store: Store, names: Sequence[str], admin: str) -> None:
    """Many groups with one member each, their admin."""
    now = time.time()
    store.many("INSERT INTO groups VALUES (?,?,?)", [(n, admin, now) for n in names])
    store.many("INSERT INTO members VALUES (?,?,1)", [(n, admin) for n in names])


def requests(store: Store, group_name: str, names: Sequence[str]) -> None:
    now = time.time()
    store.many("INSERT INTO requests VALUES (?,?,?)", [(group_name, n, now) for n in names])


def files(
    store: Store,
    group_name: str,
    names: Sequence[str],
    sharer: str,
    size: int = 1 << 20,
    piece_size: int = 1 << 16,
) -> str:
    """Files of ``size`` bytes shared by ``sharer``; their (common, made-up) root."""
    root = hashlib.sha256(b"bulk").hexdigest()
    now = time.time()
    store.many(
        "INSERT INTO files VALUES (?,?,?,?,?,?)",
        [(group_name, n, size, piece_size, root, now) for n in names],
    )
    store.many("INSERT INTO shares VALUES (?,?,?)", [(group_name, n, sharer) for n in names])
    return root
