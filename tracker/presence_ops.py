"""Operations on presence: where peers listen, what they serve, who holds a file, bad data.

Same shape as ``handlers``: a validated call in, a Reply out, pushes queued for after commit.
"""

from __future__ import annotations

from messages import protocol as P
from messages.bitfield import Bitfield
from messages.control import Push, Reply
from messages.errors import Code, ProtocolError, Refused
from messages.records import Heartbeat, Holder, Refusal

from .call import Call, Env, Handler
from .presence import Online

BAD_REPORTERS = 2  # distinct downloaders whose reports stop a holder being listed


def holders(env: Env, c: Call) -> Reply:
    """Online holders of a file, each with its key, and one grant for the caller good at all."""
    group, name = c.args["group"], c.args["file"]
    env.rules.require_file(c.user, group, name)
    grant = env.signer.grant(c.user, c.session.key, group, name, env.grant_lifetime, c.wall)
    env.presence.subscribe((group, name), c.route, c.now)  # later changes come as pushes
    out = []
    for row in env.presence.holders((group, name)):
        if row.session == c.session.token_hash:
            continue
        have = None if row.have is None else Bitfield.text_of(row.have)
        holder = Holder(
            user=row.user, endpoint=row.endpoint, key=row.key, plain=row.plain, have=have, grant=grant
        )
        out.append(holder.to_wire())
    return c.ok({"holders": out})


def announce(env: Env, c: Call) -> Reply:
    """A peer says where it listens and what it serves; every claim is checked."""
    th, a = c.session.token_hash, c.args
    env.presence.announce(Online(th, c.user, c.session.key, a["endpoint"], a["plain"]), c.route, c.now)
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
    return c.ok({"refused": refused, "grant_key": env.signer.public})


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
    online = env.presence.touch(c.session.token_hash, c.route, c.now)
    return c.ok(Heartbeat(epoch=env.epoch, online=online).to_wire())


def report(env: Env, c: Call) -> Reply:
    """A downloader got a piece that failed its hash from ``holder``. Once two different
    downloaders say so, the holder is not listed for the file until it re-checks its copy."""
    key = (c.args["group"], c.args["file"])
    env.rules.require_file(c.user, *key)
    holder = c.args["holder"]
    reporters = env.presence.report(key, holder, c.user, c.args["piece"], c.wall)
    if reporters >= BAD_REPORTERS:
        env.presence.suspect(key, holder, True)
        pieces = env.presence.reported_pieces(key, holder)
        env.notify({"key": holder}, Push(P.PUSH_VERIFY, {"group": key[0], "file": key[1], "pieces": pieces}))
    return c.ok({"reporters": reporters})


def verified(env: Env, c: Call) -> Reply:
    """A holder re-checked its copy after reports (and withdrew what failed): list it again."""
    env.presence.suspect((c.args["group"], c.args["file"]), c.session.key, False)
    return c.ok()


HANDLERS: dict[str, Handler] = {
    P.OP_HOLDERS: holders,
    P.OP_ANNOUNCE: announce,
    P.OP_PROGRESS: progress,
    P.OP_HEARTBEAT: heartbeat,
    P.OP_REPORT: report,
    P.OP_VERIFIED: verified,
}
