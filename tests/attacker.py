"""A hostile client, run as its own process by tests/test_hostile.py.

``python tests/attacker.py MODE JSON`` attacks a tracker or a seeder (or poses as a holder) as
told by the JSON arguments and prints one JSON report line (``{"attack": {...}}``) when done.
It runs in its own process so that its CPU and memory are not the measuring test's, and so
that the test can kill it outright.

Modes:
  flood     messages of ``frames`` frames of ``size`` bytes (after a protocol tag), from
            ``conns`` connections with throwaway CURVE keys, for ``seconds``
  garbage   ``count`` malformed messages of every kind, never reading the replies
  reset     rounds of connections that flood malformed messages, then hang up all at once
  hoard     piece requests from ``keys`` (each with its grant) on ``conns`` connections per
            key, never reading a reply; holds them until stdin closes or says so
  holder    a member posing as a holder: logs in, announces its own ROUTER, shares the file
            and answers every request with a reply of ``frames`` frames of ``size`` bytes
"""

from __future__ import annotations

import itertools
import random
import sys
import threading
import time
from typing import Any

import orjson
import zmq

from broker.client import ControlClient
from broker.keys import KeyPair, client_curve, serve_curve
from broker.trackers import TrackerSet
from launch.processes import report
from messages import protocol as P
from messages.pieces import PieceRequest
from messages.records import Grant


def dealer(
    ctx: zmq.Context, endpoint: str, server_key: str, keys: KeyPair | None = None, sndhwm: int = 4
) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.sndhwm = sndhwm
    s.rcvhwm = 1  # read as little as libzmq lets us
    s.rcvbuf = 4096
    s.reconnect_ivl = 10  # hung up on: back at once
    if server_key:
        client_curve(s, keys or KeyPair.generate(), server_key)
    s.connect(endpoint)
    return s


