"""Push latencies: how fast a running download learns that a holder died or a new one appeared.

Why: a download is only as good as its list of holders. The tracker drops a holder that missed
its heartbeats (HEARTBEAT_EXPIRY) and pushes the change to every download of that file; a new
share is pushed the same way. With several trackers on one PostgreSQL database the change must
cross trackers (LISTEN/NOTIFY). Target: a dead holder is dropped by downloaders within 3 s.

Setup, all real processes on 127.0.0.1: tracker(s) on a store, a base holder ``b0`` and one
extra holder per repetition (``h1``..``hN``: logged in and group members, sharing nothing yet),
and one downloader that publishes its progress events (``--publish``) to a SUB in this process.
Every holder serves at most ``--rate`` bytes/s (``--upload-limit``), so the download runs all
along. With two trackers the holders use the first and the downloader the second (peers use the
first tracker of their ``--tracker`` list; the downloader gets the list reversed).

Each repetition i, on the same running download:
  (b) ``upload_file`` on h_i; from its acknowledgement to the first event whose ``holders``
      map counts a piece from h_i;
  (a) SIGKILL of h_i; from the kill to the first event whose ``sources`` is lower.
Events are taken at their arrival here. A download publishes at most every EVENT_INTERVAL
(0.1 s) and only from its loop, so each latency is read late by 0 to ~0.1 s (resolution).

Smoke run: ``.venv/bin/python scripts/bench_push.py --quick``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import zmq
from bench_download import make_source
from bench_store import BenchStore, PostgresBench, SqliteBench

from launch.pgcluster import PgCluster
from launch.processes import Process, ShellProcess, TrackerProcess
from messages.events import EVENT_INTERVAL, DownloadState, ProgressEvent
from messages.protocol import HEARTBEAT_EXPIRY, HEARTBEAT_INTERVAL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUP = "push"
WAIT = 15.0  # the most any one change may take before the run is called failed
SETTLE = 0.5  # after the first piece from a new holder, before it is killed


class PushBench:
    """Trackers on ``store``, holders, and one rate-limited download to watch."""

    def __init__(
        self, workdir: str, store: BenchStore, trackers: int, src: str, piece: str, rate: str
    ) -> None:
        self.workdir, self.store, self.src = workdir, store, src
        self.name = os.path.basename(src)
        self.procs: list[Process] = []
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.linger = 0
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.bind("tcp://127.0.0.1:0")
        keys = os.path.join(workdir, "keys")  # one key pair for the trackers of one store
        extra = ("--keys", keys, "--key-bind", "none")
        try:
            for _ in range(trackers):
                self.procs.append(TrackerProcess(store.db, "tcp://127.0.0.1:0", *extra, cwd=ROOT))
        except BaseException:
            self.close()
            raise
        eps = [t.endpoint for t in self.procs if isinstance(t, TrackerProcess)]
        self.key = next(t.key for t in self.procs if isinstance(t, TrackerProcess))
        self.holder_trackers = ",".join(eps)
        self.downloader_trackers = ",".join(reversed(eps))
        self.peer_args = ("--piece-size", piece, "--upload-limit", rate)
        self.holders: list[ShellProcess] = []
        self.downloader: ShellProcess | None = None

    def _peer(self, name: str, trackers: str, *extra: str) -> ShellProcess:
        home = os.path.join(self.workdir, name)
        p = ShellProcess(trackers, home, *extra, key=self.key, name=name, cwd=ROOT)
        self.procs.append(p)
        return p

    @staticmethod
    def _ok(p: ShellProcess, command: str, timeout: float = 120) -> None:
        out = p.run(command, timeout=timeout)
        if out.errors:
            raise RuntimeError(f"{p.name}: {command}: {out.errors[0]}")

    def setup(self, extra_holders: int) -> None:
        """b0 shares the file; h1..hN are members sharing nothing; the downloader is a member."""
        names = ["b0"] + [f"h{i}" for i in range(1, extra_holders + 1)]
        peers = [self._peer(n, self.holder_trackers, *self.peer_args) for n in names]
        sub_ep = self.sub.getsockopt_string(zmq.LAST_ENDPOINT)
        dl = self._peer("dl", self.downloader_trackers, "--publish", sub_ep)
        for p in [*peers, dl]:
            self._ok(p, f"create_user {p.name} pw")
            self._ok(p, f"login {p.name} pw")
        admin = peers[0]
        self._ok(admin, f"create_group {GROUP}")
        for p in [*peers[1:], dl]:
            self._ok(p, f"join_group {GROUP}")
            self._ok(admin, f"accept_request {GROUP} {p.name}")
        self._ok(admin, f"upload_file {self.src} {GROUP}")
        self.holders, self.downloader = peers, dl

    def start_download(self) -> None:
        assert self.downloader is not None
        out = os.path.join(self.workdir, "out")
        shutil.rmtree(out, ignore_errors=True)
        self._ok(self.downloader, f"download_file {GROUP} {self.name} {out}")
        self.wait_event(lambda e: e.holders.get("b0", 0) > 0, "a first piece from b0")

    def wait_event(self, pred: Callable[[ProgressEvent], bool], what: str) -> tuple[float, ProgressEvent]:
        """Arrival time and the first progress event that satisfies ``pred``."""
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            if not self.sub.poll(int(left * 1000) + 1):
                break
            ev = ProgressEvent.decode(self.sub.recv_multipart())
            t = time.monotonic()
            if ev.state is not DownloadState.RUNNING:
                raise RuntimeError(f"the download ended ({ev.state}) while waiting for {what}")
            if pred(ev):
                return t, ev
        raise TimeoutError(f"no progress event with {what} in {WAIT}s")

    def drain(self) -> ProgressEvent:
        """The newest event, after dropping those queued (their times would be stale)."""
        ev = None
        while self.sub.poll(0):
            ev = ProgressEvent.decode(self.sub.recv_multipart())
        return ev if ev is not None else self.wait_event(lambda e: True, "any event")[1]

    def rep(self, i: int) -> dict[str, float]:
        """One new holder appears (b), then dies (a); both latencies in seconds."""
        h = self.holders[i]
        self.drain()
        t_up = time.monotonic()
        self._ok(h, f"upload_file {self.src} {GROUP}")
        t_ack = time.monotonic()
        t_piece, _ = self.wait_event(lambda e: e.holders.get(h.name, 0) > 0, f"a piece from {h.name}")
        time.sleep(SETTLE)
        before = self.drain().sources
        t_kill = time.monotonic()
        h.kill(signal.SIGKILL)
        t_drop, _ = self.wait_event(lambda e: e.sources < before, f"sources below {before}")
        return {
            "upload_file_s": t_ack - t_up,  # hashing the file and the tracker's commit
            "new_holder_first_piece_s": t_piece - t_ack,
            "dead_holder_dropped_s": t_drop - t_kill,
            "sources_before_kill": before,
        }

    def close(self) -> None:
        for p in reversed(self.procs):
            p.kill()
        self.sub.close(linger=0)
        self.ctx.term()


def push_bench(
    workdir: str, store: BenchStore, trackers: int, src: str, reps: int, piece: str = "256K", rate: str = "2M"
) -> dict[str, Any]:
    """``reps`` repetitions on one running download; every run and the medians."""
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    bench = PushBench(workdir, store, trackers, src, piece, rate)
    try:
        bench.setup(reps)
        bench.start_download()
        runs = [bench.rep(i) for i in range(1, reps + 1)]
    finally:
        bench.close()
    out: dict[str, Any] = {"store": store.kind, "trackers": trackers, "runs": runs}
    for key in ("new_holder_first_piece_s", "dead_holder_dropped_s", "upload_file_s"):
        values = [r[key] for r in runs]
        out[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    out["event_interval_s"] = EVENT_INTERVAL
    out["heartbeat_interval_s"], out["heartbeat_expiry_s"] = HEARTBEAT_INTERVAL, HEARTBEAT_EXPIRY
    return out


def push_rows(workdir: str, src: str, reps: int, rows: tuple[str, ...] = ("sqlite:1", "postgres:2")) -> dict:
    """Each ``store:trackers`` row; one durable PostgreSQL cluster for the postgres rows."""
    out: dict[str, Any] = {}
    cluster = PgCluster() if any(r.startswith("postgres") for r in rows) else None
    try:
        for i, row in enumerate(rows):
            kind, n = row.split(":")
            folder = os.path.join(workdir, f"{kind}-{n}")
            store: BenchStore = SqliteBench(os.path.join(folder, "db"))
            if kind == "postgres":
                assert cluster is not None
                store = PostgresBench(cluster, f"push{i}")
            out[row] = push_bench(folder, store, int(n), src, reps)
    finally:
        if cluster is not None:
            cluster.stop()
    return out


def main(argv: list[str]) -> int:
    from peer.argtypes import parse_size

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5, help="repetitions per row (default 5)")
    ap.add_argument("--rows", default="sqlite:1,postgres:2", help="store:trackers rows")
    ap.add_argument("--size", default="256M", help="file size (default 256M)")
    ap.add_argument("--quick", action="store_true", help="one repetition, 32 MiB")
    ap.add_argument("--dir", default=os.path.join(ROOT, "data", "bench"))
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.quick:
        args.reps, args.size = 1, "32M"
    src = make_source(args.dir, parse_size(args.size))
    result = push_rows(os.path.join(args.dir, "work", "push"), src, args.reps, tuple(args.rows.split(",")))
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    print(text.decode())
    if args.json:
        with open(args.json, "wb") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
