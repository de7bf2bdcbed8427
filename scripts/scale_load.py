"""A load process of ``scripts/bench --scale``: thousands of simulated peers on the wire.

Each simulated peer is a session speaking the control protocol, as a real peer's threads do:
it announces where it listens and what it serves (in batches that fit a message), then
heartbeats every HEARTBEAT_INTERVAL (one heartbeat outstanding at a time, announcing again if
the tracker answers ``online: false``). Users that log in during the run first send a real
login, waiting through BUSY replies with a growing, jittered pause as ``ControlClient`` does.
Probes send list_files and holders at a fixed rate (open loop) so their latency is measured
whatever the tracker's speed. Sessions share a few DEALER sockets per CURVE key (a session is
bound to the key it logged in from); pushes arriving on them are counted and dropped.

Every reply's latency goes into a histogram (0.1 ms buckets) under the phase the parent named
when the request was sent, and the process reports them all when told to stop.

Protocol with the parent, one JSON object a line: stdin gives the spec file's path, then
commands (``{"phase": name}``, ``{"probes": true}``, ``{"go": true}`` to fire the logins,
``{"stop": true}``); stdout gives ``ready`` (every session announced), ``logged_in`` (every
login answered) and ``report``.
"""

from __future__ import annotations

import heapq
import itertools
import os
import random
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import orjson
import zmq

from broker.keys import KeyPair
from broker.sockets import Limits, configure_dealer
from launch.processes import report
from messages import protocol as P
from messages.sizes import chunks

TIMEOUT = P.REQUEST_TIMEOUT  # a request unanswered this long is counted lost (logins: sent again)
ANNOUNCING = 64  # announces in flight per process
SOCKET_LIMITS = Limits(P.CONTROL_MAX_MSG, P.CONTROL_FRAMES, rcvhwm=100_000, sndhwm=100_000)
BUCKETS_PER_MS = 10
TIMER_SLICE = 0.002  # seconds: the loop's timer resolution


# --- latency histograms (shared with the parent) ---------------------------------------------


def bucket(seconds: float) -> int:
    return int(seconds * 1000 * BUCKETS_PER_MS)


def merge(into: Counter[int], hist: dict[Any, int]) -> None:
    for k, n in hist.items():
        into[int(k)] += n


