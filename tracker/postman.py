"""Pushes: from a batch's notices to frames for this tracker's connections and notifications
for the other trackers' (PostgreSQL NOTIFY, delivered only if the batch commits).

A notice names its connections as (tracker, routing id) pairs, resolved while the batch runs.
Ours become frames to send after the commit; the others' travel in notifications, a few hundred
routes each, which every other tracker's listener turns into frames for its own connections.
Holder changes a batch made (presence.changes) become one ``holders`` push per file to the
downloads subscribed to it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import orjson

from broker.service import Outbound
from messages import protocol as P
from messages.control import Push
from messages.sizes import chunks

from .presence import Change, FileKey, Presence, Target
from .store import Store

log = logging.getLogger(__name__)
NOTIFY_BYTES = 7000  # PostgreSQL refuses a payload of 8000 bytes or more
Notice = tuple[list[Target], Push]


class Postman:
    def __init__(self, store: Store, presence: Presence, tracker: str) -> None:
        self.store = store
        self.presence = presence
        self.tracker = tracker

    def holder_news(self, changes: list[Change]) -> list[Notice]:
        """One push per changed file, for the downloads subscribed to it."""
        by_file: dict[FileKey, list[Change]] = defaultdict(list)
        for change in changes:
            by_file[change.file].append(change)
        notices: list[Notice] = []
        following = self.presence.subscribers(list(by_file))
        for (group, name), items in by_file.items():
            targets = following.get((group, name))
            if targets:
                notices.extend((targets, Push(P.PUSH_HOLDERS, body)) for body in _news(group, name, items))
        return notices

    def deliver(self, notices: list[Notice]) -> list[Outbound]:
        """Frames for our connections; notifications (sent on commit) for the other trackers'."""
        out: list[Outbound] = []
        for targets, push in notices:
            frames = push.encode()
            elsewhere: dict[str, list[bytes]] = defaultdict(list)
            for tracker, route in targets:
                if tracker == self.tracker:
                    out.append((route, frames))
                else:
                    elsewhere[tracker].append(route)
            for tracker, routes in elsewhere.items():
                self._notify(tracker, routes, push)
        return out

    def _notify(self, tracker: str, routes: list[bytes], push: Push) -> None:
        body: dict[str, Any] = {"kind": push.kind, "body": push.body}
        if len(orjson.dumps(body)) > NOTIFY_BYTES // 2:  # too big to carry: a hint to ask again
            body = {"kind": push.kind, "body": {k: push.body[k] for k in ("group", "file") if k in push.body}}
            body["body"]["refresh"] = True
        for i in range(0, len(routes), 200):
            payload = {"to": tracker, "routes": [r.hex() for r in routes[i : i + 200]], "push": body}
            self.store.notify(orjson.dumps(payload).decode())

    def received(self, payloads: list[str]) -> list[Outbound]:
        """Frames for our connections that other trackers' notifications name."""
        out: list[Outbound] = []
        for payload in payloads:
            try:
                note = orjson.loads(payload)
                if note.get("to") != self.tracker:
                    continue
                frames = Push(str(note["push"]["kind"]), dict(note["push"]["body"])).encode()
                out.extend((bytes.fromhex(r), frames) for r in note["routes"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("ignoring a malformed notification: %s", exc)
        return out


def _news(group: str, name: str, changes: list[Change]) -> list[dict[str, Any]]:
    """The bodies of holders pushes: the holders that appeared or changed and the keys that
    left, in as many pushes as it takes to keep each under PAGE_BYTES."""
    holders: dict[str, dict[str, Any]] = {}
    left: set[str] = set()
    for c in changes:
        if c.row is not None:
            holders[c.row.key] = c.row.holder().to_wire()
            left.discard(c.row.key)
        else:
            left.add(c.left)
            holders.pop(c.left, None)
    items: list[tuple[str, Any]] = [("holders", h) for h in holders.values()]
    items += [("left", k) for k in sorted(left)]
    bodies = []
    for run in list(chunks(items, P.PAGE_BYTES)) or [[]]:
        body: dict[str, Any] = {"group": group, "file": name, "holders": [], "left": []}
        for field, item in run:
            body[field].append(item)
        bodies.append(body)
    return bodies
