"""Operations on presence: where peers listen, what they serve, who holds a file, bad data.

Same shape as ``handlers``: a validated call in, a Reply out, pushes queued for after commit.
"""

from __future__ import annotations

import orjson

from messages import protocol as P
from messages.bitfield import Bitfield
from messages.control import Push, Reply
from messages.endpoints import is_wildcard, with_host
from messages.errors import Code, ProtocolError, Refused
from messages.records import Heartbeat, Refusal

from .call import Call, Env, Handler
from .paging import page
from .presence import FileKey, Online
from .sampling import choose

BAD_REPORTERS = 2  # distinct downloaders whose reports stop a holder being listed


def holders(env: Env, c: Call) -> Reply:
    """A sample of a file's online holders and one grant for the caller, good at all of them.

    The caller names the holders it knows (``known``): it hears which of them left and what the
    others hold now, and gets up to ``want`` others (see ``sampling``). The file's later holder
    changes come to it as pushes.
    """
    group, name = c.args["group"], c.args["file"]
    key = (group, name)
    env.rules.require_file(c.user, group, name)
    grant = env.signer.grant(c.user, c.session.key, group, name, env.grant_lifetime, c.wall)
    env.presence.subscribe(key, c.route, c.now)
    known = c.args.get("known", [])
    want = c.args.get("want", P.HOLDER_SAMPLE)
    still = env.presence.known(key, known)
    fresh = choose(env.presence.candidates(key, c.session.token_hash, known, 2 * want), want) if want else []
    budget = P.PAGE_BYTES - len(orjson.dumps(grant.to_wire()))
    listed = page(((r.key, r.holder().to_wire()) for r in still + fresh), len(still) + len(fresh), budget)
    sent = {h["key"] for h in listed["items"]}
    env.presence.handed_out(key, [r for r in fresh if r.key in sent])
    left = sorted(set(known) - {r.key for r in still})
    result = {"grant": grant.to_wire(), "holders": listed["items"], "left": left}
    return c.ok(result | {"total": env.presence.count(key)})


def announce(env: Env, c: Call) -> Reply:
    """A peer says where it listens and what it serves; every claim is checked. A first
    announce (re)registers the session; with ``more`` it adds a further batch of shares."""
    th, a = c.session.token_hash, c.args
    endpoint = reachable(a["endpoint"], c.address)
    if not a.get("more"):
        env.presence.announce(Online(th, c.user, c.session.key, endpoint, a["plain"]), c.route, c.now)
    elif not env.presence.is_online(th):
        raise Refused(Code.NOT_ONLINE, "announce where you listen first (more=false)")
    found = env.rules.servable(c.user, [(r["group"], r["file"]) for r in a["shares"]])
    serving: list[tuple[FileKey, Bitfield | None]] = []
    refused = []
    for ref in a["shares"]:
        key = (ref["group"], ref["file"])
        status = found[key]
        try:
            if isinstance(status, Refused):
                raise status
            meta, shared = status
            if "have" in ref:
                serving.append((key, Bitfield.decode(meta.num_pieces, ref["have"])))
            elif shared:
                serving.append((key, None))
            else:
                raise Refused(Code.NOT_SHARING, "you no longer share it")
        except (Refused, ProtocolError) as exc:
            refused.append(Refusal(group=key[0], file=key[1], message=exc.message).to_wire())
    env.presence.serve_many(th, serving)
    return c.ok({"refused": refused, "grant_key": env.signer.public, "endpoint": endpoint})


def reachable(endpoint: str, address: str) -> str:
    """Where others reach a peer: a wildcard listener ("tcp://0.0.0.0:port") is reached at the
    address its requests come from, as BitTorrent trackers take the announcer's source IP."""
    if not is_wildcard(endpoint):
        return endpoint
    if not address:
        raise Refused(Code.BAD_ARGS, f"cannot tell where others reach {endpoint}; give --advertise")
    return with_host(endpoint, address)


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
