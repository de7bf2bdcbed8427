"""The holders a download knows of, from the tracker's lists and pushes, kept beside the picker.

Pure bookkeeping (no sockets): holder lists (bounded samples the tracker chooses) and pushed
changes add, update or remove holders; the grant of the last list serves at every holder of the
file. The book holds at most MAX_KNOWN holders, and names them when it asks for more, so the
tracker can say which of them left. Holders that sent this process bad data are banned on
sight, and each bad piece is queued as a report for the tracker.
"""

from __future__ import annotations

import logging
from typing import Any

from messages.bitfield import Bitfield
from messages.errors import Code, ProtocolError
from messages.protocol import MAX_KNOWN
from messages.records import FileMeta, Grant, Holder

from .picker import Picker

log = logging.getLogger(__name__)
Distrusted = set[tuple[str, str, str]]  # (holder key, group, file)


class HolderBook:
    def __init__(self, meta: FileMeta, picker: Picker, distrusted: Distrusted, own_key: str = "") -> None:
        """``own_key``: this peer's; pushed news of our own pieces reach us too, and we are
        never a source of our own download."""
        self.meta = meta
        self.own_key = own_key
        self.picker = picker
        self.distrusted = distrusted
        self.grant: Grant | None = None  # ours for this file, from the last holder list: good at all
        self.holders: dict[str, Holder] = {}  # by holder id: its endpoint
        self.reports: list[dict[str, object]] = []  # bad pieces the tracker should hear of
        self.errors: dict[str, str] = {}  # holder id -> why its last request failed
        self._names: dict[str, str] = {}  # holder id -> user, for every holder ever listed

    def user(self, hid: str) -> str:
        return self._names.get(hid, hid)

    def known(self) -> list[str]:
        """The keys of the holders we know, for the tracker to say which left (at most MAX_KNOWN)."""
        return [h.key for h in self.holders.values()][:MAX_KNOWN]

    @property
    def room(self) -> int:
        """How many more holders we would take."""
        return max(0, MAX_KNOWN - len(self.holders))

    def apply(self, result: dict[str, Any]) -> list[str]:
        """A holders reply: our grant, a sample of holders (new ones, or what known ones hold
        now) and the known holders that left. The ids of holders that left."""
        try:
            self.grant = Grant.from_wire(result.get("grant"))
        except ProtocolError as exc:
            log.warning("ignoring a holder list without a valid grant: %s", exc)
            return []
        return self.merge(result)

    def merge(self, body: dict[str, Any]) -> list[str]:
        """A holders reply or push: holders that appeared or changed, keys that left."""
        left = {str(k) for k in body.get("left", []) if isinstance(k, str)}
        gone = [hid for hid, h in self.holders.items() if h.key in left]
        listed = [h for h in map(self._parse, body.get("holders", [])) if h is not None]
        endpoints = {h.endpoint for h, _ in listed}
        for h, have in listed:
            gone += self._take(h, have, endpoints)
        for hid in gone:
            self.picker.remove_holder(hid)
            self.holders.pop(hid, None)
        return gone

    def _parse(self, item: object) -> tuple[Holder, Bitfield | None] | None:
        try:
            h = Holder.from_wire(item)
            return h, None if h.have is None else Bitfield.decode(self.meta.num_pieces, h.have)
        except ProtocolError as exc:
            log.warning("ignoring malformed holder: %s", exc)
            return None

    def _take(self, h: Holder, have: Bitfield | None, listed: set[str]) -> list[str]:
        """Add or update one listed holder; the ids it replaces (its old endpoints, unless the
        same message lists them too: one key may run two sessions)."""
        if h.key == self.own_key:
            return []
        # One entry per key: a peer that restarted on another port is listed at its new
        # endpoint, and its old one (dead) must not stay behind, taking pieces that time out.
        moved = [
            hid
            for hid, known in self.holders.items()
            if known.key == h.key and hid != h.endpoint and hid not in listed
        ]
        for old in moved:
            self.picker.remove_holder(old)
            del self.holders[old]
        if h.endpoint not in self.holders and not self.room:
            return moved
        self.holders[h.endpoint] = h
        self._names[h.endpoint] = h.user
        if (h.key, self.meta.group, self.meta.name) in self.distrusted:
            self.picker.banned.add(h.endpoint)
        self.picker.update_holder(h.endpoint, have)
        return moved

    def distrust(self, hid: str, piece: int, code: str) -> None:
        """Never ask this holder for this file again in this process; report a bad piece."""
        h = self.holders.get(hid)
        if h is None:
            return
        self.distrusted.add((h.key, self.meta.group, self.meta.name))
        if code == Code.BAD_PIECE:
            self.reports.append(
                {"group": self.meta.group, "file": self.meta.name, "holder": h.key, "piece": piece}
            )

    def unavailable_message(self, missing: list[int], where: str) -> str:
        shown = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
        banned = sorted(self.user(h) for h in self.picker.banned)
        why = f"; dropped for bad data: {', '.join(banned)}" if banned else ""
        return (
            f"no online peer holds {len(missing)} of {self.meta.num_pieces} pieces ({shown}){why}; "
            f"partial file kept at {where}"
        )

    def unreachable_message(self, silent: float, where: str) -> str:
        """None of the listed holders delivered a piece for ``silent`` seconds: name them, and
        what went wrong with each, so the user can tell an unreachable address from a slow link."""
        listed = [
            f"{h.user} at {hid} ({self.errors.get(hid, 'no answer')})" for hid, h in self.holders.items()
        ]
        shown = "; ".join(listed[:4]) + (f"; and {len(listed) - 4} more" if len(listed) > 4 else "")
        return (
            f"no piece arrived for {silent:.0f}s from the {len(listed)} listed holder(s): {shown}. "
            f"Their advertised addresses may not be reachable from here; partial file kept at {where}"
        )
