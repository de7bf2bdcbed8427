"""Control-plane throughput: tracker requests per second, reads and durable writes.

A real tracker process is loaded by separate load-generator processes, each driving many DEALER
sockets closed-loop (one request outstanding per socket, as a peer's ControlClient does). A bare
ROUTER that only echoes gives the ceiling of this transport and client on this machine, so the
tracker's figures can be read as "how far below the echo". Writes are checked for durability:
the tracker is SIGKILLed while writes are still in flight, restarted on the same file, and every
acknowledged write must be there.

Smoke run: ``.venv/bin/python scripts/bench_control.py --quick``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import pathlib
import resource
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import zmq

from broker.client import ControlClient
from broker.keys import KeyPair, serve_curve, start_authenticator
from broker.sockets import LIMITS, dealer
from broker.trackers import TrackerSet
from launch.processes import Process, TrackerProcess, report
from messages import protocol as P
from messages.control import Reply, Request
from messages.errors import ProtocolError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUP = "bench"
FILE = "bench.bin"
ADMIN = "admin"
PASSWORD = "bench-pw"
PIECE_SIZE = 512 * 1024
PIECES = 128  # a 64 MiB file: holders answers need no more
CLIENT = KeyPair.generate()  # every simulated client speaks from this key (sessions are bound to it)
READY_TIMEOUT = 30.0  # process start, connect and one warm-up ping per socket
DRAIN = 1.0  # after issuing stops, how long clients wait for their last replies
KILL_TAIL = 0.5  # join phase: clients keep writing this long after the window; the kill lands midway
JOIN_HEADROOM = 1.5  # pre-created join targets, relative to what the create rate says is needed


def control_bench(workdir: str, duration: float = 3.0, clients: int = 50, procs: int = 2) -> dict[str, Any]:
    """Requests/second of the echo ceiling, tracker reads and durable writes, plus a kill -9 check.

    ``workdir`` receives ``tracker.db`` (replaced if present). Besides the documented keys the
    result has ``errors`` (phase -> error code -> count, empty when all went well), ``sigkill``
    (requests in flight when the tracker was killed, writes it committed but never acknowledged)
    and ``detail`` (phase -> rps and CPU use of server and load generators, in % of one core).
    """
    if clients < 1 or not 1 <= procs <= clients:
        raise ValueError("need clients >= 1 and 1 <= procs <= clients")
    os.makedirs(workdir, exist_ok=True)
    db = os.path.join(workdir, "tracker.db")
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(db + suffix)
    run = _Runner(duration, clients, procs)
    ctx = zmq.Context()
    try:
        return run.all(ctx, db)
    finally:
        for p in run.children:
            p.kill()
        ctx.destroy(linger=0)


@dataclass
class _Phase:
    """What one measured run produced, summed over the load processes."""

    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    acked: list[tuple[str, str]] = field(default_factory=list)  # (group, user) of each ok write
    unanswered: int = 0  # requests still outstanding when the clients gave up waiting
    rps: float = 0.0
    server_cpu_pct: float = 0.0
    client_cpu_pct: float = 0.0


@dataclass
class _Setup:
    admin: ControlClient
    admin_token: str
    users: list[tuple[str, str]]  # (name, token) per client


class _Runner:
    """Owns every child process of one benchmark, so the caller can kill them all on any error."""

    def __init__(self, duration: float, clients: int, procs: int) -> None:
        self.duration = duration
        self.clients = clients
        self.procs = procs
        self.children: list[Process] = []
        self.phases: dict[str, _Phase] = {}
        self.server_key = ""

    # --- the benchmark ----------------------------------------------------------------------------
    def all(self, ctx: zmq.Context, db: str) -> dict[str, Any]:
        echo = self._spawn(["echo"], "echo server", stdin=True)
        hello = echo.json_line("endpoint", READY_TIMEOUT)
        endpoint, self.server_key = hello["endpoint"], hello["key"]
        self._phase("echo", endpoint, P.OP_PING, echo.pid, [(f"u{k}", "") for k in range(self.clients)])
        echo.kill()

        tracker = self._start_tracker(db, "tcp://127.0.0.1:0")
        self.server_key = tracker.key
        endpoint = tracker.endpoint
        s = _setup(ctx, TrackerSet([endpoint], tracker.key, CLIENT), self.clients)
        self._phase("tracker_ping", endpoint, P.OP_PING, tracker.pid, s.users)
        self._phase("list_files", endpoint, P.OP_LIST_FILES, tracker.pid, s.users)
        self._phase("holders", endpoint, P.OP_HOLDERS, tracker.pid, s.users, keepalive=lambda: _keepalive(s))
        if not _holders_count(s):
            self.phases["holders"].errors["sharer_went_offline"] += 1
        created = self._phase("create_group", endpoint, P.OP_CREATE_GROUP, tracker.pid, s.users)

        # Join targets: enough for the join run at the rate creates just reached, and more.
        quota = math.ceil(created.rps * (self.duration + KILL_TAIL) * JOIN_HEADROOM / self.clients) + 20
        _pipeline_create(ctx, s.admin.trackers, s.admin_token, [f"j{i}" for i in range(quota * self.clients)])
        joined = self._phase(
            "join_group", endpoint, P.OP_JOIN_GROUP, tracker.pid, s.users, quota=quota, kill=tracker
        )
        s.admin.close()

        restarted = self._start_tracker(db, endpoint)  # same port: the kill must not cost the address
        check = ControlClient(ctx, TrackerSet([restarted.endpoint], restarted.key, CLIENT))
        check.call(P.OP_PING).unwrap()
        check.close()
        found, extra = _count_found(db, created.acked, joined.acked)
        restarted.kill(signal.SIGTERM)

        return {
            "echo_rps": self.phases["echo"].rps,
            "read_list_files_rps": self.phases["list_files"].rps,
            "read_holders_rps": self.phases["holders"].rps,
            "write_create_group_rps": created.rps,
            "write_join_group_rps": joined.rps,
            "writes_acknowledged": len(created.acked) + len(joined.acked),
            "writes_found_after_sigkill": found,
            "errors": {name: dict(ph.errors) for name, ph in self.phases.items() if ph.errors},
            "sigkill": {
                "in_flight_at_kill": joined.unanswered,
                "committed_unacknowledged": extra,  # done but never answered: allowed, clients retry
            },
            "detail": {
                name: {
                    "rps": ph.rps,
                    "server_cpu_pct": ph.server_cpu_pct,
                    "client_cpu_pct": ph.client_cpu_pct,
                }
                for name, ph in self.phases.items()
            },
        }

    # --- one measured run -----------------------------------------------------------------------
    def _phase(
        self,
        name: str,
        endpoint: str,
        op: str,
        server_pid: int,
        users: list[tuple[str, str]],
        *,
        quota: int = 0,
        keepalive: Callable[[], None] | None = None,
        kill: Process | None = None,
    ) -> _Phase:
        """Run ``op`` closed-loop from every client for ``duration`` seconds, all processes at once."""
        loads = []
        for i in range(self.procs):
            mine = [[k, *users[k]] for k in range(i, self.clients, self.procs)]
            spec = {
                "endpoint": endpoint,
                "op": op,
                "label": name,
                "clients": mine,
                "server_key": self.server_key,
            }
            spec["client_keys"] = [CLIENT.public, CLIENT.secret]
            spec |= {"total": self.clients, "quota": quota}
            p = self._spawn(["load"], f"load {name} {i}", stdin=True)
            p.send_line(spec)
            loads.append(p)
        for p in loads:
            p.json_line("ready", READY_TIMEOUT)

        # Barrier: one shared window on the wall clock; every process waits for its start.
        start = time.time() + 0.1
        end = start + self.duration
        stop = end + (KILL_TAIL if kill else 0.0)
        go = {"start": start, "end": end, "stop": stop, "drain": stop + DRAIN}
        for p in loads:
            p.send_line(go)
            assert p.p.stdin is not None
            p.p.stdin.close()
        _sleep_until(start)
        cpu0 = _proc_cpu(server_pid)
        while time.time() < end:
            if keepalive is not None:
                keepalive()
            _sleep_until(min(end, time.time() + 1.0))
        cpu1 = _proc_cpu(server_pid)
        if kill is not None:
            _sleep_until(end + KILL_TAIL / 2)
            kill.kill(signal.SIGKILL)

        phase = _Phase()
        client_cpu = 0.0
        for p in loads:
            report = p.json_line("ok", stop + DRAIN + READY_TIMEOUT - time.time())
            phase.ok += report["ok"]
            phase.errors.update(report["errors"])
            phase.acked += [(g, u) for g, u in report["acked"]]
            client_cpu += report["cpu_s"]
            phase.unanswered += report["unanswered"]
            p.p.wait(timeout=READY_TIMEOUT)
        if phase.unanswered and kill is None:
            phase.errors["unanswered"] += phase.unanswered
        phase.rps = round(phase.ok / self.duration, 1)
        phase.server_cpu_pct = round(100 * (cpu1 - cpu0) / self.duration, 1)
        phase.client_cpu_pct = round(100 * client_cpu / self.duration, 1)
        self.phases[name] = phase
        return phase

    # --- processes -------------------------------------------------------------------------------
    def _spawn(self, args: list[str], name: str, *, stdin: bool = False) -> Process:
        p = Process([sys.executable, os.path.abspath(__file__), *args], name, stdin=stdin, cwd=ROOT)
        self.children.append(p)
        return p

    def _start_tracker(self, db: str, bind: str) -> TrackerProcess:
        p = TrackerProcess(db, bind, cwd=ROOT, timeout=READY_TIMEOUT)  # killed by itself if never ready
        self.children.append(p)
        return p


# --- setup through the real client ---------------------------------------------------------------


def _setup(ctx: zmq.Context, trackers: TrackerSet, clients: int) -> _Setup:
    """Users u0..uN-1 in group "bench" (admin "admin"), one shared file with an online sharer."""
    admin = ControlClient(ctx, trackers)
    admin.call(P.OP_CREATE_USER, {"user": ADMIN, "password": PASSWORD}).unwrap()
    admin_token = admin.call(P.OP_LOGIN, {"user": ADMIN, "password": PASSWORD}).unwrap()["token"]
    admin.call(P.OP_CREATE_GROUP, {"group": GROUP}, token=admin_token).unwrap()
    users = []
    member = ControlClient(ctx, trackers)
    try:
        for k in range(clients):
            user = f"u{k}"
            member.call(P.OP_CREATE_USER, {"user": user, "password": PASSWORD}).unwrap()
            token = member.call(P.OP_LOGIN, {"user": user, "password": PASSWORD}).unwrap()["token"]
            member.call(P.OP_JOIN_GROUP, {"group": GROUP}, token=token).unwrap()
            admin.call(P.OP_ACCEPT_REQUEST, {"group": GROUP, "user": user}, token=admin_token).unwrap()
            users.append((user, token))
    finally:
        member.close()
    # The admin's session is the sharer: every client's holders answer lists it (never yourself).
    s = _Setup(admin, admin_token, users)
    _announce(s, serving=False)
    blob = b"".join(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(PIECES))
    share = {"group": GROUP, "file": FILE, "size": PIECES * PIECE_SIZE, "piece_size": PIECE_SIZE}
    share["root"] = hashlib.sha256(blob).hexdigest()
    admin.call(P.OP_SHARE_FILE, share, token=admin_token).unwrap()
    if _holders_count(s) != 1:
        raise RuntimeError("setup: holders does not list the sharer")
    return s


def _announce(s: _Setup, *, serving: bool) -> None:
    """Put the sharer online (a fake endpoint: nobody downloads), listing the file once shared."""
    shares = [{"group": GROUP, "file": FILE}] if serving else []
    args = {"endpoint": "tcp://127.0.0.1:1", "plain": False, "shares": shares}
    refused = s.admin.call(P.OP_ANNOUNCE, args, token=s.admin_token).unwrap()["refused"]
    if refused:
        raise RuntimeError(f"announce refused: {refused}")


def _keepalive(s: _Setup) -> None:
    """Heartbeat the sharer (presence expires after HEARTBEAT_EXPIRY); announce again if dropped."""
    beat = s.admin.call(P.OP_HEARTBEAT, token=s.admin_token, timeout=2.0, retries=1).unwrap()
    if not beat["online"]:
        _announce(s, serving=True)


def _holders_count(s: _Setup) -> int:
    result = s.admin.call(P.OP_HOLDERS, {"group": GROUP, "file": FILE}, token=s.users[0][1]).unwrap()
    return len(result["holders"])


def _pipeline_create(
    ctx: zmq.Context, trackers: TrackerSet, token: str, names: list[str], window: int = 32
) -> None:
    """Create many groups fast: a window of requests in flight on one socket (the tracker batches
    them into few commits); the window keeps replies below the queue limit the ROUTER drops at."""
    sock = dealer(ctx, trackers.current(), LIMITS["control"], CLIENT, trackers.server_key)
    try:
        sent = done = 0
        while done < len(names):
            while sent < len(names) and sent - done < window:
                req = Request(
                    sent + 1, P.OP_CREATE_GROUP, {"group": names[sent]}, cid="precreate", token=token
                )
                sock.send_multipart(req.encode())
                sent += 1
            if not sock.poll(READY_TIMEOUT * 1000, zmq.POLLIN):
                raise TimeoutError(f"pre-creating groups: no reply in {READY_TIMEOUT}s")
            Reply.decode(sock.recv_multipart()).unwrap()
            done += 1
    finally:
        sock.close(linger=0)


def _count_found(db: str, creates: list[tuple[str, str]], joins: list[tuple[str, str]]) -> tuple[int, int]:
    """How many acknowledged writes the file holds, and how many benchmark writes it holds that
    were never acknowledged. Groups are matched by (name, admin), pending joins by (group, user)."""
    conn = sqlite3.connect(pathlib.Path(db).resolve().as_uri() + "?mode=ro", uri=True)
    try:
        groups = set(conn.execute("SELECT name, admin FROM groups WHERE name LIKE 'c%'"))
        requests = set(conn.execute("SELECT grp, uname FROM requests WHERE grp LIKE 'j%'"))
    finally:
        conn.close()
    found = sum(w in groups for w in creates) + sum(w in requests for w in joins)
    return found, len(groups) + len(requests) - found


# --- small helpers ---------------------------------------------------------------------------------


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


def _proc_cpu(pid: int) -> float:
    """User + system seconds of another process, all threads, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# --- child: echo server ----------------------------------------------------------------------------


