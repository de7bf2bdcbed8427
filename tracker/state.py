"""The tracker's durable rules: users, sessions, groups, membership, requests, shared files.

Every method checks its preconditions and raises a RemoteError with a stable code, or changes
the database; none of them commits (the server commits a whole batch before replying) and none
touches a socket, so the rules are unit-tested against a real SQLite file alone.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass

from messages.errors import Code, RemoteError
from messages.protocol import DIGEST_SIZE, MAX_PIECES
from messages.records import FileMeta, GroupEntry, LeaveResult

from .passwords import hash_password, verify_password


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class StoredFile:
    meta: FileMeta
    hashes: bytes


class State:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.db = conn
        self._sessions: dict[bytes, str] = {}  # token hash -> user, a cache of the table

    # --- accounts -------------------------------------------------------------------------
    def create_user(self, user: str, password: str) -> None:
        if self._one("SELECT 1 FROM users WHERE name=?", user):
            raise RemoteError(Code.USER_EXISTS, f"user {user!r} already exists")
        salt, digest = hash_password(password)
        self.db.execute("INSERT INTO users VALUES (?,?,?,?)", (user, salt, digest, time.time()))

    def login(self, user: str, password: str) -> str:
        row = self._one("SELECT salt, hash FROM users WHERE name=?", user)
        if row is None:
            raise RemoteError(Code.NO_SUCH_USER, f"no user {user!r}; create it with create_user")
        if not verify_password(password, row[0], row[1]):
            raise RemoteError(Code.WRONG_PASSWORD, "wrong password")
        token = secrets.token_urlsafe(32)
        th = token_hash(token)
        self.db.execute("INSERT INTO sessions VALUES (?,?,?)", (th, user, time.time()))
        self._sessions[th] = user
        return token

    def logout(self, th: bytes) -> None:
        self.db.execute("DELETE FROM sessions WHERE token_hash=?", (th,))
        self._sessions.pop(th, None)

    def session_user(self, token: str | None) -> tuple[bytes, str]:
        """The (token hash, user) of a live session, or UNAUTHORIZED."""
        if not token:
            raise RemoteError(Code.UNAUTHORIZED, "not logged in")
        th = token_hash(token)
        user = self._sessions.get(th)
        if user is None:
            row = self._one("SELECT user FROM sessions WHERE token_hash=?", th)
            if row is None:
                raise RemoteError(Code.UNAUTHORIZED, "session unknown or ended; log in again")
            user = self._sessions[th] = row[0]
        return th, user

    def forget_cached_sessions(self) -> None:
        """After a rollback the cache may hold sessions that were never committed."""
        self._sessions.clear()

    # --- groups ---------------------------------------------------------------------------
    def create_group(self, user: str, group: str) -> None:
        if self._one("SELECT 1 FROM groups WHERE name=?", group):
            raise RemoteError(Code.GROUP_EXISTS, f"group {group!r} already exists")
        self.db.execute("INSERT INTO groups VALUES (?,?,?)", (group, user, time.time()))
        self.db.execute("INSERT INTO members VALUES (?,?,1)", (group, user))

    def join_group(self, user: str, group: str) -> None:
        self._group(group)
        if self.is_member(group, user):
            raise RemoteError(Code.ALREADY_MEMBER, f"already a member of {group!r}")
        if self._one("SELECT 1 FROM requests WHERE grp=? AND user=?", group, user):
            raise RemoteError(Code.ALREADY_REQUESTED, f"a request to join {group!r} is already pending")
        self.db.execute("INSERT INTO requests VALUES (?,?,?)", (group, user, time.time()))

    def list_requests(self, user: str, group: str) -> list[str]:
        self.require_admin(group, user)
        rows = self.db.execute("SELECT user FROM requests WHERE grp=? ORDER BY created, user", (group,))
        return [r[0] for r in rows]

    def accept_request(self, admin: str, group: str, user: str) -> None:
        self.require_admin(group, admin)
        self._take_request(group, user)
        seq = self._one("SELECT coalesce(max(seq), 0) + 1 FROM members WHERE grp=?", group)[0]
        self.db.execute("INSERT INTO members VALUES (?,?,?)", (group, user, seq))

    def reject_request(self, admin: str, group: str, user: str) -> None:
        self.require_admin(group, admin)
        self._take_request(group, user)

    def leave_group(self, user: str, group: str) -> LeaveResult:
        """Leave (or withdraw a pending request). Admin hand-over and last-member deletion."""
        admin = self._group(group)
        if not self.is_member(group, user):
            if self._one("SELECT 1 FROM requests WHERE grp=? AND user=?", group, user):
                self.db.execute("DELETE FROM requests WHERE grp=? AND user=?", (group, user))
                return LeaveResult(group_deleted=False, new_admin=None, files_removed=[])
            raise RemoteError(Code.NOT_MEMBER, f"not a member of {group!r}")
        removed = [
            name
            for (name,) in self.db.execute(
                "SELECT name FROM shares WHERE grp=? AND user=?", (group, user)
            ).fetchall()
            if self._drop_share(group, name, user)
        ]
        self.db.execute("DELETE FROM members WHERE grp=? AND user=?", (group, user))
        if admin != user:
            return LeaveResult(group_deleted=False, new_admin=None, files_removed=removed)
        nxt = self._one("SELECT user FROM members WHERE grp=? ORDER BY seq LIMIT 1", group)
        if nxt is None:
            self.db.execute("DELETE FROM groups WHERE name=?", (group,))
            return LeaveResult(group_deleted=True, new_admin=None, files_removed=removed)
        self.db.execute("UPDATE groups SET admin=? WHERE name=?", (nxt[0], group))
        return LeaveResult(group_deleted=False, new_admin=nxt[0], files_removed=removed)

    def list_groups(self, user: str) -> list[GroupEntry]:
        rows = self.db.execute(
            """SELECT g.name, g.admin, (SELECT count(*) FROM members m WHERE m.grp=g.name),
                      EXISTS(SELECT 1 FROM members m WHERE m.grp=g.name AND m.user=?),
                      EXISTS(SELECT 1 FROM requests r WHERE r.grp=g.name AND r.user=?)
               FROM groups g ORDER BY g.name""",
            (user, user),
        )
        out = []
        for name, admin, count, member, pending in rows:
            role = "admin" if admin == user else "member" if member else "pending" if pending else ""
            out.append(GroupEntry(name=name, admin=admin, members=count, role=role))
        return out

    def is_member(self, group: str, user: str) -> bool:
        return self._one("SELECT 1 FROM members WHERE grp=? AND user=?", group, user) is not None

    def require_member(self, group: str, user: str) -> None:
        self._group(group)
        if not self.is_member(group, user):
            raise RemoteError(Code.NOT_MEMBER, f"not a member of {group!r}")

    def require_admin(self, group: str, user: str) -> None:
        if self._group(group) != user:
            raise RemoteError(Code.NOT_ADMIN, f"only the admin of {group!r} can do that")

    # --- files ----------------------------------------------------------------------------
    def share_file(self, user: str, meta: FileMeta, hashes: bytes) -> bool:
        """Record that ``user`` shares this file; True when the file is new to the group."""
        self.require_member(meta.group, user)
        if meta.num_pieces > MAX_PIECES:
            raise RemoteError(Code.BAD_ARGS, f"more than {MAX_PIECES} pieces; use a larger piece size")
        if len(hashes) != meta.num_pieces * DIGEST_SIZE:
            raise RemoteError(Code.BAD_ARGS, f"expected {meta.num_pieces} piece digests")
        if hashlib.sha256(hashes).hexdigest() != meta.root:
            raise RemoteError(Code.BAD_ARGS, "root hash does not match the piece digests")
        existing = self.file(meta.group, meta.name)
        if existing is not None:
            same = existing.meta == meta and existing.hashes == hashes
            if not same:
                raise RemoteError(
                    Code.FILE_CONFLICT,
                    f"{meta.name!r} in {meta.group!r} is already shared with other content",
                )
        else:
            self.db.execute(
                "INSERT INTO files VALUES (?,?,?,?,?,?,?)",
                (meta.group, meta.name, meta.size, meta.piece_size, meta.root, hashes, time.time()),
            )
        self.db.execute("INSERT OR IGNORE INTO shares VALUES (?,?,?)", (meta.group, meta.name, user))
        return existing is None

    def stop_share(self, user: str, group: str, name: str) -> bool:
        """Stop sharing; True when that was the last sharer and the file left the group."""
        self.require_member(group, user)
        if not self._one("SELECT 1 FROM shares WHERE grp=? AND name=? AND user=?", group, name, user):
            raise RemoteError(Code.NOT_SHARING, f"you do not share {name!r} in {group!r}")
        return self._drop_share(group, name, user)

    def file(self, group: str, name: str) -> StoredFile | None:
        row = self._one(
            "SELECT size, piece_size, root, hashes FROM files WHERE grp=? AND name=?", group, name
        )
        if row is None:
            return None
        meta = FileMeta(group=group, name=name, size=row[0], piece_size=row[1], root=row[2])
        return StoredFile(meta=meta, hashes=bytes(row[3]))

    def require_file(self, user: str, group: str, name: str) -> StoredFile:
        self.require_member(group, user)
        stored = self.file(group, name)
        if stored is None:
            raise RemoteError(Code.NO_SUCH_FILE, f"no file {name!r} in {group!r}")
        return stored

    def files(self, group: str) -> list[tuple[str, int, int]]:
        """(name, size, sharers) of every file in a group."""
        return self.db.execute(
            """SELECT f.name, f.size, (SELECT count(*) FROM shares s WHERE s.grp=f.grp AND s.name=f.name)
               FROM files f WHERE f.grp=? ORDER BY f.name""",
            (group,),
        ).fetchall()

    def shares_of(self, user: str) -> set[tuple[str, str]]:
        return set(self.db.execute("SELECT grp, name FROM shares WHERE user=?", (user,)).fetchall())

    # --- helpers --------------------------------------------------------------------------
    def _drop_share(self, group: str, name: str, user: str) -> bool:
        self.db.execute("DELETE FROM shares WHERE grp=? AND name=? AND user=?", (group, name, user))
        if self._one("SELECT 1 FROM shares WHERE grp=? AND name=?", group, name):
            return False
        self.db.execute("DELETE FROM files WHERE grp=? AND name=?", (group, name))
        return True

    def _take_request(self, group: str, user: str) -> None:
        cur = self.db.execute("DELETE FROM requests WHERE grp=? AND user=?", (group, user))
        if cur.rowcount == 0:
            raise RemoteError(Code.NO_SUCH_REQUEST, f"no pending request from {user!r} to join {group!r}")

    def _group(self, group: str) -> str:
        """The group's admin, or NO_SUCH_GROUP."""
        row = self._one("SELECT admin FROM groups WHERE name=?", group)
        if row is None:
            raise RemoteError(Code.NO_SUCH_GROUP, f"no group {group!r}")
        return row[0]

    def _one(self, sql: str, *params: object) -> tuple | None:
        return self.db.execute(sql, params).fetchone()
