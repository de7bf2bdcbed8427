"""Who is online and what each online peer serves, kept in the store's presence tables.

Presence is never durable: after a restart the tracker knows nobody is online until peers
heartbeat, see the new epoch and announce again, which is the only way to be sure an endpoint
is reachable. Being tables in the same transaction as the durable rules, a batch that fails to
commit undoes its presence changes too. Each online session also records the routing id of
the connection it heartbeats on, so the tracker can push to it (revocations, removed files).
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
    key: str  # the holder's CURVE public key
    endpoint: str
    plain: bool  # serves without encryption
    have: bytes | None  # raw bitfield of a partial holder; None: complete


@dataclass(frozen=True, slots=True)
class Online:
    session: bytes
    user: str
    key: str
    endpoint: str
    plain: bool


class Presence:
    def __init__(self, store: Store, expiry: float) -> None:
        self.db = store
        self.expiry = expiry

    def announce(self, who: Online, route: bytes, now: float) -> None:
        """(Re)register a session; what it served before is forgotten and re-added by the caller."""
        self.drop(who.session)
        self.db.run(
            "INSERT INTO online VALUES (?,?,?,?,?,?,?)",
            who.session,
            who.user,
            who.key,
            who.endpoint,
            int(who.plain),
            route,
            now,
        )

    def serve(self, session: bytes, key: FileKey, have: Bitfield | None) -> None:
        """Record what an online session serves (nothing happens for one that is offline)."""
        if not self.is_online(session):
            return
        self.db.run(
            """INSERT INTO serving (grp, name, session, have) VALUES (?,?,?,?)
               ON CONFLICT (grp, name, session) DO UPDATE SET have=excluded.have""",
            key[0],
            key[1],
            session,
            None if have is None else have.to_bytes(),
        )

    def touch(self, session: bytes, route: bytes, now: float) -> bool:
        return self.db.run("UPDATE online SET seen=?, route=? WHERE session=?", now, route, session) > 0

    def is_online(self, session: bytes) -> bool:
        return self.db.one("SELECT 1 FROM online WHERE session=?", session) is not None

    def drop(self, session: bytes) -> None:
        self.db.run("DELETE FROM serving WHERE session=?", session)
        self.db.run("DELETE FROM online WHERE session=?", session)

    def unserve(self, key: FileKey, user: str | None = None) -> None:
        """Stop listing ``user``'s sessions (or everybody) as serving ``key``."""
        if user is None:
            self.db.run("DELETE FROM serving WHERE grp=? AND name=?", *key)
            self.db.run("DELETE FROM reports WHERE grp=? AND name=?", *key)
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
        """Online holders of ``key``, except those two downloaders reported for bad data."""
        rows = self.db.all(
            """SELECT o.session, o.uname, o.key, o.endpoint, o.plain, s.have
               FROM serving s JOIN online o ON o.session = s.session
               WHERE s.grp=? AND s.name=? AND s.suspect=0 ORDER BY o.session""",
            *key,
        )
        return [
            HolderRow(bytes(r[0]), r[1], r[2], r[3], bool(r[4]), None if r[5] is None else bytes(r[5]))
            for r in rows
        ]

    def count(self, key: FileKey) -> int:
        row = self.db.one("SELECT count(*) FROM serving WHERE grp=? AND name=? AND suspect=0", *key)
        return int(row[0]) if row else 0

    def expire(self, now: float) -> int:
        """Drop sessions unseen for longer than ``expiry``; how many went."""
        cutoff = now - self.expiry
        self.db.run(
            "DELETE FROM serving WHERE session IN (SELECT session FROM online WHERE seen < ?)", cutoff
        )
        return self.db.run("DELETE FROM online WHERE seen < ?", cutoff)

    # --- whom to push to ------------------------------------------------------------------
    def routes_serving(self, group: str, name: str | None = None) -> list[bytes]:
        """Routes of online sessions serving anything in ``group`` (or only file ``name``)."""
        sql = """SELECT DISTINCT o.route FROM serving s JOIN online o ON o.session = s.session
                 WHERE s.grp=?"""
        rows = self.db.all(sql, group) if name is None else self.db.all(sql + " AND s.name=?", group, name)
        return [bytes(r[0]) for r in rows]

    def routes_of_members(self, group: str) -> list[bytes]:
        """Routes of every online session of a member of ``group``, serving or not: any of them
        may start serving the group's files (a download makes it a holder at once)."""
        rows = self.db.all(
            "SELECT DISTINCT o.route FROM online o JOIN members m ON m.uname = o.uname WHERE m.grp=?", group
        )
        return [bytes(r[0]) for r in rows]

    def routes_of_user(self, user: str) -> list[bytes]:
        return [bytes(r[0]) for r in self.db.all("SELECT route FROM online WHERE uname=?", user)]

    def route_of(self, key: str) -> bytes | None:
        row = self.db.one("SELECT route FROM online WHERE key=? LIMIT 1", key)
        return None if row is None else bytes(row[0])

    # --- reports of bad data --------------------------------------------------------------
    def report(self, key: FileKey, holder: str, reporter: str, piece: int, now: float) -> int:
        """Record that ``reporter`` got a bad ``piece`` from ``holder``; distinct reporters so far."""
        self.db.run(
            "INSERT INTO reports VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            *key,
            holder,
            reporter,
            piece,
            now,
        )
        row = self.db.one(
            "SELECT count(DISTINCT reporter) FROM reports WHERE grp=? AND name=? AND holder=?", *key, holder
        )
        return int(row[0]) if row else 0

    def reported_pieces(self, key: FileKey, holder: str) -> list[int]:
        rows = self.db.all(
            "SELECT DISTINCT piece FROM reports WHERE grp=? AND name=? AND holder=? ORDER BY piece",
            *key,
            holder,
        )
        return [int(r[0]) for r in rows]

    def suspect(self, key: FileKey, holder: str, flag: bool) -> None:
        """Stop (or start again) listing ``holder``'s sessions as holders of ``key``."""
        self.db.run(
            """UPDATE serving SET suspect=? WHERE grp=? AND name=?
               AND session IN (SELECT session FROM online WHERE key=?)""",
            int(flag),
            *key,
            holder,
        )
        if not flag:
            self.db.run("DELETE FROM reports WHERE grp=? AND name=? AND holder=?", *key, holder)
