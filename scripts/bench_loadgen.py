"""The control-plane bench's child processes: the load generator and the bare echo server.

Why separate processes: the load must not share a GIL (or a core's accounting) with the
parent that measures, and the echo server gives the ceiling of the transport and the client
code on this machine with nothing of the tracker behind it.

Both are started by ``bench_control`` as ``python scripts/bench_loadgen.py load|echo``:
- ``load``: reads a spec line on stdin (clients, each with its own tracker endpoint, the op and
  the keys), connects every DEALER, reports ``{"ready": true}``, waits for a go line (a window on
  the wall clock shared by all load processes), drives its clients closed-loop (one request
  outstanding per socket, as a peer's ControlClient does) and reports its counts.
- ``echo``: a CURVE ROUTER that answers every request ok; it reports its endpoint and key and
  stops when its stdin closes (the parent ended or died).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections import Counter
from typing import Any

import orjson
import zmq

from broker.keys import KeyPair, serve_curve, start_authenticator
from broker.sockets import LIMITS, dealer
from launch.processes import report
from messages import protocol as P
from messages.control import Push, Request, decode_inbound
from messages.errors import ProtocolError

GROUP = "bench"
FILE = "bench.bin"
READY_TIMEOUT = 30.0  # process start, connect and one warm-up ping per socket


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def own_cpu() -> float:
    """User + system seconds of this process, all threads (zmq's I/O thread included)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# --- echo server ---------------------------------------------------------------------------------


def echo_main() -> int:
    """A bare ROUTER answering every request ok: the ceiling for transport + client on this machine."""
    ctx = zmq.Context()
    auth = start_authenticator(ctx)
    keys = KeyPair.generate()
    sock = ctx.socket(zmq.ROUTER)
    try:
        serve_curve(sock, keys)  # the same handshake and encryption the tracker pays for
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 1000)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.bind("tcp://127.0.0.1:0")
        report(endpoint=sock.getsockopt_string(zmq.LAST_ENDPOINT), key=keys.public)
        _echo_loop(sock)
        return 0
    finally:
        sock.close(linger=0)
        auth.stop()
        ctx.term()


def _echo_loop(sock: zmq.Socket) -> None:
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    stdin = sys.stdin.fileno()
    poller.register(stdin, zmq.POLLIN)  # EOF when the parent closes it or dies: stop
    while True:
        for what, _ in poller.poll():
            if what == stdin:
                if not os.read(stdin, 4096):
                    return
                continue
            while True:
                try:
                    ident, tag, header, *_ = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                reply = orjson.dumps({"id": orjson.loads(header)["id"], "ok": True, "result": {}})
                sock.send_multipart([ident, tag, reply])


# --- load generator ------------------------------------------------------------------------------


class _Client:
    """One closed-loop client: a DEALER to its own tracker with exactly one request outstanding."""

    __slots__ = ("cid", "index", "key", "pending", "seq", "sock", "token", "user")

    def __init__(
        self, ctx: zmq.Context, spec: dict[str, Any], index: int, user: str, token: str, endpoint: str
    ) -> None:
        keys = KeyPair(*spec["client_keys"])
        server_key = spec.get("keys_per_endpoint", {}).get(endpoint, spec["server_key"])
        self.sock = dealer(ctx, endpoint, LIMITS["control"], keys, server_key)
        self.cid = f"{spec['label']}-{index}"  # ids restart per phase; the reply cache keys on (cid, id)
        self.index = index
        self.user = user
        self.token = token or None
        self.seq = 0
        self.pending = -1
        self.key: tuple[str, str] | None = None


def _next_args(
    c: _Client, op: str, spec: dict[str, Any]
) -> tuple[dict[str, Any], tuple[str, str] | None] | None:
    """Arguments of the client's next request and the write it makes; None once out of targets."""
    n = c.seq  # requests already made by this client in the run
    if op == P.OP_CREATE_GROUP:
        name = f"c{c.index}-{n}"
        return {"group": name}, (name, c.user)
    if op == P.OP_JOIN_GROUP:
        if n >= spec["quota"]:
            return None
        name = f"j{c.index + spec['total'] * n}"  # distinct per client and per request
        return {"group": name}, (name, c.user)
    if op == P.OP_LIST_FILES:
        return {"group": GROUP}, None
    if op == P.OP_HOLDERS:
        return {"group": GROUP, "file": FILE}, None
    return {}, None