def _echo_main() -> int:
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
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        stdin = sys.stdin.fileno()
        poller.register(stdin, zmq.POLLIN)  # EOF when the parent closes it or dies: stop
        while True:
            for what, _ in poller.poll():
                if what == stdin:
                    if not os.read(stdin, 4096):
                        return 0
                    continue
                while True:
                    try:
                        ident, tag, header, *_ = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    reply = orjson.dumps({"id": orjson.loads(header)["id"], "ok": True, "result": {}})
                    sock.send_multipart([ident, tag, reply])
    finally:
        sock.close(linger=0)
        auth.stop()
        ctx.term()


# --- child: load generator -------------------------------------------------------------------------


class _Client:
    """One closed-loop client: a DEALER with exactly one request outstanding."""

    __slots__ = ("cid", "index", "key", "pending", "seq", "sock", "token", "user")

    def __init__(self, ctx: zmq.Context, spec: dict[str, Any], index: int, user: str, token: str) -> None:
        keys = KeyPair(*spec["client_keys"])
        self.sock = dealer(ctx, spec["endpoint"], LIMITS["control"], keys, spec["server_key"])
        label = spec["label"]
        self.cid = f"{label}-{index}"  # ids restart per phase; the tracker's reply cache keys on (cid, id)
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
        for sock, _ in poller.poll(left * 1000):
            Reply.decode(sock.recv_multipart()).unwrap()
            waiting -= 1