def percentile(hist: Counter[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) in milliseconds, None for an empty histogram."""
    total = sum(hist.values())
    if not total:
        return None
    rank, seen = q * (total - 1), 0
    for k in sorted(hist):
        seen += hist[k]
        if seen > rank:
            return (k + 0.5) / BUCKETS_PER_MS
    return None


# --- the simulated sessions ---------------------------------------------------------------------


@dataclass(slots=True)
class Sim:
    user: str
    token: str | None
    sock: int
    endpoint: str
    batches: list[list[dict[str, str]]]
    group: str
    password: str = ""  # a user that logs in during the run
    state: str = "announce"  # login, announce, online, failed
    beat_out: bool = False
    beating: bool = False  # its heartbeat timer runs
    online: bool | None = None  # what the last heartbeat said
    first_sent: float = 0.0
    pause: float = 0.1
    rid: int = 0  # its login's request id: sent again unchanged, as ControlClient does


@dataclass(slots=True)
class Sent:
    sid: int
    op: str
    at: float
    phase: str
    batch: int = 0


@dataclass
class Stats:
    sent: Counter[str] = field(default_factory=Counter)
    ok: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # "op:code"
    timeouts: Counter[str] = field(default_factory=Counter)
    hist: dict[str, Counter[int]] = field(default_factory=dict)
    offline: int = 0  # heartbeats answered online=false
    skipped: int = 0  # heartbeats not sent: the previous one was still unanswered

    def to_wire(self) -> dict[str, Any]:
        return {
            "sent": dict(self.sent),
            "ok": dict(self.ok),
            "errors": dict(self.errors),
            "timeouts": dict(self.timeouts),
            "hist": {op: {str(k): n for k, n in h.items()} for op, h in self.hist.items()},
            "offline": self.offline,
            "skipped": self.skipped,
        }


class Load:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.interval = float(spec["interval"])
        self.popular = spec["popular"]
        self.ctx = zmq.Context()
        self.socks: list[zmq.Socket] = []
        self.sims: list[Sim] = []
        self._make_sessions(spec)
        self.poller = zmq.Poller()
        for s in self.socks:
            self.poller.register(s, zmq.POLLIN)
        self.by_sock = {s: i for i, s in enumerate(self.socks)}
        self.ids = [itertools.count(1) for _ in self.socks]
        self.cids = [f"c{os.getpid()}-{i}" for i in range(len(self.socks))]
        self.pending: dict[tuple[int, int], Sent] = {}
        self.timers: list[tuple[float, int, int, str]] = []
        self.seq = itertools.count()
        self.to_announce: deque[int] = deque(i for i, s in enumerate(self.sims) if s.state == "announce")
        self.announcing = 0
        self.phase = "start"
        self.stats: dict[str, Stats] = {}
        self.probes = False
        self.next_probe = {"list_files": 0.0, "holders": 0.0}
        self.started = time.monotonic()
        self.announced_at: float | None = None
        self.logins_done_at: float | None = None
        self.pushes = 0
        self.rng = random.Random(spec.get("seed", 0))
        self.stopping = False
        self.buffer = b""
        self.refused = 0
        self.rates: dict[str, float] = dict(spec["rates"])
        self.callers = {
            "list_files": [i for i, s in enumerate(self.sims) if not s.password],
            "holders": [i for i, s in enumerate(self.sims) if _in_popular(s, self.popular)],
        }
        self.ready_sent = False

    def _make_sessions(self, spec: dict[str, Any]) -> None:
        """Sessions grouped by key, ``per_socket`` to a DEALER."""
        by_key: dict[int, list[dict[str, Any]]] = {}
        for item in spec["sims"]:
            by_key.setdefault(item["key"], []).append(item)
        for key, items in sorted(by_key.items()):
            pair = KeyPair(*spec["keys"][key])
            for start in range(0, len(items), spec["per_socket"]):
                sock = self.ctx.socket(zmq.DEALER)
                configure_dealer(sock, SOCKET_LIMITS, pair, spec["server_key"])
                sock.connect(spec["endpoint"])
                self.socks.append(sock)
                for item in items[start : start + spec["per_socket"]]:
                    self.sims.append(_sim(item, len(self.socks) - 1))

    def close(self) -> None:
        for s in self.socks:
            s.close(linger=0)
        self.ctx.term()

    def st(self, phase: str | None = None) -> Stats:
        phase = self.phase if phase is None else phase
        st = self.stats.get(phase)
        if st is None:
            st = self.stats[phase] = Stats()
        return st


def _sim(item: dict[str, Any], sock: int) -> Sim:
    refs = [{"group": g, "file": f} for g, f in item["shares"]]
    batches = list(chunks(refs, P.PAGE_BYTES, P.MAX_SHARES)) or [[]]
    sim = Sim(item["user"], item.get("token"), sock, item["endpoint"], batches, item["group"])
    if item.get("password"):
        sim.password, sim.state = item["password"], "login"
    return sim


class Driver(Load):
    """The event loop: timers (heartbeats, login retries), announces, probes, replies, commands."""

    def run(self) -> None:
        stdin = sys.stdin.fileno()
        self.poller.register(stdin, zmq.POLLIN)
        last_sweep = 0.0
        stop_at = float("inf")
        while True:
            now = time.monotonic()
            if self.stopping:
                stop_at = min(stop_at, now + 1.5)
                if not self.pending or now > stop_at:
                    break
            else:
                self._pump_announces()
                self._run_timers(now)
                self._probe(now)
            if now - last_sweep > 0.5:
                self._sweep(now)
                last_sweep = now
            # Timers fire in slices of TIMER_SLICE (heartbeats a millisecond late are still on
            # time); replies wake the loop at once, so their latency is read to the microsecond.
            wait = 0.05 if not self.timers else min(0.05, max(TIMER_SLICE, self.timers[0][0] - now))
            for what, _ in self.poller.poll(wait * 1000):
                if what == stdin:
                    self._commands(stdin)
                else:
                    self._drain(self.by_sock[what])
        report(report=self._report())

    # --- sending ------------------------------------------------------------------------------
    def send(self, sid: int, op: str, args: dict[str, Any], *, batch: int = 0, rid: int = 0) -> int:
        sim = self.sims[sid]
        rid = rid or next(self.ids[sim.sock])
        header: dict[str, Any] = {"id": rid, "op": op, "cid": self.cids[sim.sock], "args": args}
        if sim.token and op != P.OP_LOGIN:
            header["token"] = sim.token
        sock = self.socks[sim.sock]
        try:
            sock.send(P.CONTROL_TAG, zmq.SNDMORE | zmq.NOBLOCK)
            sock.send(orjson.dumps(header))  # the rest of a message never blocks
        except zmq.Again:
            self.st().errors[f"{op}:send_queue_full"] += 1
            return 0
        self.pending[(sim.sock, rid)] = Sent(sid, op, time.monotonic(), self.phase, batch)
        self.st().sent[op] += 1
        return rid

    def _at(self, due: float, sid: int, action: str) -> None:
        heapq.heappush(self.timers, (due, next(self.seq), sid, action))

    def _pump_announces(self) -> None:
        while self.announcing < ANNOUNCING and self.to_announce:
            sid = self.to_announce.popleft()
            self.announcing += 1
            self._announce(sid, 0)

    def _announce(self, sid: int, batch: int) -> None:
        sim = self.sims[sid]
        args: dict[str, Any] = {"endpoint": sim.endpoint, "plain": False, "shares": sim.batches[batch]}
        if batch:
            args["more"] = True
        self.send(sid, P.OP_ANNOUNCE, args, batch=batch)

    def _run_timers(self, now: float) -> None:
        while self.timers and self.timers[0][0] <= now:
            due, _, sid, action = heapq.heappop(self.timers)
            if action == "beat":
                self._beat(sid, due, now)
            elif action == "login":
                self._login(sid)

    def _beat(self, sid: int, due: float, now: float) -> None:
        sim = self.sims[sid]
        if sim.state == "online":
            if sim.beat_out:
                self.st().skipped += 1
            else:
                sim.beat_out = True
                self.send(sid, P.OP_HEARTBEAT, {})
        nxt = due + self.interval
        self._at(nxt if nxt > now else now + self.interval, sid, "beat")

    def _login(self, sid: int) -> None:
        """A login, or the same login again (same id: a retry while its hash is being computed
        only moves where the tracker sends the reply)."""
        sim = self.sims[sid]
        sim.rid = self.send(sid, P.OP_LOGIN, {"user": sim.user, "password": sim.password}, rid=sim.rid)

    def _probe(self, now: float) -> None:
        if not self.probes:
            return
        for op, rate in self.rates.items():
            if rate <= 0 or not self.callers[op]:
                continue
            if now - self.next_probe[op] > 1.0:
                self.next_probe[op] = now  # fell behind: no burst of catch-up probes
            while self.next_probe[op] <= now:
                self.next_probe[op] += 1.0 / rate
                sid = self.rng.choice(self.callers[op])
                if self.sims[sid].state != "online":
                    continue
                if op == P.OP_LIST_FILES:
                    self.send(sid, op, {"group": self.sims[sid].group})
                else:
                    self.send(sid, op, {"group": self.popular[0], "file": self.popular[1]})

    # --- receiving ----------------------------------------------------------------------------
    def _drain(self, i: int) -> None:
        sock = self.socks[i]
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            now = time.monotonic()
            h = orjson.loads(frames[1])
            if "push" in h:
                self.pushes += 1
                continue
            sent = self.pending.pop((i, h["id"]), None)
            if sent is None:
                continue  # an answer to an attempt given up on
            st = self.st(sent.phase)
            if h["ok"]:
                st.ok[sent.op] += 1
                st.hist.setdefault(sent.op, Counter())[bucket(now - sent.at)] += 1
                self._on_ok(sent, h["result"], now, st)
            else:
                code = str(h["error"]["code"])
                st.errors[f"{sent.op}:{code}"] += 1
                self._on_error(sent, code, now)

    def _on_ok(self, sent: Sent, result: dict[str, Any], now: float, st: Stats) -> None:
        sim = self.sims[sent.sid]
        if sent.op == P.OP_HEARTBEAT:
            sim.beat_out = False
            sim.online = bool(result.get("online"))
            if not sim.online:
                st.offline += 1
                if sim.state == "online":
                    sim.state = "announce"
                    self.to_announce.append(sent.sid)
        elif sent.op == P.OP_ANNOUNCE:
            self.refused += len(result.get("refused", []))
            if sent.batch + 1 < len(sim.batches):
                self._announce(sent.sid, sent.batch + 1)
                return
            self._announced(sent.sid, now)
        elif sent.op == P.OP_LOGIN:
            sim.token, sim.state = str(result["token"]), "announce"
            st.hist.setdefault("login_total", Counter())[bucket(now - sim.first_sent)] += 1
            self.to_announce.append(sent.sid)
            self._logins_over(now)

    def _announced(self, sid: int, now: float) -> None:
        sim = self.sims[sid]
        self.announcing -= 1
        sim.state = "online"
        if not sim.beating:
            sim.beating = True
            self._at(now + self.rng.uniform(0, self.interval), sid, "beat")
        if not self.ready_sent and not self.to_announce and not self.announcing:
            self.ready_sent, self.announced_at = True, now
            report(ready={"sessions": len(self.sims), "seconds": now - self.started, "refused": self.refused})

    def _on_error(self, sent: Sent, code: str, now: float) -> None:
        sim = self.sims[sent.sid]
        if sent.op == P.OP_HEARTBEAT:
            sim.beat_out = False
        elif sent.op == P.OP_ANNOUNCE:
            self.announcing -= 1
            self.to_announce.append(sent.sid)  # from the first batch again
        elif sent.op == P.OP_LOGIN and code == "busy":
            self._at(now + sim.pause * self.rng.uniform(0.5, 1.5), sent.sid, "login")
            sim.pause = min(2.0, sim.pause * 2)
        elif sent.op == P.OP_LOGIN:
            sim.state = "failed"
            self._logins_over(now)

    def _sweep(self, now: float) -> None:
        """Requests unanswered for TIMEOUT: counted; a login or announce is sent again."""
        late = [(k, s) for k, s in self.pending.items() if now - s.at > TIMEOUT]
        for k, s in late:
            del self.pending[k]
            self.st(s.phase).timeouts[s.op] += 1
            sim = self.sims[s.sid]
            if s.op == P.OP_HEARTBEAT:
                sim.beat_out = False
            elif s.op == P.OP_ANNOUNCE:
                self.announcing -= 1
                self.to_announce.append(s.sid)
            elif s.op == P.OP_LOGIN:
                self._login(s.sid)

    def _logins_over(self, now: float) -> None:
        if self.logins_done_at is not None:
            return
        if any(s.password and s.state == "login" for s in self.sims):
            return
        self.logins_done_at = now
        done = [s for s in self.sims if s.password]
        report(
            logged_in={
                "ok": sum(s.state != "failed" for s in done),
                "failed": sum(s.state == "failed" for s in done),
                "seconds": now - min((s.first_sent for s in done), default=now),
            }
        )

    # --- the parent's commands ------------------------------------------------------------------
    def _commands(self, fd: int) -> None:
        data = os.read(fd, 65536)
        if not data:
            self.stopping = True  # the parent is gone
            return
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line.strip():
                self._command(orjson.loads(line))

    def _command(self, cmd: dict[str, Any]) -> None:
        if "phase" in cmd:
            self.phase = str(cmd["phase"])
        if "probes" in cmd:
            self.probes = bool(cmd["probes"])
        if cmd.get("stop"):
            self.stopping = True
        if cmd.get("go"):
            now = time.monotonic()
            for sid, sim in enumerate(self.sims):
                if sim.password:
                    sim.first_sent = now
                    self._login(sid)

    def _report(self) -> dict[str, Any]:
        sims = self.sims
        return {
            "sessions": len(sims),
            "announce_s": None if self.announced_at is None else self.announced_at - self.started,
            "refused": self.refused,
            "phases": {name: st.to_wire() for name, st in self.stats.items()},
            "online_now": sum(s.online is True for s in sims),
            "offline_now": sum(s.online is False for s in sims),
            "never_beat": sum(s.online is None for s in sims),
            "states": dict(Counter(s.state for s in sims)),
            "pushes": self.pushes,
            "unanswered_at_stop": len(self.pending),
        }


def _in_popular(sim: Sim, popular: list[str]) -> bool:
    return not sim.password and (
        sim.group == popular[0] or any(r["file"] == popular[1] for b in sim.batches for r in b)
    )


def main() -> int:
    line = sys.stdin.readline()
    if not line.strip():
        return 1
    with open(orjson.loads(line), "rb") as f:
        spec = orjson.loads(f.read())
    load = Driver(spec)
    try:
        if not any(s.state == "announce" for s in load.sims):
            load.ready_sent = True
            report(ready={"sessions": len(load.sims), "seconds": 0.0, "refused": 0})
        load.run()
    finally:
        load.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
