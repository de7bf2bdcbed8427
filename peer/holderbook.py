"""The holders a download knows of, from the tracker's lists and pushes, kept beside the picker.

Pure bookkeeping (no sockets): a full holder list replaces what we knew; a pushed change adds,
updates or removes holders using the grant we already have (one grant serves every holder of
the file). Holders that sent this process bad data are banned on sight, and each bad piece is
queued as a report for the tracker.
"""

from __future__ import annotations

import logging
from typing import Any

from messages.bitfield import Bitfield
from messages.errors import Code, ProtocolError
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
        self.holders: dict[str, Holder] = {}  # by holder id: its endpoint
        self.reports: list[dict[str, object]] = []  # bad pieces the tracker should hear of
        self._names: dict[str, str] = {}  # holder id -> user, for every holder ever listed

    @property
    def grant(self) -> Grant | None:
        return next(iter(self.holders.values())).grant if self.holders else None

    def user(self, hid: str) -> str:
        return self._names.get(hid, hid)

    def apply(self, wire: list[Any]) -> list[str]:
        """A full list: the holders in it, and no others. The ids of holders that left."""
        seen = set()
        for item in wire:
            try:
                h = Holder.from_wire(item)
                have = None if h.have is None else Bitfield.decode(self.meta.num_pieces, h.have)
            except ProtocolError as exc:
                log.warning("ignoring malformed holder: %s", exc)
                continue
            if h.key == self.own_key:
                continue
            seen.add(h.endpoint)
            self.holders[h.endpoint] = h
            self._names[h.endpoint] = h.user
            if (h.key, self.meta.group, self.meta.name) in self.distrusted:
                self.picker.banned.add(h.endpoint)
            self.picker.update_holder(h.endpoint, have)
        gone = [hid for hid in self.picker.holders if hid not in seen]
        for hid in gone:
            self.picker.remove_holder(hid)
            self.holders.pop(hid, None)
        return gone

    def merge(self, body: dict[str, Any], grant: Grant) -> list[str]:
        """A pushed change: holders that appeared or changed, keys that left."""
        wire = [
            {**item, "grant": grant.to_wire()} for item in body.get("holders", []) if isinstance(item, dict)
        ]
        left = {str(k) for k in body.get("left", [])}
        fresh = {item.get("endpoint") for item in wire}
        kept = [h.to_wire() for hid, h in self.holders.items() if h.key not in left and hid not in fresh]
        return self.apply(kept + wire)

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