def _drive(
    clients: list[_Client], poller: zmq.Poller, spec: dict[str, Any], go: dict[str, float]
) -> dict[str, Any]:
    """The closed loop: count ok replies inside [start, end); keep writing until ``stop`` and
    wait for the last replies until ``drain``, recording every acknowledged write."""
    op = spec["op"]
    start, end, stop, drain = go["start"], go["end"], go["stop"], go["drain"]
    by_sock = {c.sock: c for c in clients}
    ok = 0
    errors: Counter[str] = Counter()
    acked: list[tuple[str, str]] = []
    _sleep_until(start)
    cpu0, cpu1 = _own_cpu(), None
    active = 0
    for c in clients:
        if _send_next(c, op, spec):
            active += 1
    while active:
        now = time.time()
        if cpu1 is None and now >= end:
            cpu1 = _own_cpu()
        if now >= drain:
            break
        for sock, _ in poller.poll(min(100.0, (drain - now) * 1000)):
            c = by_sock[sock]
            frames = sock.recv_multipart()
            now = time.time()
            try:
                reply = Reply.decode(frames)
            except ProtocolError:
                errors["bad_reply"] += 1
            else:
                if reply.id != c.pending:
                    continue  # not ours (cannot happen with one outstanding, but never count it)
                if reply.ok:
                    if start <= now < end:
                        ok += 1
                    if c.key is not None:
                        acked.append(c.key)
                else:
                    assert reply.error is not None
                    errors[str(reply.error.code)] += 1
            if now >= stop:
                active -= 1
            elif not _send_next(c, op, spec):
                errors["out_of_targets"] += 1
                active -= 1
    if cpu1 is None:
        cpu1 = _own_cpu()
    return {"ok": ok, "errors": dict(errors), "acked": acked, "cpu_s": cpu1 - cpu0, "unanswered": active}


def _load_main() -> int:
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


def main(argv: list[str]) -> int:
    if argv and argv[0] == "load":
        return _load_main()
    if argv and argv[0] == "echo":
        return _echo_main()
    ap = argparse.ArgumentParser(description="Print the control-plane benchmark's figures.")
    ap.add_argument("--quick", action="store_true", help="1 s per phase, 10 clients")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per phase (default 3)")
    ap.add_argument("--clients", type=int, default=50, help="closed-loop clients (default 50)")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes (default 2)")
    ap.add_argument("--workdir", help="where tracker.db goes (default: a temporary directory)")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.clients = 1.0, 10
    with tempfile.TemporaryDirectory(prefix="bench-control-") as tmp:
        result = control_bench(args.workdir or tmp, args.duration, args.clients, args.procs)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