def _send_next(c: _Client, op: str, spec: dict[str, Any]) -> bool:
    nxt = _next_args(c, op, spec)
    if nxt is None:
        return False
    args, c.key = nxt
    c.seq += 1
    c.pending = c.seq
    c.sock.send_multipart(Request(c.seq, op, args, cid=c.cid, token=c.token).encode(), zmq.NOBLOCK)
    return True


def _warm_up(clients: list[_Client], poller: zmq.Poller) -> None:
    """Connect every socket and see one reply on each before the clock starts."""
    for c in clients:
        c.sock.send_multipart(Request(0, P.OP_PING, {}, cid=c.cid).encode())
    waiting = len(clients)
    deadline = time.monotonic() + READY_TIMEOUT
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"warm-up: {waiting} sockets got no reply")
        for sock, _ in poller.poll(int(left * 1000)):
            inbound = decode_inbound(sock.recv_multipart())
            if not isinstance(inbound, Push):
                inbound.unwrap()
                waiting -= 1


class _Tally:
    """What one load process counted in its window."""

    def __init__(self) -> None:
        self.ok = 0
        self.pushes = 0  # holder changes the tracker pushed to watchers: not replies, not errors
        self.errors: Counter[str] = Counter()
        self.acked: list[tuple[str, str]] = []

    def reply(self, c: _Client, frames: list[bytes], now: float, window: tuple[float, float]) -> bool:
        """Count one inbound message; True when it answered the client's outstanding request."""
        try:
            inbound = decode_inbound(frames)
        except ProtocolError:
            self.errors["bad_reply"] += 1
            return False
        if isinstance(inbound, Push):
            self.pushes += 1
            return False
        if inbound.id != c.pending:
            return False  # not ours (cannot happen with one outstanding, but never count it)
        if inbound.error is not None:
            self.errors[str(inbound.error.code)] += 1
            return True
        if window[0] <= now < window[1]:
            self.ok += 1
        if c.key is not None:
            self.acked.append(c.key)
        return True


def _drive(
    clients: list[_Client], poller: zmq.Poller, spec: dict[str, Any], go: dict[str, float]
) -> dict[str, Any]:
    """The closed loop: count ok replies inside [start, end); keep writing until ``stop`` and
    wait for the last replies until ``drain``, recording every acknowledged write."""
    op = spec["op"]
    start, end, stop, drain = go["start"], go["end"], go["stop"], go["drain"]
    by_sock = {c.sock: c for c in clients}
    tally = _Tally()
    sleep_until(start)
    cpu0, cpu1 = own_cpu(), None
    active = sum(_send_next(c, op, spec) for c in clients)
    while active:
        now = time.time()
        if cpu1 is None and now >= end:
            cpu1 = own_cpu()
        if now >= drain:
            break
        for sock, _ in poller.poll(int(min(100.0, (drain - now) * 1000)) + 1):
            c = by_sock[sock]
            if not tally.reply(c, sock.recv_multipart(), time.time(), (start, end)):
                continue
            if time.time() >= stop:
                active -= 1
            elif not _send_next(c, op, spec):
                tally.errors["out_of_targets"] += 1
                active -= 1
    cpu = (own_cpu() if cpu1 is None else cpu1) - cpu0
    return {
        "ok": tally.ok,
        "errors": dict(tally.errors),
        "acked": tally.acked,
        "pushes": tally.pushes,
        "cpu_s": cpu,
        "unanswered": active,
    }


def load_main() -> int:
    """One load process: spec on the first stdin line, ready report, go line, result report."""
    line = sys.stdin.readline()
    if not line:
        return 1
    spec = orjson.loads(line)
    ctx = zmq.Context()
    clients: list[_Client] = []
    try:
        clients = [_Client(ctx, spec, *c) for c in spec["clients"]]
        poller = zmq.Poller()
        for c in clients:
            poller.register(c.sock, zmq.POLLIN)
        _warm_up(clients, poller)
        report(ready=True)
        line = sys.stdin.readline()
        if not line:
            return 1  # parent gone before the start
        report(**_drive(clients, poller, spec, orjson.loads(line)))
        return 0
    finally:
        for c in clients:
            c.sock.close(linger=0)
        ctx.term()


if __name__ == "__main__":
    if sys.argv[1:] == ["load"]:
        sys.exit(load_main())
    if sys.argv[1:] == ["echo"]:
        sys.exit(echo_main())
    sys.exit("usage: bench_loadgen.py load|echo (started by bench_control, spec on stdin)")
