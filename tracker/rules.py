"""The tracker's durable rules: users, sessions, groups, membership, requests, shared files.

Every method checks its preconditions and raises ``Refused`` with a stable code, or changes
the database through the ``Store``; none of them commits (the core commits a whole batch before
replying) and none touches a socket, so the rules are unit-tested against a real database alone.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from messages.errors import Code, Refused
from messages.protocol import MAX_PIECES
from messages.records import FileMeta, GroupEntry, LeaveResult

from .passwords import hash_password, verify_password
from .store import Store

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()
THROTTLE_FAILURES = 5  # wrong passwords for one user ...
THROTTLE_WINDOW = 60.0  # ... within this many seconds ...
ALL = 1 << 62  # "no limit" for a listing, in a form both stores take for LIMIT
THROTTLE_LOCK = 30.0  # ... lock that user's logins for this long after the last one


Servable = tuple[FileMeta, bool] | Refused  # a file and whether the user shares it, or a refusal


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: bytes
    user: str
    key: str  # the CURVE key the session was opened from: its requests must come from it


class Rules:
    def __init__(self, store: Store) -> None:
        self.db = store

    # --- accounts -------------------------------------------------------------------------
    def create_user(self, user: str, password: str) -> None:
        self.require_new_user(user)
        self.add_user(user, *hash_password(password))

    def require_new_user(self, user: str) -> None:
        if self.db.one("SELECT 1 FROM users WHERE name=?", user):
            raise Refused(Code.USER_EXISTS, f"user {user!r} already exists")

    def add_user(self, user: str, salt: bytes, digest: bytes) -> None:
        """Store a user whose password hash was computed elsewhere (off the request loop)."""
        self.require_new_user(user)
        self.db.run("INSERT INTO users VALUES (?,?,?,?)", user, salt, digest, time.time())

    def password_record(self, user: str, now: float) -> tuple[bytes, bytes]:
        """(salt, hash) to check a login against; NO_SUCH_USER, or THROTTLED after too many
        wrong passwords. A wrong password is not recorded here: see ``record_failure``."""
        row = self.db.one("SELECT salt, hash FROM users WHERE name=?", user)
        if row is None:
            raise Refused(Code.NO_SUCH_USER, f"no user {user!r}; create it with create_user")
        self.check_throttle(user, now)
        return bytes(row[0]), bytes(row[1])

    def password_ok(self, user: str, password: str, now: float) -> bool:
        """Check a password in place (constant-time comparison); see ``password_record``."""
        salt, expected = self.password_record(user, now)
        return verify_password(password, salt, expected)

    def check_throttle(self, user: str, now: float) -> None:
        rows = self.db.all(
            "SELECT at FROM login_failures WHERE uname=? AND at > ? ORDER BY at DESC",
            user,
            now - THROTTLE_WINDOW,
        )
        if len(rows) >= THROTTLE_FAILURES and now - rows[0][0] < THROTTLE_LOCK:
            wait = THROTTLE_LOCK - (now - rows[0][0])
            raise Refused(
                Code.THROTTLED, f"too many wrong passwords for {user!r}; logins refused for {wait:.0f} s more"
            )

    def record_failure(self, user: str, now: float) -> None:
        self.db.run("DELETE FROM login_failures WHERE uname=? AND at <= ?", user, now - THROTTLE_WINDOW)
        self.db.run("INSERT INTO login_failures VALUES (?,?)", user, now)

    def open_session(self, user: str, key: str) -> str:
        """A new session for ``user``, bound to the CURVE key it logged in from; its token."""
        token = secrets.token_urlsafe(32)
        self.db.run("INSERT INTO sessions VALUES (?,?,?,?)", token_hash(token), user, key, time.time())
        return token

    def login(self, user: str, password: str, key: str = "", now: float | None = None) -> str:
        """Check the password and open a session (WRONG_PASSWORD is recorded for throttling)."""
        now = time.time() if now is None else now
        if not self.password_ok(user, password, now):
            self.record_failure(user, now)
            raise Refused(Code.WRONG_PASSWORD, "wrong password")
        return self.open_session(user, key)

    def logout(self, session: Session) -> None:
        self.db.run("DELETE FROM sessions WHERE token_hash=?", session.token_hash)

    def session(self, token: str | None, key: str = "") -> Session:
        """The live session of ``token``, used from the key it was opened with; or UNAUTHORIZED."""
        if not token:
            raise Refused(Code.UNAUTHORIZED, "not logged in")
        th = token_hash(token)
        row = self.db.one("SELECT uname, key FROM sessions WHERE token_hash=?", th)
        if row is None:
            raise Refused(Code.UNAUTHORIZED, "session unknown or ended; log in again")
        if row[1] != key:
            raise Refused(Code.UNAUTHORIZED, "this session belongs to another peer's key; log in again")
        return Session(th, row[0], row[1])

    # --- groups ---------------------------------------------------------------------------
    def create_group(self, user: str, group: str) -> None:
        if self.db.one("SELECT 1 FROM groups WHERE name=?", group):
            raise Refused(Code.GROUP_EXISTS, f"group {group!r} already exists")
        self.db.run("INSERT INTO groups VALUES (?,?,?)", group, user, time.time())
        self.db.run("INSERT INTO members VALUES (?,?,1)", group, user)

    def join_group(self, user: str, group: str) -> None:
        self._admin_of(group)
        if self.is_member(group, user):
            raise Refused(Code.ALREADY_MEMBER, f"already a member of {group!r}")
        if self.db.one("SELECT 1 FROM requests WHERE grp=? AND uname=?", group, user):
            raise Refused(Code.ALREADY_REQUESTED, f"a request to join {group!r} is already pending")
        self.db.run("INSERT INTO requests VALUES (?,?,?)", group, user, time.time())

    def list_requests(self, user: str, group: str, after: str = "", limit: int = ALL) -> list[str]:
        """Pending requests by user name, after ``after`` (a page: at most ``limit``)."""
        self.require_admin(group, user)
        rows = self.db.all(
            "SELECT uname FROM requests WHERE grp=? AND uname > ? ORDER BY uname LIMIT ?", group, after, limit
        )
        return [r[0] for r in rows]

    def accept_request(self, admin: str, group: str, user: str) -> None:
        self.require_admin(group, admin)
        self._take_request(group, user)
        row = self.db.one("SELECT seq FROM members WHERE grp=? ORDER BY seq DESC LIMIT 1", group)
        self.db.run("INSERT INTO members VALUES (?,?,?)", group, user, (row[0] if row else 0) + 1)

    def reject_request(self, admin: str, group: str, user: str) -> None:
        self.require_admin(group, admin)
        self._take_request(group, user)

    def remove_member(self, admin: str, group: str, user: str) -> LeaveResult:
        """The admin removes a member (whose shares there go with them)."""
        self.require_admin(group, admin)
        if user == admin:
            raise Refused(Code.BAD_ARGS, "an admin leaves with leave_group; the group passes on")
        if not self.is_member(group, user):
            raise Refused(Code.NOT_MEMBER, f"{user!r} is not a member of {group!r}")
        return self.leave_group(user, group)

    def remove_file(self, admin: str, group: str, name: str) -> None:
        """The admin removes a file from the group, for everyone."""
        self.require_admin(group, admin)
        if self.file(group, name) is None:
            raise Refused(Code.NO_SUCH_FILE, f"no file {name!r} in {group!r}")
        self.db.run("DELETE FROM shares WHERE grp=? AND name=?", group, name)
        self.db.run("DELETE FROM files WHERE grp=? AND name=?", group, name)

    def groups_of(self, user: str) -> list[str]:
        return [r[0] for r in self.db.all("SELECT grp FROM members WHERE uname=?", user)]

    def leave_group(self, user: str, group: str) -> LeaveResult:
        """Leave (or withdraw a pending request). Admin hand-over and last-member deletion."""
        admin = self._admin_of(group)
        if not self.is_member(group, user):
            if self.db.run("DELETE FROM requests WHERE grp=? AND uname=?", group, user):
                return LeaveResult(group_deleted=False, new_admin=None, files_removed=[])
            raise Refused(Code.NOT_MEMBER, f"not a member of {group!r}")
        shared = self.db.all("SELECT name FROM shares WHERE grp=? AND uname=?", group, user)
        removed = [name for (name,) in shared if self._drop_share(group, name, user)]
        self.db.run("DELETE FROM members WHERE grp=? AND uname=?", group, user)
        if admin != user:
            return LeaveResult(group_deleted=False, new_admin=None, files_removed=removed)
        nxt = self.db.one("SELECT uname FROM members WHERE grp=? ORDER BY seq LIMIT 1", group)
        if nxt is None:
            self.db.run("DELETE FROM groups WHERE name=?", group)
            return LeaveResult(group_deleted=True, new_admin=None, files_removed=removed)
        self.db.run("UPDATE groups SET admin=? WHERE name=?", nxt[0], group)
        return LeaveResult(group_deleted=False, new_admin=nxt[0], files_removed=removed)

    def list_groups(self, user: str, after: str = "", limit: int = ALL) -> list[GroupEntry]:
        """Groups by name, after ``after`` (a page: at most ``limit``), with the caller's role."""
        rows = self.db.all(
            """SELECT g.name, g.admin, (SELECT count(*) FROM members m WHERE m.grp=g.name),
                      EXISTS(SELECT 1 FROM members m WHERE m.grp=g.name AND m.uname=?),
                      EXISTS(SELECT 1 FROM requests r WHERE r.grp=g.name AND r.uname=?)
               FROM groups g WHERE g.name > ? ORDER BY g.name LIMIT ?""",
            user,
            user,
            after,
            limit,
        )
        out = []
        for name, admin, count, member, pending in rows:
            role = "admin" if admin == user else "member" if member else "pending" if pending else ""
            out.append(GroupEntry(name=name, admin=admin, members=count, role=role))
        return out

    def is_member(self, group: str, user: str) -> bool:
        return self.db.one("SELECT 1 FROM members WHERE grp=? AND uname=?", group, user) is not None

    def require_member(self, group: str, user: str) -> None:
        self._admin_of(group)
        if not self.is_member(group, user):
            raise Refused(Code.NOT_MEMBER, f"not a member of {group!r}")

    def require_admin(self, group: str, user: str) -> None:
        if self._admin_of(group) != user:
            raise Refused(Code.NOT_ADMIN, f"only the admin of {group!r} can do that")

    # --- files ----------------------------------------------------------------------------
    def share_file(self, user: str, meta: FileMeta) -> bool:
        """Record that ``user`` shares this file; True when the file is new to the group.

        The tracker keeps the file's root hash, not its piece digests: downloaders fetch the
        digests from holders and check them against this root, so a share costs the tracker a
        row whatever the file's size.
        """
        self.require_member(meta.group, user)
        if meta.num_pieces > MAX_PIECES:
            raise Refused(Code.BAD_ARGS, f"more than {MAX_PIECES} pieces; use a larger piece size")
        if meta.size == 0 and meta.root != EMPTY_ROOT:
            raise Refused(
                Code.BAD_ARGS, "an empty file has no piece digests: its root is the hash of nothing"
            )
        existing = self.file(meta.group, meta.name)
        if existing is not None and existing != meta:
            raise Refused(
                Code.FILE_CONFLICT, f"{meta.name!r} in {meta.group!r} is already shared with other content"
            )
        if existing is None:
            self.db.run(
                "INSERT INTO files VALUES (?,?,?,?,?,?)",
                meta.group,
                meta.name,
                meta.size,
                meta.piece_size,
                meta.root,
                time.time(),
            )
        self.db.run("INSERT INTO shares VALUES (?,?,?) ON CONFLICT DO NOTHING", meta.group, meta.name, user)
        return existing is None

    def stop_share(self, user: str, group: str, name: str) -> bool:
        """Stop sharing; True when that was the last sharer and the file left the group."""
        self.require_member(group, user)
        if not self.db.one("SELECT 1 FROM shares WHERE grp=? AND name=? AND uname=?", group, name, user):
            raise Refused(Code.NOT_SHARING, f"you do not share {name!r} in {group!r}")
        return self._drop_share(group, name, user)

    def file(self, group: str, name: str) -> FileMeta | None:
        row = self.db.one("SELECT size, piece_size, root FROM files WHERE grp=? AND name=?", group, name)
        if row is None:
            return None
        return FileMeta(group=group, name=name, size=row[0], piece_size=row[1], root=row[2])

    def require_file(self, user: str, group: str, name: str) -> FileMeta:
        self.require_member(group, user)
        stored = self.file(group, name)
        if stored is None:
            raise Refused(Code.NO_SUCH_FILE, f"no file {name!r} in {group!r}")
        return stored

    def files(self, group: str, after: str = "", limit: int = ALL) -> list[tuple[str, int, int]]:
        """(name, size, sharers) of the group's files by name, after ``after`` (at most ``limit``)."""
        rows = self.db.all(
            """SELECT f.name, f.size, (SELECT count(*) FROM shares s WHERE s.grp=f.grp AND s.name=f.name)
               FROM files f WHERE f.grp=? AND f.name > ? ORDER BY f.name LIMIT ?""",
            group,
            after,
            limit,
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def shares_of(self, user: str) -> set[tuple[str, str]]:
        return {(r[0], r[1]) for r in self.db.all("SELECT grp, name FROM shares WHERE uname=?", user)}

    def servable(self, user: str, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Servable]:
        """For each (group, file) a peer says it serves: the file and whether ``user`` shares
        it, or why it may not serve it. Two queries per group, however many files (an announce
        may name thousands)."""
        out: dict[tuple[str, str], Servable] = {}
        by_group: dict[str, list[str]] = {}
        for group, name in keys:
            by_group.setdefault(group, []).append(name)
        for group, names in by_group.items():
            try:
                self.require_member(group, user)
            except Refused as exc:
                out.update({(group, n): exc for n in names})
                continue
            rows = self.db.all(
                f"""SELECT f.name, f.size, f.piece_size, f.root, s.uname IS NOT NULL FROM files f
                    LEFT JOIN shares s ON s.grp=f.grp AND s.name=f.name AND s.uname=?
                    WHERE f.grp=? AND f.name IN ({",".join("?" * len(names))})""",
                user,
                group,
                *names,
            )
            found = {r[0]: (FileMeta(group, r[0], r[1], r[2], r[3]), bool(r[4])) for r in rows}
            for n in names:
                out[(group, n)] = found.get(n) or Refused(Code.NO_SUCH_FILE, f"no file {n!r} in {group!r}")
        return out

    # --- helpers --------------------------------------------------------------------------
    def _drop_share(self, group: str, name: str, user: str) -> bool:
        self.db.run("DELETE FROM shares WHERE grp=? AND name=? AND uname=?", group, name, user)
        if self.db.one("SELECT 1 FROM shares WHERE grp=? AND name=?", group, name):
            return False
        self.db.run("DELETE FROM files WHERE grp=? AND name=?", group, name)
        return True

    def _take_request(self, group: str, user: str) -> None:
        if not self.db.run("DELETE FROM requests WHERE grp=? AND uname=?", group, user):
            raise Refused(Code.NO_SUCH_REQUEST, f"no pending request from {user!r} to join {group!r}")

    def _admin_of(self, group: str) -> str:
        """The group's admin, or NO_SUCH_GROUP."""
        row = self.db.one("SELECT admin FROM groups WHERE name=?", group)
        if row is None:
            raise Refused(Code.NO_SUCH_GROUP, f"no group {group!r}")
        return str(row[0])
