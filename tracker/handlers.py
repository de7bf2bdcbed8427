"""One function per operation: a validated call in, a Reply out.

The core has already decoded the request and, where the operation table asks for one, found
the caller's session; handlers apply the durable rules and presence and build replies from
records. They never commit and never touch a socket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from messages import protocol as P
from messages.bitfield import Bitfield
from messages.control import Reply, Request
from messages.errors import Code, ProtocolError, Refused
from messages.grants import make_grant
from messages.records import FileEntry, FileMeta, Heartbeat, Holder, Refusal

from .presence import Presence
from .rules import Rules, Session


@dataclass(slots=True)
class Env:
    """What handlers may use; one per tracker."""

    rules: Rules
    presence: Presence
    epoch: str
    grant_lifetime: float


@dataclass(frozen=True, slots=True)
class Call:
    """One request as a handler sees it: the request, its caller and the batch's time."""

    req: Request
    session_or_none: Session | None
    now: float

    @property
    def args(self) -> dict[str, Any]:
        return self.req.args

    @property
    def session(self) -> Session:
        if self.session_or_none is None:  # only ops the table marks as needing no token get here
            raise Refused(Code.UNAUTHORIZED, "not logged in")
        return self.session_or_none

    @property
    def user(self) -> str:
        return self.session.user

    def ok(self, result: dict[str, Any] | None = None) -> Reply:
        return Reply.success(self.req.id, result)


Handler = Callable[[Env, Call], Reply]


def ping(env: Env, c: Call) -> Reply:
    return c.ok({"epoch": env.epoch})


def create_user(env: Env, c: Call) -> Reply:
    env.rules.create_user(c.args["user"], c.args["password"])
    return c.ok()


def login(env: Env, c: Call) -> Reply:
    return c.ok({"token": env.rules.login(c.args["user"], c.args["password"])})


def logout(env: Env, c: Call) -> Reply:
    env.rules.logout(c.session)
    env.presence.drop(c.session.token_hash)
    return c.ok()


def create_group(env: Env, c: Call) -> Reply:
    env.rules.create_group(c.user, c.args["group"])
    return c.ok()


def join_group(env: Env, c: Call) -> Reply:
    env.rules.join_group(c.user, c.args["group"])
    return c.ok()


def leave_group(env: Env, c: Call) -> Reply:
    group = c.args["group"]
    result = env.rules.leave_group(c.user, group)
    env.presence.unserve_group(group, c.user)
    for name in result.files_removed:
        env.presence.unserve((group, name))
    return c.ok(result.to_wire())


def list_groups(env: Env, c: Call) -> Reply:
    return c.ok({"groups": [g.to_wire() for g in env.rules.list_groups(c.user)]})


def list_requests(env: Env, c: Call) -> Reply:
    return c.ok({"users": env.rules.list_requests(c.user, c.args["group"])})


def accept_request(env: Env, c: Call) -> Reply:
    env.rules.accept_request(c.user, c.args["group"], c.args["user"])
    return c.ok()


def reject_request(env: Env, c: Call) -> Reply:
    env.rules.reject_request(c.user, c.args["group"], c.args["user"])
    return c.ok()


def list_files(env: Env, c: Call) -> Reply:
    group = c.args["group"]
    env.rules.require_member(group, c.user)
    files = [
        FileEntry(name=name, size=size, online=env.presence.count((group, name)), sharers=sharers)
        for name, size, sharers in env.rules.files(group)
    ]
    return c.ok({"files": [f.to_wire() for f in files]})


def file_info(env: Env, c: Call) -> Reply:
    return c.ok(env.rules.require_file(c.user, c.args["group"], c.args["file"]).to_wire())


def share_file(env: Env, c: Call) -> Reply:
    a = c.args
    meta = FileMeta(
        group=a["group"], name=a["file"], size=a["size"], piece_size=a["piece_size"], root=a["root"]
    )
    new = env.rules.share_file(c.user, meta)
    env.presence.serve(c.session.token_hash, meta.key, None)
    return c.ok({"new": new})


def stop_share(env: Env, c: Call) -> Reply:
    key = (c.args["group"], c.args["file"])
    removed = env.rules.stop_share(c.user, *key)
    env.presence.unserve(key, None if removed else c.user)
    return c.ok({"file_removed": removed})


def holders(env: Env, c: Call) -> Reply:
    group, name = c.args["group"], c.args["file"]
    env.rules.require_file(c.user, group, name)
    out = []
    for row in env.presence.holders((group, name)):
        if row.session == c.session.token_hash:
            continue
        have = None if row.have is None else Bitfield.text_of(row.have)
        grant = make_grant(row.seed_key, c.user, group, name, env.grant_lifetime)
        out.append(Holder(user=row.user, endpoint=row.endpoint, have=have, grant=grant).to_wire())
    return c.ok({"holders": out})


def announce(env: Env, c: Call) -> Reply:
    """A peer says where it listens and what it serves; every claim is checked."""
    th, a = c.session.token_hash, c.args
    env.presence.announce(th, c.user, a["endpoint"], bytes.fromhex(a["seed_key"]), c.now)
    shared = env.rules.shares_of(c.user)
    refused = []
    for ref in a["shares"]:
        key = (ref["group"], ref["file"])
        try:
            meta = env.rules.require_file(c.user, *key)
            if "have" in ref:
                env.presence.serve(th, key, Bitfield.decode(meta.num_pieces, ref["have"]))
            elif key in shared:
                env.presence.serve(th, key, None)
            else:
                raise Refused(Code.NOT_SHARING, "you no longer share it")
        except (Refused, ProtocolError) as exc:
            refused.append(Refusal(group=key[0], file=key[1], message=exc.message).to_wire())
    return c.ok({"refused": refused})


def progress(env: Env, c: Call) -> Reply:
    """A downloader reports the pieces it holds so far (batched, not one message a piece)."""
    th = c.session.token_hash
    key = (c.args["group"], c.args["file"])
    meta = env.rules.require_file(c.user, *key)
    have = Bitfield.decode(meta.num_pieces, c.args["have"])
    online = env.presence.is_online(th)
    if online and not len(have) and meta.num_pieces:
        env.presence.unserve_session(th, key)  # a download that stopped: nothing to serve
    elif online:
        env.presence.serve(th, key, None if have.complete else have)
    return c.ok({"online": online})


def heartbeat(env: Env, c: Call) -> Reply:
    online = env.presence.touch(c.session.token_hash, c.now)
    return c.ok(Heartbeat(epoch=env.epoch, online=online).to_wire())


HANDLERS: dict[str, Handler] = {
    P.OP_PING: ping,
    P.OP_CREATE_USER: create_user,
    P.OP_LOGIN: login,
    P.OP_LOGOUT: logout,
    P.OP_CREATE_GROUP: create_group,
    P.OP_JOIN_GROUP: join_group,
    P.OP_LEAVE_GROUP: leave_group,
    P.OP_LIST_GROUPS: list_groups,
    P.OP_LIST_REQUESTS: list_requests,
    P.OP_ACCEPT_REQUEST: accept_request,
    P.OP_REJECT_REQUEST: reject_request,
    P.OP_LIST_FILES: list_files,
    P.OP_FILE_INFO: file_info,
    P.OP_SHARE_FILE: share_file,
    P.OP_STOP_SHARE: stop_share,
    P.OP_HOLDERS: holders,
    P.OP_ANNOUNCE: announce,
    P.OP_PROGRESS: progress,
    P.OP_HEARTBEAT: heartbeat,
}
