"""Control-plane throughput: tracker requests per second, reads and durable writes.

Real tracker processes (one, or several sharing one PostgreSQL database) are loaded by separate
load-generator processes (``bench_loadgen``), each driving many DEALER sockets closed-loop; the
clients are spread evenly over the trackers. A bare ROUTER that only echoes (one per tracker)
gives the ceiling of this transport and client on this machine, so the tracker's figures can be
read as "how far below the echo". Writes are checked for durability: every tracker is SIGKILLed
while writes are still in flight, the store's server too where it has one (PostgreSQL: an
immediate stop, so it recovers from its WAL), the trackers are restarted on the same store, and
every acknowledged write must be there.

CPU of every phase is measured for the trackers (each), the store's own processes (PostgreSQL's
backends and writers) and the load generators, in % of one core: on a 2-core machine it says
whether a figure is the tracker's limit or the machine's.

Smoke run: ``.venv/bin/python scripts/bench_control.py --quick``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import zmq
from bench_loadgen import FILE, GROUP, READY_TIMEOUT, sleep_until
from bench_store import BenchStore, PostgresBench, SqliteBench, count_found, proc_cpu

from broker.client import ControlClient
from broker.keys import KeyPair
from broker.sockets import LIMITS, dealer
from broker.trackers import TrackerSet
from launch.pgcluster import PgCluster
from launch.processes import Process, TrackerProcess
from messages import protocol as P
from messages.control import Reply, Request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADGEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_loadgen.py")
ADMIN = "admin"
PASSWORD = "bench-pw"
PIECE_SIZE = 512 * 1024
PIECES = 128  # a 64 MiB file: holders answers need no more
CLIENT = KeyPair.generate()  # every simulated client speaks from this key (sessions are bound to it)
DRAIN = 1.0  # after issuing stops, how long clients wait for their last replies
KILL_TAIL = 0.5  # join phase: clients keep writing this long after the window; the kill lands midway
JOIN_HEADROOM = 1.5  # pre-created join targets, relative to what the create rate says is needed
DEFAULT_ROWS = ("sqlite:1", "postgres:1", "postgres:2")


def control_rows(
    workdir: str,
    rows: tuple[str, ...] = DEFAULT_ROWS,
    duration: float = 3.0,
    clients: int = 50,
    procs: int = 2,
) -> dict[str, Any]:
    """Each ``store:trackers`` row, plus the echo ceiling for each tracker count, in one result.

    One durable PostgreSQL cluster (started here, stopped on any exit) serves every postgres row,
    each on a new database. Keys: ``echo`` (servers -> result of ``echo_bench``) and ``rows``
    (row -> result of ``control_bench``), plus ``reads_2_over_1`` where both postgres:1 and
    postgres:2 ran (list_files and holders, each the ratio of requests/s).
    """
    parsed = [(r.split(":")[0], int(r.split(":")[1])) for r in rows]
    if any(kind not in ("sqlite", "postgres") or n < 1 for kind, n in parsed):
        raise ValueError(f"rows must be sqlite:N or postgres:N, not {rows}")
    out: dict[str, Any] = {"echo": {}, "rows": {}}
    for n in sorted({n for _, n in parsed}):
        out["echo"][str(n)] = echo_bench(n, duration, clients, procs)
    cluster = PgCluster() if any(kind == "postgres" for kind, _ in parsed) else None
    try:
        for i, (kind, n) in enumerate(parsed):
            folder = os.path.join(workdir, f"{kind}-{n}")
            store: BenchStore = SqliteBench(folder)
            if kind == "postgres":
                assert cluster is not None
                store = PostgresBench(cluster, f"bench{i}")
            out["rows"][f"{kind}:{n}"] = control_bench(folder, store, n, duration, clients, procs)
    finally:
        if cluster is not None:
            cluster.stop()
    one, two = out["rows"].get("postgres:1"), out["rows"].get("postgres:2")
    if one and two:
        out["reads_2_over_1"] = {
            k: two[k] / one[k] for k in ("read_list_files_rps", "read_holders_rps") if one[k]
        }
    return out


def control_bench(
    workdir: str,
    store: BenchStore,
    trackers: int = 1,
    duration: float = 3.0,
    clients: int = 50,
    procs: int = 2,
) -> dict[str, Any]:
    """Requests/second of tracker reads and durable writes on ``store``, plus a kill -9 check.

    Besides the rps keys the result has ``errors`` (phase -> error code -> count, empty when all
    went well), ``sigkill`` (requests in flight at the kill, writes committed but never
    acknowledged) and ``detail`` (phase -> rps and CPU of trackers, store and load generators).
    """
    if clients < trackers or not 1 <= procs <= clients:
        raise ValueError("need clients >= trackers and 1 <= procs <= clients")
    run = _Runner(workdir, store, trackers, duration, clients, procs)
    ctx = zmq.Context()
    try:
        return run.all(ctx)
    finally:
        for p in run.children:
            p.kill()
        ctx.destroy(linger=0)


def echo_bench(servers: int, duration: float = 3.0, clients: int = 50, procs: int = 2) -> dict[str, Any]:
    """Requests/second through ``servers`` bare echo ROUTERs, clients spread over them: the
    ceiling of transport, client and this machine's cores for that many servers."""
    run = _Runner("", None, servers, duration, clients, procs)
    try:
        echoes = [run.spawn(["echo"], f"echo server {i}") for i in range(servers)]
        hellos = [e.json_line("endpoint", READY_TIMEOUT) for e in echoes]
        run.server_key = hellos[0]["key"]
        run.keys_per_endpoint = {h["endpoint"]: h["key"] for h in hellos}  # each echo has its own key
        users = [(f"u{k}", "") for k in range(clients)]
        ph = run.phase("echo", [h["endpoint"] for h in hellos], P.OP_PING, [e.pid for e in echoes], users)
        return {"rps": ph.rps, **ph.cpu}
    finally:
        for p in run.children:
            p.kill()


