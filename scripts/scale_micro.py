"""Two costs of ``scripts/bench --scale`` that grow with size, measured on their own.

- The share store (``peer/sharestore.py``): what one more upload costs a peer that already
  shares 250 or 1,750 files (its share list used to be rewritten whole at every upload).
- accept_request over the wire, in a group of a hundred and of ten thousand members (it used to
  slow down as a group grew): one admin session with a window of requests in flight, as a busy
  admin's scripts would send them.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from typing import Any

import orjson
import zmq

from broker.keys import KeyPair
from broker.sockets import LIMITS, dealer
from messages import protocol as P
from messages.control import Reply, Request
from messages.records import FileMeta
from peer.sharestore import Saved, ShareStore

DIGESTS = 1024  # a 1 GiB file at the default piece size: 32 KiB of digests in its row
WINDOW = 32  # accept_request calls in flight
REPLY_TIMEOUT = 30.0


def sharestore_cost(folder: str, at: tuple[int, ...] = (250, 1750), samples: int = 50) -> dict[str, Any]:
    """Milliseconds per ``put`` (one upload recorded, committed with fsync) once the store holds
    ``at`` shares: median and 90th percentile of ``samples`` puts."""
    os.makedirs(folder, exist_ok=True)
    store = ShareStore(folder)
    digests = os.urandom(32 * DIGESTS)
    out: dict[str, Any] = {}
    n = 0

    def put() -> float:
        nonlocal n
        meta = FileMeta(
            group="g", name=f"file-{n:06d}.bin", size=DIGESTS << 20, piece_size=1 << 20, root="0" * 64
        )
        t0 = time.perf_counter()
        store.put(Saved(meta, f"/data/file-{n:06d}.bin", meta.size, n, digests))
        n += 1
        return (time.perf_counter() - t0) * 1000

    try:
        for target in at:
            while n < target:
                put()
            times = sorted(put() for _ in range(samples))
            out[str(target)] = {
                "median_ms": statistics.median(times),
                "p90_ms": times[int(0.9 * (len(times) - 1))],
            }
    finally:
        store.close()
    return out


def accept_rate(
    ctx: zmq.Context, endpoint: str, server_key: str, keys: KeyPair, token: str, group: str, users: list[str]
) -> dict[str, Any]:
    """accept_request for every user of ``users`` (all pending in ``group``): calls per second."""
    sock = dealer(ctx, endpoint, LIMITS["control"], keys, server_key)
    errors: Counter[str] = Counter()
    try:
        sent = done = 0
        t0 = time.perf_counter()
        while done < len(users):
            while sent < len(users) and sent - done < WINDOW:
                args = {"group": group, "user": users[sent]}
                req = Request(
                    sent + 1, P.OP_ACCEPT_REQUEST, args, cid=f"acc-{group}-{os.getpid()}", token=token
                )
                sock.send_multipart(req.encode())
                sent += 1
            if not sock.poll(REPLY_TIMEOUT * 1000, zmq.POLLIN):
                raise TimeoutError(f"accept_request in {group}: no reply in {REPLY_TIMEOUT}s")
            header = orjson.loads(sock.recv_multipart()[1])
            if "push" in header:
                continue
            reply = Reply.from_header(header)
            if reply.error is not None:
                errors[str(reply.error.code)] += 1
            done += 1
        seconds = time.perf_counter() - t0
    finally:
        sock.close(linger=0)
    return {"calls": len(users), "seconds": seconds, "per_s": len(users) / seconds, "errors": dict(errors)}


def accept_rates(
    ctx: zmq.Context, endpoint: str, server_key: str, keys: KeyPair, token: str, accepts: int, reps: int = 3
) -> dict[str, Any]:
    """accept_request rates in acc-small and acc-big, ``reps`` alternating runs each (their
    median): the requests are split between the runs."""
    out: dict[str, Any] = {}
    per = accepts // reps
    for group in ("acc-small", "acc-big"):
        out[group] = {"runs": []}
    for r in range(reps):
        for group, prefix in (("acc-small", "ra"), ("acc-big", "rb")):
            users = [f"{prefix}{i:05d}" for i in range(r * per, (r + 1) * per)]
            out[group]["runs"].append(accept_rate(ctx, endpoint, server_key, keys, token, group, users))
    for row in out.values():
        row["per_s"] = statistics.median(run["per_s"] for run in row["runs"])
        row["errors"] = sum(sum(run["errors"].values()) for run in row["runs"])
    return out
