"""Who is online and what each online peer serves, kept in the store's presence tables.

Presence is never durable: after a restart the tracker knows nobody is online until peers
heartbeat, see the new epoch and announce again, which is the only way to be sure an endpoint
is reachable. Being tables in the same transaction as the durable rules, a batch that fails to
commit undoes its presence changes too. With several trackers on one PostgreSQL database every
tracker sees every lease (on the database's clock); each online session also records which
tracker it talks to and the routing id of its connection there, so that tracker can push to it.

Every change of who serves what is noted in ``changes`` for the core to push to the downloads
that subscribed to the file (they subscribe by asking for its holders).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from messages.bitfield import Bitfield
from messages.records import Holder

from .store import Row, Store

FileKey = tuple[str, str]  # (group, file name)
Target = tuple[str, bytes]  # (tracker id, routing id of a connection on that tracker)
SUBSCRIPTION = 30.0  # seconds a holders request subscribes its connection to the file's changes
DEAD_TRACKER = 10.0  # seconds without processing its queue after which a tracker counts as gone
FORGET_TRACKER = 3600.0  # seconds after which a gone tracker's row is removed
# Sessions dropped per expiry pass (a tick): 10,000 peers that vanish at once (11,500 sessions
# serving 100,000 files: 0.4 s in one pass) go in short passes instead of one stall.
EXPIRE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class HolderRow:
    session: bytes
    user: str
    key: str  # the holder's CURVE public key
    endpoint: str
    plain: bool  # serves without encryption
    have: bytes | None  # raw bitfield of a partial holder; None: complete
    handed: int = 0  # how often the tracker listed it in a sample: the load it was sent

    def holder(self) -> Holder:
        """As downloaders see it."""
        have = None if self.have is None else Bitfield.text_of(self.have)
        return Holder(user=self.user, endpoint=self.endpoint, key=self.key, plain=self.plain, have=have)


@dataclass(frozen=True, slots=True)
class Online:
    session: bytes
    user: str
    key: str
    endpoint: str
    plain: bool


@dataclass(frozen=True, slots=True)
class Change:
    """A holder of ``file`` appeared or changed (``row``), or left (``left``: its key)."""

    file: FileKey
    row: HolderRow | None = None
    left: str = ""


@dataclass(slots=True)
class Presence:
    db: Store
    expiry: float
    tracker: str = ""  # this tracker's id: the sessions attached to it are the ones it can push to
    changes: list[Change] = field(default_factory=list)

    def announce(self, who: Online, route: bytes, now: float) -> None:
        """(Re)register a session; what it served before is forgotten and re-added by the caller."""
        self.drop(who.session)
        self.db.run(
            "INSERT INTO online VALUES (?,?,?,?,?,?,?,?)",
            who.session,
            who.user,
            who.key,
            who.endpoint,
            int(who.plain),
            self.tracker,
            route,
            now,
        )

    def serve(self, session: bytes, key: FileKey, have: Bitfield | None) -> None:
        """Record what an online session serves (nothing happens for one that is offline)."""
        self.serve_many(session, [(key, have)])

    def serve_many(self, session: bytes, items: list[tuple[FileKey, Bitfield | None]]) -> None:
        """``serve`` for many files at once (an announce): one statement, one lookup."""
        row = self.db.one("SELECT uname, key, endpoint, plain FROM online WHERE session=?", session)
        if row is None or not items:
            return
        raws = [(key, None if have is None else have.to_bytes()) for key, have in items]
        self.db.many(
            """INSERT INTO serving (grp, name, session, have, complete) VALUES (?,?,?,?,?)
               ON CONFLICT (grp, name, session)
               DO UPDATE SET have=excluded.have, complete=excluded.complete""",
            [(*key, session, raw, int(raw is None)) for key, raw in raws],
        )
        self.changes.extend(
            Change(key, HolderRow(session, row[0], row[1], row[2], bool(row[3]), raw)) for key, raw in raws
        )

    def touch(self, session: bytes, route: bytes, now: float) -> bool:
        """A heartbeat: renew the lease, and attach the session to this tracker and connection
        (after a failover its heartbeats come here)."""
        n = self.db.run(
            "UPDATE online SET seen=?, route=?, tracker=? WHERE session=?", now, route, self.tracker, session
        )
        return n > 0

    def is_online(self, session: bytes) -> bool:
        return self.db.one("SELECT 1 FROM online WHERE session=?", session) is not None

    def drop(self, session: bytes) -> None:
        self._left("o.session=?", session)
        self.db.run("DELETE FROM serving WHERE session=?", session)
        self.db.run("DELETE FROM online WHERE session=?", session)

    def _left(self, where: str, *params: object) -> None:
        """Note every (file, holder) the sessions matched by ``where`` stop serving."""
        sql = "SELECT s.grp, s.name, o.key FROM serving s JOIN online o ON o.session = s.session WHERE "
        rows = self.db.all(sql + where, *params)
        self.changes.extend(Change((r[0], r[1]), left=r[2]) for r in rows)

    def unserve(self, key: FileKey, user: str | None = None) -> None:
        """Stop listing ``user``'s sessions (or everybody) as serving ``key``."""
        if user is None:
            self._left("s.grp=? AND s.name=?", *key)
            self.db.run("DELETE FROM serving WHERE grp=? AND name=?", *key)
            self.db.run("DELETE FROM reports WHERE grp=? AND name=?", *key)
            return
        self._left("s.grp=? AND s.name=? AND o.uname=?", *key, user)
        self.db.run(
            """DELETE FROM serving WHERE grp=? AND name=?
               AND session IN (SELECT session FROM online WHERE uname=?)""",
            *key,
            user,
        )

    def unserve_session(self, session: bytes, key: FileKey) -> None:
        self._left("s.grp=? AND s.name=? AND s.session=?", *key, session)
        self.db.run("DELETE FROM serving WHERE grp=? AND name=? AND session=?", *key, session)

    def unserve_group(self, group: str, user: str) -> None:
        self._left("s.grp=? AND o.uname=?", group, user)
        self.db.run(
            "DELETE FROM serving WHERE grp=? AND session IN (SELECT session FROM online WHERE uname=?)",
            group,
            user,
        )

    _HOLDER = """SELECT o.session, o.uname, o.key, o.endpoint, o.plain, s.have, s.handed
                 FROM serving s JOIN online o ON o.session = s.session
                 WHERE s.grp=? AND s.name=? AND s.suspect=0"""

    def holders(self, key: FileKey) -> list[HolderRow]:
        """Every online holder of ``key``, except those two downloaders reported for bad data."""
        return [_row(r) for r in self.db.all(self._HOLDER + " ORDER BY o.session", *key)]

    def candidates(self, key: FileKey, caller: bytes, known: list[str], count: int) -> list[HolderRow]:
        """Up to ``count`` complete and ``count`` partial holders of ``key``, least handed-out
        first, leaving out the caller's session and the holders it knows: an index walk, however
        many holders the file has."""
        skip = f" AND o.key NOT IN ({','.join('?' * len(known))})" if known else ""
        sql = self._HOLDER + " AND s.complete=? AND s.session<>?" + skip + " ORDER BY s.handed LIMIT ?"
        rows = [
            _row(r) for complete in (1, 0) for r in self.db.all(sql, *key, complete, caller, *known, count)
        ]
        return sorted(rows, key=lambda r: r.handed)

    def known(self, key: FileKey, keys: list[str]) -> list[HolderRow]:
        """The holders among ``keys`` that still hold ``key`` (with what they hold now)."""
        if not keys:
            return []
        sql = self._HOLDER + f" AND o.key IN ({','.join('?' * len(keys))})"
        return [_row(r) for r in self.db.all(sql, *key, *keys)]

    def handed_out(self, key: FileKey, rows: list[HolderRow]) -> None:
        """Count that these holders were listed: the next samples prefer others.

        The counts only spread the load, so on PostgreSQL a row another tracker is counting
        right now is skipped, not waited for: two trackers handing out the same holders queued
        on each other's row locks until commit (reads through two trackers were 1.14x one's)."""
        if not rows:
            return
        if self.db.dialect != "postgresql":
            self.db.many(
                "UPDATE serving SET handed=handed+1 WHERE grp=? AND name=? AND session=?",
                [(*key, r.session) for r in rows],
            )
            return
        marks = ",".join("?" * len(rows))
        self.db.run(
            f"""UPDATE serving SET handed=handed+1 FROM (
                    SELECT ctid AS row FROM serving WHERE grp=? AND name=? AND session IN ({marks})
                    FOR UPDATE SKIP LOCKED) AS free
                WHERE serving.ctid = free.row""",
            *key,
            *[r.session for r in rows],
        )

    def count(self, key: FileKey) -> int:
        """Online holders of ``key`` that are listed (not under suspicion)."""
        row = self.db.one("SELECT count(*) FROM serving WHERE grp=? AND name=? AND suspect=0", *key)
        return int(row[0]) if row else 0

    def mark_drained(self, at: float) -> None:
        """This tracker had read every request sent to it before ``at``: the time its own
        sessions' leases are measured against, so a tracker that was busy (or paused) drops
        nobody for heartbeats it had not read yet."""
        self.db.run(
            "INSERT INTO trackers VALUES (?,?) ON CONFLICT (id) DO UPDATE SET drained=excluded.drained",
            self.tracker,
            at,
        )

    def expire(self, now: float, drained: float | None = None, limit: int = EXPIRE_BATCH) -> int:
        """Drop sessions whose lease ran out, ``limit`` at most; how many went. Our sessions:
        unseen for ``expiry`` before ``drained`` (default ``now``). Sessions of a tracker that
        has processed nothing for DEAD_TRACKER seconds (gone, and its peers with it or moved
        elsewhere): unseen for ``expiry`` before now. Other live trackers expire their own.
        A crowd that goes silent at once is dropped over several calls (ticks), each short."""
        drained = now if drained is None else drained
        live = [
            str(r[0]) for r in self.db.all("SELECT id FROM trackers WHERE drained > ?", now - DEAD_TRACKER)
        ]
        live = sorted({*live, self.tracker})
        mine = ("o.tracker=? AND o.seen < ?", (self.tracker, drained - self.expiry))
        orphans = (
            f"o.seen < ? AND o.tracker NOT IN ({','.join('?' * len(live))})",
            (now - self.expiry, *live),
        )
        gone = 0
        for where, params in (mine, orphans):
            sql = f"SELECT o.session FROM online o WHERE {where} LIMIT ?"
            sessions = [bytes(r[0]) for r in self.db.all(sql, *params, limit - gone)] if gone < limit else []
            for i in range(0, len(sessions), 500):  # a statement's parameters stay few
                part = sessions[i : i + 500]
                marks = ",".join("?" * len(part))
                self._left(f"o.session IN ({marks})", *part)
                self.db.run(f"DELETE FROM serving WHERE session IN ({marks})", *part)
                gone += self.db.run(f"DELETE FROM online WHERE session IN ({marks})", *part)
        self.db.run("DELETE FROM subscriptions WHERE until < ?", now)
        self.db.run("DELETE FROM trackers WHERE drained < ?", now - FORGET_TRACKER)
        return gone

    # --- whom to push to ------------------------------------------------------------------
    def subscribe(self, key: FileKey, route: bytes, now: float) -> None:
        """Changes of ``key``'s holders go to this connection for a while."""
        self.db.run(
            """INSERT INTO subscriptions VALUES (?,?,?,?,?)
               ON CONFLICT (grp, name, tracker, route) DO UPDATE SET until=excluded.until""",
            *key,
            self.tracker,
            route,
            now + SUBSCRIPTION,
        )

    def subscribers(self, keys: list[FileKey]) -> dict[FileKey, list[Target]]:
        """The downloads following each of these files (one query per group, not per file)."""
        wanted = set(keys)
        out: dict[FileKey, list[Target]] = {}
        for group in {g for g, _ in keys}:
            for r in self.db.all("SELECT name, tracker, route FROM subscriptions WHERE grp=?", group):
                if (group, r[0]) in wanted:
                    out.setdefault((group, r[0]), []).append((str(r[1]), bytes(r[2])))
        return out

    def targets(self, selector: dict[str, str]) -> list[Target]:
        """The connections (tracker, route) a selector names, on every tracker:
        ``{"group": g}`` peers serving anything in g, ``{"group": g, "file": f}`` peers serving f,
        ``{"members": g}`` every online member of g, serving or not (any of them may start
        serving: a download makes it a holder at once), ``{"user": u}`` u's sessions,
        ``{"key": k}`` the peer with that key, ``{"subscribed": g, "file": f}`` downloads of f."""
        if "key" in selector:
            sql, params = "SELECT tracker, route FROM online WHERE key=?", [selector["key"]]
        elif "user" in selector:
            sql, params = "SELECT tracker, route FROM online WHERE uname=?", [selector["user"]]
        elif "members" in selector:
            sql = """SELECT DISTINCT o.tracker, o.route FROM online o JOIN members m ON m.uname = o.uname
                     WHERE m.grp=?"""
            params = [selector["members"]]
        elif "subscribed" in selector:
            sql = "SELECT tracker, route FROM subscriptions WHERE grp=? AND name=?"
            params = [selector["subscribed"], selector["file"]]
        else:
            sql = """SELECT DISTINCT o.tracker, o.route FROM serving s JOIN online o ON o.session = s.session
                     WHERE s.grp=? AND (? = '' OR s.name=?)"""
            params = [selector["group"], selector.get("file", ""), selector.get("file", "")]
        return [(str(r[0]), bytes(r[1])) for r in self.db.all(sql, *params)]

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
        if flag:
            self.changes.append(Change(key, left=holder))
        self.db.run(
            """UPDATE serving SET suspect=? WHERE grp=? AND name=?
               AND session IN (SELECT session FROM online WHERE key=?)""",
            int(flag),
            *key,
            holder,
        )
        if not flag:
            self.db.run("DELETE FROM reports WHERE grp=? AND name=? AND holder=?", *key, holder)


def _row(r: Row) -> HolderRow:
    have = None if r[5] is None else bytes(r[5])
    return HolderRow(bytes(r[0]), r[1], r[2], r[3], bool(r[4]), have, int(r[6]))