@dataclass
class _Phase:
    """What one measured run produced, summed over the load processes."""

    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    acked: list[tuple[str, str]] = field(default_factory=list)  # (group, user) of each ok write
    unanswered: int = 0  # requests still outstanding when the clients gave up waiting
    pushes: int = 0  # holder changes pushed to the clients (watchers of the file): not errors
    rps: float = 0.0
    cpu: dict[str, Any] = field(default_factory=dict)  # % of one core, see _Runner._cpu


@dataclass
class _Setup:
    admin: ControlClient
    admin_token: str
    users: list[tuple[str, str]]  # (name, token) per client


class _Runner:
    """Owns every child process of one benchmark, so the caller can kill them all on any error."""

    def __init__(
        self, workdir: str, store: BenchStore | None, trackers: int, duration: float, clients: int, procs: int
    ) -> None:
        """``store`` None: the servers are echo servers, not trackers."""
        self.workdir, self.store, self.n = workdir, store, trackers
        self.duration, self.clients, self.procs = duration, clients, procs
        self.children: list[Process] = []
        self.phases: dict[str, _Phase] = {}
        self.server_key = ""
        self.keys_per_endpoint: dict[str, str] = {}  # echo servers only: each has its own key

    # --- the benchmark ----------------------------------------------------------------------------
    def all(self, ctx: zmq.Context) -> dict[str, Any]:
        assert self.store is not None
        shutil.rmtree(os.path.join(self.workdir, "keys"), ignore_errors=True)
        trackers = [self._start_tracker("tcp://127.0.0.1:0") for _ in range(self.n)]
        self.server_key = trackers[0].key
        eps, pids = [t.endpoint for t in trackers], [t.pid for t in trackers]
        s = _setup(ctx, TrackerSet([eps[0]], self.server_key, CLIENT), self.clients)
        self.phase("tracker_ping", eps, P.OP_PING, pids, s.users)
        self.phase("list_files", eps, P.OP_LIST_FILES, pids, s.users)
        self.phase("holders", eps, P.OP_HOLDERS, pids, s.users, keepalive=lambda: _keepalive(s))
        if not _holders_count(s):
            self.phases["holders"].errors["sharer_went_offline"] += 1
        created = self.phase("create_group", eps, P.OP_CREATE_GROUP, pids, s.users)

        # Join targets: enough for the join run at the rate creates or reads just reached (a join
        # can be cheaper than a create: it inserts one row into a smaller table), and more.
        rate = max(created.rps, self.phases["list_files"].rps)
        quota = math.ceil(rate * (self.duration + KILL_TAIL) * JOIN_HEADROOM / self.clients) + 20
        _pipeline_create(ctx, s.admin.trackers, s.admin_token, [f"j{i}" for i in range(quota * self.clients)])
        joined = self.phase("join_group", eps, P.OP_JOIN_GROUP, pids, s.users, quota=quota, kill=trackers)
        s.admin.close()
        found, extra = self._after_crash(ctx, eps, created.acked + joined.acked)
        return self._result(created, joined, found, extra)

    def _after_crash(
        self, ctx: zmq.Context, endpoints: list[str], acked: list[tuple[str, str]]
    ) -> tuple[int, int]:
        """Crash the store too, restart every tracker on its port, and count what is stored."""
        assert self.store is not None
        self.store.crash()
        restarted = [self._start_tracker(ep) for ep in endpoints]  # same ports: the kill must not cost them
        for t in restarted:
            check = ControlClient(ctx, TrackerSet([t.endpoint], t.key, CLIENT))
            check.call(P.OP_PING).unwrap()
            check.close()
        creates = [w for w in acked if w[0].startswith("c")]
        found, extra = count_found(self.store, creates, [w for w in acked if w[0].startswith("j")])
        for t in restarted:
            t.kill(signal.SIGTERM)
        return found, extra

    def _result(self, created: _Phase, joined: _Phase, found: int, extra: int) -> dict[str, Any]:
        assert self.store is not None
        return {
            "store": self.store.kind,
            "trackers": self.n,
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
                name: {"rps": ph.rps, "pushes": ph.pushes, **ph.cpu} for name, ph in self.phases.items()
            },
        }

    # --- one measured run -----------------------------------------------------------------------
    def phase(
        self,
        name: str,
        endpoints: list[str],
        op: str,
        server_pids: list[int],
        users: list[tuple[str, str]],
        *,
        quota: int = 0,
        keepalive: Callable[[], None] | None = None,
        kill: list[TrackerProcess] | None = None,
    ) -> _Phase:
        """Run ``op`` closed-loop from every client for ``duration`` seconds, all processes at once;
        client k talks to ``endpoints[k % len(endpoints)]``."""
        loads = self._start_loads(name, endpoints, op, users, quota)
        start = time.time() + 0.1  # one shared window on the wall clock
        end = start + self.duration
        stop = end + (KILL_TAIL if kill else 0.0)
        go = {"start": start, "end": end, "stop": stop, "drain": stop + DRAIN}
        for p in loads:
            p.send_line(go)
            assert p.p.stdin is not None
            p.p.stdin.close()
        sleep_until(start)
        cpu0 = self._cpu(server_pids)
        while time.time() < end:
            if keepalive is not None:
                keepalive()
            sleep_until(min(end, time.time() + 1.0))
        cpu1 = self._cpu(server_pids)
        if kill:
            sleep_until(end + KILL_TAIL / 2)
            for t in kill:
                t.kill(signal.SIGKILL)
        phase, client_s = self._collect(loads, stop, kill is not None)
        pct = 100 / self.duration
        phase.cpu = {k: round(pct * (cpu1[k] - cpu0[k]), 1) for k in ("server", "store")}
        phase.cpu["per_server"] = [
            round(pct * (b - a), 1) for a, b in zip(cpu0["each"], cpu1["each"], strict=True)
        ]
        phase.cpu["client"] = round(pct * client_s, 1)
        self.phases[name] = phase
        return phase

    def _start_loads(
        self, name: str, endpoints: list[str], op: str, users: list[tuple[str, str]], quota: int
    ) -> list[Process]:
        loads = []
        for i in range(self.procs):
            mine = [[k, *users[k], endpoints[k % len(endpoints)]] for k in range(i, self.clients, self.procs)]
            spec: dict[str, Any] = {"op": op, "label": name, "clients": mine, "server_key": self.server_key}
            spec |= {"client_keys": [CLIENT.public, CLIENT.secret], "total": self.clients, "quota": quota}
            if self.keys_per_endpoint:
                spec["keys_per_endpoint"] = self.keys_per_endpoint
            p = self.spawn(["load"], f"load {name} {i}")
            p.send_line(spec)
            loads.append(p)
        for p in loads:
            p.json_line("ready", READY_TIMEOUT)
        return loads

    def _collect(self, loads: list[Process], stop: float, killed: bool) -> tuple[_Phase, float]:
        """Sum the load processes' reports; also their CPU seconds in the window."""
        phase = _Phase()
        client_s = 0.0
        for p in loads:
            got = p.json_line("ok", stop + DRAIN + READY_TIMEOUT - time.time())
            phase.ok += got["ok"]
            phase.errors.update(got["errors"])
            phase.acked += [(g, u) for g, u in got["acked"]]
            phase.pushes += got["pushes"]
            client_s += got["cpu_s"]
            phase.unanswered += got["unanswered"]
            p.p.wait(timeout=READY_TIMEOUT)
        if phase.unanswered and not killed:
            phase.errors["unanswered"] += phase.unanswered
        phase.rps = round(phase.ok / self.duration, 1)
        return phase, client_s

    def _cpu(self, pids: list[int]) -> dict[str, Any]:
        """CPU seconds so far: each server, all servers, and the store's processes."""
        each = [proc_cpu(pid) for pid in pids]
        return {"each": each, "server": sum(each), "store": self.store.cpu_s() if self.store else 0.0}

    # --- processes -------------------------------------------------------------------------------
    def spawn(self, args: list[str], name: str) -> Process:
        p = Process([sys.executable, LOADGEN, *args], name, stdin=True, cwd=ROOT)
        self.children.append(p)
        return p

    def _start_tracker(self, bind: str) -> TrackerProcess:
        assert self.store is not None
        keys = os.path.join(self.workdir, "keys")  # one key pair for all trackers of the store
        extra = ("--keys", keys, "--key-bind", "none")
        p = TrackerProcess(self.store.db, bind, *extra, cwd=ROOT, timeout=READY_TIMEOUT)
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
            if not sock.poll(int(READY_TIMEOUT * 1000), zmq.POLLIN):
                raise TimeoutError(f"pre-creating groups: no reply in {READY_TIMEOUT}s")
            Reply.decode(sock.recv_multipart()).unwrap()
            done += 1
    finally:
        sock.close(linger=0)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="Print the control-plane benchmark's figures.")
    ap.add_argument("--quick", action="store_true", help="1 s per phase, 10 clients")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per phase (default 3)")
    ap.add_argument("--clients", type=int, default=50, help="closed-loop clients (default 50)")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes (default 2)")
    ap.add_argument("--rows", default=",".join(DEFAULT_ROWS), help="store:trackers rows")
    ap.add_argument("--workdir", help="where the state goes (default: a temporary directory)")
    args = ap.parse_args(argv)
    if args.quick:
        args.duration, args.clients = 1.0, 10
    rows = tuple(args.rows.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-control-") as tmp:
        result = control_rows(args.workdir or tmp, rows, args.duration, args.clients, args.procs)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
