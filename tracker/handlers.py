"""One function per operation on accounts, groups and files: a validated call in, a Reply out.

The core has already decoded the request and, where the operation table asks for one, found
the caller's session; handlers apply the durable rules and presence, build replies from
records and queue pushes (revocations, removed files) for the core to send after the commit.
They never commit and never touch a socket. Presence operations are in ``presence_ops``.
"""

from __future__ import annotations

from functools import partial

from messages import protocol as P
from messages.control import Push, Reply
from messages.errors import Code, Refused
from messages.records import FileEntry, FileMeta, JoinRequest, LeaveResult, Revocation

from . import presence_ops
from .call import Call, Deferred, Env, Handler
from .paging import page, page_args
from .passwords import new_salt, same_digest


def ping(env: Env, c: Call) -> Reply:
    return c.ok({"epoch": env.epoch, "grant_key": env.signer.public})


def create_user(env: Env, c: Call) -> Deferred:
    user = c.args["user"]
    env.rules.require_new_user(user)
    salt = new_salt()
    return Deferred(user, c.args["password"], salt, partial(_user_hashed, salt=salt))


def _user_hashed(env: Env, c: Call, digest: bytes, *, salt: bytes) -> Reply:
    env.rules.add_user(c.args["user"], salt, digest)  # USER_EXISTS if another create won the race
    return c.ok()


def login(env: Env, c: Call) -> Deferred:
    user = c.args["user"]
    salt, expected = env.rules.password_record(user, c.wall)
    return Deferred(user, c.args["password"], salt, partial(_login_hashed, expected=expected))


def _login_hashed(env: Env, c: Call, digest: bytes, *, expected: bytes) -> Reply:
    """A wrong password is answered without raising, so its record survives for throttling."""
    user = c.args["user"]
    if not same_digest(digest, expected):
        env.rules.record_failure(user, c.wall)
        return Reply.failure(c.req.id, Refused(Code.WRONG_PASSWORD, "wrong password"))
    # "at": the seeder of this session refuses grants issued before it (see peer.api.login).
    return c.ok({"token": env.rules.open_session(user, c.key), "at": c.wall})


def logout(env: Env, c: Call) -> Reply:
    groups = env.rules.groups_of(c.user)
    env.rules.logout(c.session)
    env.presence.drop(c.session.token_hash)
    for group in groups:
        revoke(env, group, Revocation(at=c.wall, key=c.session.key))
    return c.ok()


def revoke(env: Env, group: str, rev: Revocation) -> None:
    """Tell every online member of ``group`` to refuse grants issued before now that ``rev``
    covers: members not serving there now too, since a download makes any of them a holder at
    once; a peer that logs in later refuses every grant older than its session instead."""
    env.notify({"members": group}, Push(P.PUSH_REVOKE, rev.to_wire()))


def create_group(env: Env, c: Call) -> Reply:
    env.rules.create_group(c.user, c.args["group"])
    return c.ok()


def join_group(env: Env, c: Call) -> Reply:
    env.rules.join_group(c.user, c.args["group"])
    return c.ok()


def _gone(env: Env, c: Call, group: str, user: str, result: LeaveResult) -> Reply:
    """After ``user`` left ``group`` (or was removed): unlist their shares, revoke their grants."""
    env.presence.unserve_group(group, user)
    for name in result.files_removed:
        env.presence.unserve((group, name))
    revoke(env, group, Revocation(at=c.wall, user=user, group=group))
    return c.ok(result.to_wire())


def leave_group(env: Env, c: Call) -> Reply:
    group = c.args["group"]
    return _gone(env, c, group, c.user, env.rules.leave_group(c.user, group))


def remove_member(env: Env, c: Call) -> Reply:
    group, user = c.args["group"], c.args["user"]
    return _gone(env, c, group, user, env.rules.remove_member(c.user, group, user))


def list_groups(env: Env, c: Call) -> Reply:
    after, limit = page_args(c.args)
    groups = env.rules.list_groups(c.user, after, limit + 1)
    return c.ok(page(((g.name, g.to_wire()) for g in groups), limit))


def list_requests(env: Env, c: Call) -> Reply:
    after, limit = page_args(c.args)
    users = env.rules.list_requests(c.user, c.args["group"], after, limit + 1)
    return c.ok(page(((u, JoinRequest(u).to_wire()) for u in users), limit))


def accept_request(env: Env, c: Call) -> Reply:
    group, user = c.args["group"], c.args["user"]
    env.rules.accept_request(c.user, group, user)
    # The revocations pushed before now never reached the new member: its seeders refuse every
    # grant for the group issued before it joined (no download of ours can hold such a grant).
    env.notify({"user": user}, Push(P.PUSH_REVOKE, Revocation(at=c.wall, group=group).to_wire()))
    return c.ok()


def reject_request(env: Env, c: Call) -> Reply:
    env.rules.reject_request(c.user, c.args["group"], c.args["user"])
    return c.ok()


def list_files(env: Env, c: Call) -> Reply:
    group = c.args["group"]
    env.rules.require_member(group, c.user)
    after, limit = page_args(c.args)
    files = (
        FileEntry(name=name, size=size, online=env.presence.count((group, name)), sharers=sharers)
        for name, size, sharers in env.rules.files(group, after, limit + 1)
    )
    return c.ok(page(((f.name, f.to_wire()) for f in files), limit))


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


def remove_file(env: Env, c: Call) -> Reply:
    """The admin takes a file out of the group: holders stop serving it, downloads of it end."""
    group, name = c.args["group"], c.args["file"]
    env.rules.remove_file(c.user, group, name)
    removed = Push(P.PUSH_REMOVED, {"group": group, "file": name, "by": c.user})
    env.notify({"group": group, "file": name}, removed)  # holders (evaluated before unserving)
    env.notify({"subscribed": group, "file": name}, removed)  # downloads of it
    env.presence.unserve((group, name))
    return c.ok()


HANDLERS: dict[str, Handler] = {
    P.OP_PING: ping,
    P.OP_CREATE_USER: create_user,
    P.OP_LOGIN: login,
    P.OP_LOGOUT: logout,
    P.OP_CREATE_GROUP: create_group,
    P.OP_JOIN_GROUP: join_group,
    P.OP_LEAVE_GROUP: leave_group,
    P.OP_REMOVE_MEMBER: remove_member,
    P.OP_LIST_GROUPS: list_groups,
    P.OP_LIST_REQUESTS: list_requests,
    P.OP_ACCEPT_REQUEST: accept_request,
    P.OP_REJECT_REQUEST: reject_request,
    P.OP_LIST_FILES: list_files,
    P.OP_FILE_INFO: file_info,
    P.OP_SHARE_FILE: share_file,
    P.OP_STOP_SHARE: stop_share,
    P.OP_REMOVE_FILE: remove_file,
    **presence_ops.HANDLERS,
}