def send_frame(sock: zmq.Socket, body: Any, more: int, deadline: float) -> bool:
    """Queue one frame; False if the socket would not take it before ``deadline``."""
    while True:
        try:
            sock.send(body, more | zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            if time.monotonic() > deadline:
                return False
            sock.poll(20, zmq.POLLOUT)


def send_message(sock: zmq.Socket, tag: bytes, body: Any, frames: int, deadline: float) -> int:
    """One message of ``frames`` frames of ``body`` after ``tag``; gives up (returns -1) when
    the socket takes nothing until ``deadline``, e.g. because the victim hung up on us."""
    if not send_frame(sock, tag, zmq.SNDMORE, deadline):
        return -1
    for i in range(frames):
        if not send_frame(sock, body, zmq.SNDMORE if i < frames - 1 else 0, deadline):
            return -1
    return frames * len(body)


def flood(a: dict[str, Any]) -> dict[str, Any]:
    """Many connections, each sending big multi-frame messages in a loop; a connection that
    stops taking messages (the victim hung up) is replaced by a new one."""
    ctx = zmq.Context(io_threads=2)
    body = zmq.Frame(b"x" * a["size"])
    tag = a.get("tag", "TRK1").encode()
    end = time.monotonic() + a["seconds"]
    opened = [0] * a["conns"]

    def one(i: int) -> None:
        while time.monotonic() < end:
            sock = dealer(ctx, a["endpoint"], a["key"])
            opened[i] += 1
            try:
                while time.monotonic() < end:
                    if send_message(sock, tag, body, a["frames"], min(end, time.monotonic() + 0.5)) < 0:
                        break
            finally:
                sock.close(linger=0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(a["conns"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctx.term()
    return {"connections": sum(opened)}


def garbage_messages(n: int) -> list[list[bytes]]:
    rng = random.Random(7)
    kinds = [
        lambda: [b"junk"],
        lambda: [b"TRK1", b"{not json"],
        lambda: [b"TRK1", b"[1,2]"],
        lambda: [b"TRK1", b'{"id": 1, "op": "format_disk"}'],
        lambda: [b"TRK1", b'{"id": 1, "op": "login", "args": {"user": 5, "password": "x"}}'],
        lambda: [b"TRK1", b'{"id": 1, "op": "list_groups", "args": {}, "token": "forged"}'],
        lambda: [b"TRK1", b"{" + b" " * 65_000 + b"}"],  # under the frame limit, over 64 KiB
        lambda: [b"TRK1", b"{}", b"x", b"y"],
        lambda: [rng.randbytes(rng.randrange(1, 2000)) for _ in range(rng.randrange(1, 6))],
        lambda: [b"TPC1", orjson.dumps({"id": 1, "op": "get", "g": "g", "f": "f", "p": -1})],
    ]
    return [rng.choice(kinds)() for _ in range(n)]


def garbage_round(ctx: zmq.Context, a: dict[str, Any], seconds: float) -> int:
    """``conns`` connections send malformed messages for ``seconds``, reading no reply, then
    hang up (with unread replies: a TCP reset). A connection that takes nothing for a while
    (the victim hung up on it: libzmq waits for us to read before it reconnects) is replaced.
    Returns how many messages were sent."""
    socks = [dealer(ctx, a["endpoint"], a["key"]) for _ in range(a["conns"])]
    took = [time.monotonic()] * len(socks)
    end = time.monotonic() + seconds
    sent = 0
    for i, frames in enumerate(itertools.cycle(garbage_messages(a["count"]))):
        now = time.monotonic()
        if now >= end:
            break
        k = i % len(socks)
        try:
            socks[k].send_multipart(frames, zmq.NOBLOCK)
            sent, took[k] = sent + 1, now
        except zmq.Again:
            if now - took[k] > 0.2:
                socks[k].close(linger=0)
                socks[k], took[k] = dealer(ctx, a["endpoint"], a["key"]), now
            socks[k].poll(5, zmq.POLLOUT)
    for s in socks:
        s.close(linger=0)
    return sent


def garbage(a: dict[str, Any]) -> dict[str, Any]:
    """``count`` malformed messages of every kind, again and again for ``seconds``."""
    ctx = zmq.Context()
    sent = garbage_round(ctx, a, a["seconds"])
    ctx.term()
    return {"sent": sent}


def reset(a: dict[str, Any]) -> dict[str, Any]:
    """Rounds of garbage lasting ``hold`` to twice that, for ``seconds``: each round's
    connections hang up all at once, mid-flood."""
    ctx = zmq.Context()
    rng = random.Random(3)
    end = time.monotonic() + a["seconds"]
    rounds = sent = 0
    while time.monotonic() < end:
        sent += garbage_round(ctx, a, min(end - time.monotonic(), a["hold"] * (1 + rng.random())))
        rounds += 1
    ctx.term()
    return {"rounds": rounds, "sent": sent}


def hoard(a: dict[str, Any]) -> dict[str, Any]:
    """Ask for every piece on many connections and never read; then keep every connection
    talking (one more request a second: a peer that is still there) until stdin closes."""
    ctx = zmq.Context()
    socks = []
    for pub, sec, grant in a["keys"]:
        keys = KeyPair(pub, sec)
        for _ in range(a["conns"]):
            socks.append((dealer(ctx, a["endpoint"], a["key"], keys, 100_000), Grant.from_wire(grant)))
    ids = itertools.count(1)
    sent = 0

    def ask(sock: zmq.Socket, grant: Grant, piece: int) -> bool:
        req = PieceRequest(next(ids), a["group"], a["file"], piece % a["pieces"], grant)
        try:
            sock.send_multipart(req.encode(), zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    for rnd in range(a["rounds"]):
        for sock, grant in socks:
            sent += sum(ask(sock, grant, p + rnd) for p in range(a["pieces"]))
    report(hoarding={"connections": len(socks), "requests": sent})
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    while not stop.wait(1.0):
        sent += sum(ask(sock, grant, sent) for sock, grant in socks)
    for sock, _ in socks:
        sock.close(linger=0)
    ctx.term()
    return {"requests": sent}


def holder(a: dict[str, Any]) -> dict[str, Any]:
    """Log in as a member, announce our own ROUTER, share the file, answer with huge replies."""
    ctx = zmq.Context()
    from broker.keys import start_authenticator

    auth = start_authenticator(ctx)
    keys = KeyPair.generate()
    server = ctx.socket(zmq.ROUTER)
    server.linger = 0
    serve_curve(server, keys)
    server.bind("tcp://127.0.0.1:0")
    endpoint = server.getsockopt_string(zmq.LAST_ENDPOINT)
    client = ControlClient(ctx, TrackerSet([a["tracker"]], a["tracker_key"], keys))
    token = client.call(P.OP_LOGIN, {"user": a["user"], "password": a["password"]}).unwrap()["token"]
    client.call(P.OP_ANNOUNCE, {"endpoint": endpoint, "plain": False, "shares": []}, token=token).unwrap()
    client.call(P.OP_SHARE_FILE, a["share"], token=token).unwrap()
    report(holding={"endpoint": endpoint, "key": keys.public})
    body = zmq.Frame(b"y" * a["size"])
    stats = {"requests": 0, "bytes": 0}
    next_beat = 0.0
    while True:
        if time.monotonic() >= next_beat:
            client.call(P.OP_HEARTBEAT, {}, token=token)
            next_beat = time.monotonic() + 1.0
        if not server.poll(100):
            continue
        frames = server.recv_multipart()
        stats["requests"] += 1
        report(answering=stats["requests"])
        try:
            req_id = orjson.loads(frames[2])["id"]
        except (orjson.JSONDecodeError, IndexError, KeyError, TypeError):
            req_id = 0
        head = orjson.dumps({"id": req_id, "p": 0, "ok": True})
        try:
            server.send(frames[0], zmq.SNDMORE)
            server.send(P.PIECE_TAG, zmq.SNDMORE)
            stats["bytes"] += max(0, send_message(server, head, body, a["frames"], time.monotonic() + 2.0))
        except zmq.ZMQError:
            pass
        if auth is None:  # keep the authenticator referenced (it runs while we serve)
            break
    return stats


MODES = {"flood": flood, "garbage": garbage, "reset": reset, "hoard": hoard, "holder": holder}

if __name__ == "__main__":
    mode, args = sys.argv[1], orjson.loads(sys.argv[2])
    report(attack=MODES[mode](args))
