"""Who is online and what each online peer serves: in memory only, rebuilt by announcements.

Presence is deliberately not persisted: after a restart the tracker knows nobody is online until
peers heartbeat, see the new epoch and announce again. That is the only way to be sure an
endpoint is reachable, and it costs peers one message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from messages.bitfield import Bitfield

FileKey = tuple[str, str]  # (group, file name)


@dataclass(slots=True)
class OnlinePeer:
    user: str
    endpoint: str
    seed_key: bytes
    last_seen: float
    serving: dict[FileKey, Bitfield | None] = field(default_factory=dict)  # None: complete


class Presence:
    def __init__(self, expiry: float) -> None:
        self.expiry = expiry
        self.peers: dict[bytes, OnlinePeer] = {}  # by session token hash
        self._by_file: dict[FileKey, set[bytes]] = {}

    def announce(self, th: bytes, user: str, endpoint: str, seed_key: bytes) -> OnlinePeer:
        """(Re)register a session; what it served before is forgotten and re-added by the caller."""
        self.drop(th)
        peer = self.peers[th] = OnlinePeer(user, endpoint, seed_key, time.monotonic())
        return peer

    def serve(self, th: bytes, key: FileKey, have: Bitfield | None) -> None:
        peer = self.peers.get(th)
        if peer is not None:
            peer.serving[key] = have
            self._by_file.setdefault(key, set()).add(th)

    def touch(self, th: bytes) -> bool:
        peer = self.peers.get(th)
        if peer is None:
            return False
        peer.last_seen = time.monotonic()
        return True

    def drop(self, th: bytes) -> None:
        peer = self.peers.pop(th, None)
        if peer is not None:
            for key in peer.serving:
                self._unindex(key, th)

    def unserve(self, key: FileKey, user: str | None = None) -> None:
        """Stop listing ``user`` (or everybody) as serving ``key``."""
        for th in list(self._by_file.get(key, ())):
            peer = self.peers[th]
            if user is None or peer.user == user:
                peer.serving.pop(key, None)
                self._unindex(key, th)

    def unserve_session(self, th: bytes, key: FileKey) -> None:
        peer = self.peers.get(th)
        if peer is not None and peer.serving.pop(key, "absent") != "absent":
            self._unindex(key, th)

    def unserve_group(self, group: str, user: str) -> None:
        for th, peer in self.peers.items():
            if peer.user == user:
                for key in [k for k in peer.serving if k[0] == group]:
                    del peer.serving[key]
                    self._unindex(key, th)

    def holders(self, key: FileKey) -> list[tuple[bytes, OnlinePeer]]:
        return [(th, self.peers[th]) for th in sorted(self._by_file.get(key, ()))]

    def count(self, key: FileKey) -> int:
        return len(self._by_file.get(key, ()))

    def expire(self, now: float | None = None) -> list[str]:
        """Drop peers unseen for longer than ``expiry``; returns their user names."""
        now = time.monotonic() if now is None else now
        gone = [th for th, p in self.peers.items() if now - p.last_seen > self.expiry]
        users = [self.peers[th].user for th in gone]
        for th in gone:
            self.drop(th)
        return users

    def _unindex(self, key: FileKey, th: bytes) -> None:
        holders = self._by_file.get(key)
        if holders is not None:
            holders.discard(th)
            if not holders:
                del self._by_file[key]
