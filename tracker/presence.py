"""Who is online and what each online peer serves, kept in the store's presence tables.

Presence is never durable: after a restart the tracker knows nobody is online until peers
heartbeat, see the new epoch and announce again, which is the only way to be sure an endpoint
is reachable. Being tables in the same transaction as the durable rules, a batch that fails to
commit undoes its presence changes too.
"""

from __future__ import annotations

from dataclasses import dataclass

from messages.bitfield import Bitfield

from .store import Store

FileKey = tuple[str, str]  # (group, file name)


@dataclass(frozen=True, slots=True)
class HolderRow:
    session: bytes
    user: str
    endpoint: str
    seed_key: bytes
    have: bytes | None  # raw bitfield of a partial holder; None: complete


class Presence:
    def __init__(self, store: Store, expiry: float) -> None:
        self.db = store
        self.expiry = expiry

    def announce(self, session: bytes, user: str, endpoint: str, seed_key: bytes, now: float) -> None:
        """(Re)register a session; what it served before is forgotten and re-added by the caller."""
        self.drop(session)
        self.db.run("INSERT INTO online VALUES (?,?,?,?,?)", session, user, endpoint, seed_key, now)

    def serve(self, session: bytes, key: FileKey, have: Bitfield | None) -> None:
        """Record what an online session serves (nothing happens for one that is offline)."""
        self.db.run(
            """INSERT INTO serving SELECT ?,?,?,? WHERE EXISTS (SELECT 1 FROM online WHERE session=?)
               ON CONFLICT (grp, name, session) DO UPDATE SET have=excluded.have""",
            key[0],
            key[1],
            session,
            None if have is None else have.to_bytes(),
            session,
        )

    def touch(self, session: bytes, now: float) -> bool:
        return self.db.run("UPDATE online SET seen=? WHERE session=?", now, session) > 0

    def is_online(self, session: bytes) -> bool:
        return self.db.one("SELECT 1 FROM online WHERE session=?", session) is not None

    def drop(self, session: bytes) -> None:
        self.db.run("DELETE FROM serving WHERE session=?", session)
        self.db.run("DELETE FROM online WHERE session=?", session)

    def unserve(self, key: FileKey, user: str | None = None) -> None:
        """Stop listing ``user``'s sessions (or everybody) as serving ``key``."""
        if user is None:
            self.db.run("DELETE FROM serving WHERE grp=? AND name=?", *key)
            return
        self.db.run(
            """DELETE FROM serving WHERE grp=? AND name=?
               AND session IN (SELECT session FROM online WHERE uname=?)""",
            *key,
            user,
        )

    def unserve_session(self, session: bytes, key: FileKey) -> None:
        self.db.run("DELETE FROM serving WHERE grp=? AND name=? AND session=?", *key, session)

    def unserve_group(self, group: str, user: str) -> None:
        self.db.run(
            "DELETE FROM serving WHERE grp=? AND session IN (SELECT session FROM online WHERE uname=?)",
            group,
            user,
        )

    def holders(self, key: FileKey) -> list[HolderRow]:
        rows = self.db.all(
            """SELECT o.session, o.uname, o.endpoint, o.seed_key, s.have
               FROM serving s JOIN online o ON o.session = s.session
               WHERE s.grp=? AND s.name=? ORDER BY o.session""",
            *key,
        )
        return [
            HolderRow(bytes(r[0]), r[1], r[2], bytes(r[3]), None if r[4] is None else bytes(r[4]))
            for r in rows
        ]

    def count(self, key: FileKey) -> int:
        row = self.db.one("SELECT count(*) FROM serving WHERE grp=? AND name=?", *key)
        return int(row[0]) if row else 0

    def expire(self, now: float) -> int:
        """Drop sessions unseen for longer than ``expiry``; how many went."""
        cutoff = now - self.expiry
        self.db.run(
            "DELETE FROM serving WHERE session IN (SELECT session FROM online WHERE seen < ?)", cutoff
        )
        return self.db.run("DELETE FROM online WHERE seen < ?", cutoff)
