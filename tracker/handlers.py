"""One function per operation: a validated Request in, a Reply out.

Handlers check the session, call the durable rules (state.py) and the in-memory presence
(online.py), and build replies from records; the server decides when to commit and send.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from messages import protocol as P
from messages.bitfield import Bitfield
from messages.control import Reply, Request
from messages.errors import Code, ProtocolError, RemoteError
from messages.grants import make_grant
from messages.records import FileEntry, FileMeta, Heartbeat, Holder, Refusal

from .online import Presence
from .state import State

Handler = Callable[["Context", Request], Reply]


class Context:
    """What a handler may use; one per tracker process."""

    def __init__(self, state: State, presence: Presence, epoch: str, grant_lifetime: float) -> None:
        self.state = state
        self.presence = presence
        self.epoch = epoch
        self.grant_lifetime = grant_lifetime


def _ok(req: Request, result: dict[str, Any] | None = None, blob: bytes | None = None) -> Reply:
    return Reply(id=req.id, ok=True, result=result or {}, blob=blob)


def _session(ctx: Context, req: Request) -> tuple[bytes, str]:
    return ctx.state.session_user(req.token)


def ping(ctx: Context, req: Request) -> Reply:
    return _ok(req, {"epoch": ctx.epoch})


def create_user(ctx: Context, req: Request) -> Reply:
    ctx.state.create_user(req.args["user"], req.args["password"])
    return _ok(req)


def login(ctx: Context, req: Request) -> Reply:
    return _ok(req, {"token": ctx.state.login(req.args["user"], req.args["password"])})


def logout(ctx: Context, req: Request) -> Reply:
    th, _ = _session(ctx, req)
    ctx.state.logout(th)
    ctx.presence.drop(th)
    return _ok(req)


def create_group(ctx: Context, req: Request) -> Reply:
    _, user = _session(ctx, req)
    ctx.state.create_group(user, req.args["group"])
    return _ok(req)


def join_group(ctx: Context, req: Request) -> Reply:
    _, user = _session(ctx, req)
    ctx.state.join_group(user, req.args["group"])
    return _ok(req)


def leave_group(ctx: Context, req: Request) -> Reply:
    _, user = _session(ctx, req)
    group = req.args["group"]
    result = ctx.state.leave_group(user, group)
    ctx.presence.unserve_group(group, user)
    for name in result.files_removed:
        ctx.presence.unserve((group, name))
    return _ok(req, result.to_wire())


def list_groups(ctx: Context, req: Request) -> Reply:
    _, user = _session(ctx, req)
    return _ok(req, {"groups": [g.to_wire() for g in ctx.state.list_groups(user)]})


def list_requests(ctx: Context, req: Request) -> Reply:
    _, user = _session(ctx, req)
    return _ok(req, {"users": ctx.state.list_requests(user, req.args["group"])})


def accept_request(ctx: Context, req: Request) -> Reply:
    _, user = _session(ctx, req)
    ctx.state.accept_request(user, req.args["group"], req.args["user"])
    return _ok(req)


def reject_request(ctx: Context, req: Request) -> Reply:
    _, user = _session(ctx, req)
    ctx.state.reject_request(user, req.args["group"], req.args["user"])
    return _ok(req)


def list_files(ctx: Context, req: Request) -> Reply:
    _, user = _session(ctx, req)
    group = req.args["group"]
    ctx.state.require_member(group, user)
    files = [
        FileEntry(name=name, size=size, online=ctx.presence.count((group, name)), sharers=sharers)
        for name, size, sharers in ctx.state.files(group)
    ]
    return _ok(req, {"files": [f.to_wire() for f in files]})


def file_info(ctx: Context, req: Request) -> Reply:
    _, user = _session(ctx, req)
    stored = ctx.state.require_file(user, req.args["group"], req.args["file"])
    return _ok(req, stored.meta.to_wire(), blob=stored.hashes)


def share_file(ctx: Context, req: Request) -> Reply:
    th, user = _session(ctx, req)
    a = req.args
    meta = FileMeta(
        group=a["group"], name=a["file"], size=a["size"], piece_size=a["piece_size"], root=a["root"]
    )
    new = ctx.state.share_file(user, meta, req.blob or b"")
    ctx.presence.serve(th, (meta.group, meta.name), None)
    return _ok(req, {"new": new})


def stop_share(ctx: Context, req: Request) -> Reply:
    _, user = _session(ctx, req)
    key = (req.args["group"], req.args["file"])
    removed = ctx.state.stop_share(user, *key)
    ctx.presence.unserve(key, None if removed else user)
    return _ok(req, {"file_removed": removed})


def holders(ctx: Context, req: Request) -> Reply:
    th, user = _session(ctx, req)
    group, name = req.args["group"], req.args["file"]
    ctx.state.require_file(user, group, name)
    out = []
    for other_th, peer in ctx.presence.holders((group, name)):
        if other_th == th:
            continue
        have = peer.serving[(group, name)]
        grant = make_grant(peer.seed_key, user, group, name, ctx.grant_lifetime)
        out.append(
            Holder(
                user=peer.user,
                endpoint=peer.endpoint,
                have=None if have is None else have.encode(),
                grant=grant.to_wire(),
            ).to_wire()
        )
    return _ok(req, {"holders": out})


def announce(ctx: Context, req: Request) -> Reply:
    """A peer says where it listens and what it serves; every claim is checked."""
    th, user = _session(ctx, req)
    a = req.args
    ctx.presence.announce(th, user, a["endpoint"], bytes.fromhex(a["seed_key"]))
    shared = ctx.state.shares_of(user)
    refused = []
    for ref in a["shares"]:
        key = (ref["group"], ref["file"])
        try:
            stored = ctx.state.require_file(user, *key)
            if "have" in ref:
                have = Bitfield.decode(stored.meta.num_pieces, ref["have"])
                ctx.presence.serve(th, key, have)
            elif key in shared:
                ctx.presence.serve(th, key, None)
            else:
                raise RemoteError(Code.NOT_SHARING, "you no longer share it")
        except (RemoteError, ProtocolError) as exc:
            refused.append(Refusal(group=key[0], file=key[1], message=exc.message).to_wire())
    return _ok(req, {"refused": refused})


def progress(ctx: Context, req: Request) -> Reply:
    """A downloader reports the pieces it holds so far (batched, not one message a piece)."""
    th, user = _session(ctx, req)
    key = (req.args["group"], req.args["file"])
    stored = ctx.state.require_file(user, *key)
    have = Bitfield.decode(stored.meta.num_pieces, req.args["have"])
    online = th in ctx.presence.peers
    if online and not len(have) and stored.meta.num_pieces:
        ctx.presence.unserve_session(th, key)  # a download that stopped: nothing to serve
    elif online:
        ctx.presence.serve(th, key, None if have.complete else have)
    return _ok(req, {"online": online})


def heartbeat(ctx: Context, req: Request) -> Reply:
    th, _ = _session(ctx, req)
    online = ctx.presence.touch(th)
    return _ok(req, Heartbeat(epoch=ctx.epoch, online=online).to_wire())


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
