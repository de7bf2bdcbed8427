"""What a peer does when the tracker tells it something unasked (messages.control.Push).

- ``revoke``: seeders refuse grants the revocation covers, at once (a member left, a session
  ended): access ends with membership, without waiting for grants to expire.
- ``removed``: the admin removed a file: stop serving it, end any download of it.
- ``verify``: downloaders reported bad pieces from us: re-hash them; if our copy is sound, say
  so (the tracker lists us again), otherwise stop serving it.

Handlers run in whichever thread received the push; anything that needs the tracker is queued
and run by the presence thread (``run_pending``), never from inside another call's wait.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from broker.client import ControlClient
from messages import protocol as P
from messages.bitfield import Bitfield
from messages.control import Push
from messages.errors import ProtocolError, TorrentError
from messages.records import Revocation

from .hashing import digest_at
from .library import Share

if TYPE_CHECKING:
    from .api import Peer

log = logging.getLogger(__name__)
Action = Callable[[ControlClient, str], object]  # (client, token)


class PushHandler:
    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self._lock = threading.Lock()
        self._pending: list[Action] = []

    def handle(self, push: Push, client: ControlClient) -> None:
        try:
            if push.kind == P.PUSH_REVOKE:
                self.peer.revoked.add(Revocation.from_wire(push.body))
            elif push.kind == P.PUSH_REMOVED:
                self._removed(push.body)
            elif push.kind == P.PUSH_VERIFY:
                self._verify(push.body)
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring a malformed %s push: %s", push.kind, exc)

    def run_pending(self, client: ControlClient, token: str) -> None:
        with self._lock:
            actions, self._pending = self._pending, []
        for action in actions:
            try:
                action(client, token)
            except TorrentError as exc:
                log.info("after a push: %s", exc.message)

    def _later(self, action: Action) -> None:
        with self._lock:
            self._pending.append(action)

    def _removed(self, body: dict[str, object]) -> None:
        group, name, by = str(body["group"]), str(body["file"]), str(body.get("by", "the admin"))
        reason = f"[{group}] {name} was removed from the group by {by}"
        for d in self.peer.running():
            if d.key == (group, name):
                d.cancel(reason)
        try:
            had = self.peer.library.remove((group, name))
        except TorrentError as exc:
            log.warning("%s", exc.message)
            had = None
        if had is not None and had.complete:
            self.peer.on_note(f"{reason}; no longer shared")

    def _verify(self, body: dict[str, object]) -> None:
        group, name = str(body["group"]), str(body["file"])
        pieces = [int(p) for p in body["pieces"]]  # type: ignore[attr-defined]
        share = self.peer.library.get((group, name))
        if share is None:
            return
        bad = [p for p in pieces if not _piece_ok(share, p)]
        args = {"group": group, "file": name}
        if not bad:
            self._later(lambda c, t: c.call(P.OP_VERIFIED, args, token=t).unwrap())
            return
        self.peer.library.remove((group, name))
        self.peer.on_note(f"[{group}] {name}: pieces {bad[:8]} no longer match on disk; stopped sharing it")
        if share.complete:
            self._later(lambda c, t: c.call(P.OP_STOP_SHARE, args, token=t).unwrap())
        else:
            empty = Bitfield(share.meta.num_pieces).encode()
            self._later(lambda c, t: c.call(P.OP_PROGRESS, {**args, "have": empty}, token=t).unwrap())


def _piece_ok(share: Share, piece: int) -> bool:
    meta = share.meta
    if not 0 <= piece < meta.num_pieces:
        return True
    try:
        fd = os.open(share.path, os.O_RDONLY | (0 if share.complete else os.O_NOFOLLOW))
        try:
            data = os.pread(fd, meta.piece_len(piece), piece * meta.piece_size)
        finally:
            os.close(fd)
    except OSError:
        return False
    return hashlib.sha256(data).digest() == digest_at(share.digests, piece)
