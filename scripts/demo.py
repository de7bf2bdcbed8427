"""The multi-peer demo behind scripts/demo (run that: it sets up the environment first)."""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import shutil
import signal
import sys
import time

import zmq
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from launch.pgcluster import PgCluster
from launch.processes import ShellProcess, TrackerProcess
from messages.errors import ProtocolError
from messages.events import ProgressEvent
from peer.argtypes import parse_size
from peer.view import LiveView

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GROUP = "demo"
PASSWORD = "demo-pw"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    ap.add_argument("--peers", type=int, default=5, help="peer processes (default 5)")
    ap.add_argument("--seeders", type=int, default=3, help="how many of them share the file (default 3)")
    ap.add_argument("--size", type=parse_size, default=parse_size("256M"), help="file size (default 256M)")
    ap.add_argument("--piece-size", default="1M", help="piece size (default 1M)")
    ap.add_argument("--dir", default=os.path.join(ROOT, "data", "demo"), help="where files and peer homes go")
    ap.add_argument("--keep", action="store_true", help="leave the swarm running and say how to attach")
    ap.add_argument(
        "--trackers",
        type=int,
        default=1,
        help="2 or more: that many trackers on one throwaway PostgreSQL; the first is killed mid-download",
    )
    ap.add_argument(
        "--timeout", type=float, default=0, help="give up after this many seconds (default: by size)"
    )
    # Hidden fault injection, for tests of the demo's own checks.
    ap.add_argument("--plant-corruption", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kill-seeders", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peers < 2 or not 1 <= args.seeders < args.peers:
        ap.error("need at least 2 peers and 1 <= seeders < peers")
    if args.trackers < 1:
        ap.error("--trackers must be at least 1")
    if args.trackers > 1 and args.keep:
        ap.error("--keep runs one tracker (the cluster demo kills one and stops PostgreSQL at the end)")
    return args


def source_file(folder: str, size: int) -> str:
    """The demo's random file, made once per size and reused."""
    path = os.path.join(folder, f"demo-{size}.bin")
    if os.path.exists(path) and os.path.getsize(path) == size:
        return path
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 24)
            f.write(os.urandom(n))
            left -= n
    os.replace(tmp, path)
    return path


class Demo:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.run_dir = os.path.join(args.dir, "run")
        self.procs: list = []
        self.trackers: list[TrackerProcess] = []
        self.cluster: PgCluster | None = None
        self.killed: TrackerProcess | None = None
        self.ctx = zmq.Context()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.linger = 0
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.bind("tcp://127.0.0.1:0")
        self.events_ep = self.sub.getsockopt_string(zmq.LAST_ENDPOINT)

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def start(self) -> tuple[list[ShellProcess], list[ShellProcess], str]:
        a = self.args
        shutil.rmtree(self.run_dir, ignore_errors=True)
        os.makedirs(self.run_dir)
        src = source_file(a.dir, a.size)
        self.start_trackers()
        key = self.trackers[0].key
        peers = []
        extra = ["--piece-size", a.piece_size, "--publish", self.events_ep]
        if a.keep:
            extra.append("--stay")
        for i in range(1, a.peers + 1):
            name = f"peer{i}"
            home = os.path.join(self.run_dir, name)
            p = ShellProcess(self.tracker_list(i), home, *extra, key=key, name=name, cwd=ROOT)
            self.procs.append(p)
            peers.append(p)
        for p in peers:
            self.must(p, f"create_user {p.name} {PASSWORD}")
            self.must(p, f"login {p.name} {PASSWORD}")
        admin = peers[0]
        self.must(admin, f"create_group {GROUP}")
        for p in peers[1:]:
            self.must(p, f"join_group {GROUP}")
            self.must(admin, f"accept_request {GROUP} {p.name}")
        seeders, downloaders = peers[: a.seeders], peers[a.seeders :]
        shared = src
        if a.plant_corruption:  # seeders share a copy; the copies downloaded are checked against src
            shared = os.path.join(self.run_dir, os.path.basename(src))
            shutil.copyfile(src, shared)
        for p in seeders:
            self.must(p, f"upload_file {shared} {GROUP}", timeout=max(60, a.size / 50e6))
        self.say(f"{len(peers)} peers up; {len(seeders)} share {os.path.basename(src)} ({a.size} bytes)")
        if a.plant_corruption:  # every seeder serves this one file: none can give good pieces
            st = os.stat(shared)
            with open(shared, "r+b") as f:
                f.seek(a.size // 2)
                original = f.read(16)
                f.seek(a.size // 2)
                f.write(bytes(b ^ 0xFF for b in original))
            os.utime(shared, ns=(st.st_atime_ns, st.st_mtime_ns))
            self.say("[yellow]planted corruption in the seeders' file[/]")
        return seeders, downloaders, src

    def start_trackers(self) -> None:
        """One tracker on SQLite, or (--trackers N) a PostgreSQL cluster and N trackers on it."""
        n = self.args.trackers
        db = os.path.join(self.run_dir, "tracker.db")
        extra: list[str] = []
        if n > 1:
            self.cluster = PgCluster()  # durable settings, in the system's temporary folder
            db = self.cluster.create_database("torrent")
            self.say(f"postgresql on 127.0.0.1:{self.cluster.port}")
            extra = ["--keys", os.path.join(self.run_dir, "tracker-keys"), "--key-bind", "none"]
        for _ in range(n):
            t = TrackerProcess(db, "tcp://127.0.0.1:0", *extra, cwd=ROOT)
            t.name = f"tracker{len(self.trackers) + 1}"
            self.procs.append(t)
            self.trackers.append(t)
            self.say(f"{t.name} on {t.endpoint} (pid {t.pid})")

    def tracker_list(self, i: int) -> str:
        """Peer i starts on tracker i mod N and fails over along the rest, so load is spread."""
        eps = [t.endpoint for t in self.trackers]
        k = i % len(eps)
        return ",".join(eps[k:] + eps[:k])

    def tracker_name(self, endpoint: str) -> str:
        return next((t.name for t in self.trackers if t.endpoint == endpoint), endpoint)

    def current_tracker(self, p: ShellProcess) -> str:
        """The tracker a peer uses now, from its status line."""
        for line in p.run("status").lines:
            m = re.search(r"; tracker (\S+);", line)
            if m:
                return self.tracker_name(m.group(1))
        return "?"

    def maybe_kill_tracker(self, view: LiveView) -> None:
        """With a cluster: SIGKILL tracker1 once the downloads are a fifth of the way through."""
        if len(self.trackers) < 2 or self.killed is not None or not view.items:
            return
        if max(t.event.done / max(t.event.total, 1) for t in view.items.values()) >= 0.2:
            self.killed = self.trackers[0]
            self.killed.kill()
            self.say(f"[yellow]killed {self.killed.name} (pid {self.killed.pid}) mid-download[/]")

    def must(self, p: ShellProcess, command: str, timeout: float = 30) -> None:
        out = p.run(command, timeout=timeout)
        if out.errors:
            raise RuntimeError(f"{p.name}: {command}: {out.errors[0]}")

    def download(self, seeders: list[ShellProcess], downloaders: list[ShellProcess], src: str) -> dict:
        name = os.path.basename(src)
        marks = {p.name: len(p.lines) for p in downloaders}
        for p in downloaders:
            self.must(p, f"download_file {GROUP} {name} {os.path.join(self.run_dir, p.name, 'downloads')}")
        if self.args.kill_seeders:
            for s in seeders:
                s.kill()
            self.say("[yellow]killed every seeder[/]")
        view = LiveView()
        deadline = time.monotonic() + (self.args.timeout or max(120.0, self.args.size / 5e6))
        results: dict[str, str] = {}
        pattern = re.compile(rf"(download complete: \[{GROUP}\] |error: download of \[{GROUP}\] )")

        def step() -> bool:
            if self.sub.poll(100):
                while self.sub.poll(0):
                    try:
                        view.apply(ProgressEvent.decode(self.sub.recv_multipart()))
                    except ProtocolError:
                        pass
            self.maybe_kill_tracker(view)
            for p in downloaders:
                if p.name not in results:
                    for line in p.lines[marks[p.name] :]:
                        if pattern.search(line):
                            results[p.name] = line
                    if p.name not in results and not p.alive():
                        results[p.name] = "error: peer process exited"
            if time.monotonic() > deadline:
                for p in downloaders:
                    results.setdefault(p.name, "error: demo timed out")
            return len(results) < len(downloaders)

        if self.console.is_terminal:
            with Live(view.render(), console=self.console, refresh_per_second=8) as live:
                while step():
                    live.update(view.render())
                live.update(view.render())
        else:
            next_print = time.monotonic() + 1
            while step():
                if time.monotonic() >= next_print:
                    for line in view.plain_lines():
                        print(line, flush=True)
                    next_print += 1
            for line in view.plain_lines():  # the final state, however short the run
                print(line, flush=True)
        return results

    def check(self, downloaders: list[ShellProcess], src: str, results: dict[str, str]) -> bool:
        table = Table(title="downloads")
        cluster = len(self.trackers) > 1
        for col in ("peer", "result", "seconds", "MB/s", "pieces from each holder"):
            table.add_column(col)
        if cluster:
            table.add_column("tracker now (started on)")
        ok = True
        for p in downloaders:
            line = results[p.name]
            copy = os.path.join(self.run_dir, p.name, "downloads", os.path.basename(src))
            m = re.search(r"in ([\d.]+)s, ([\d.]+) MB/s; pieces from ([^;)]+)", line)
            where = [self.where(p)] if cluster else []
            if line.startswith("download complete") and m and filecmp.cmp(src, copy, shallow=False):
                table.add_row(p.name, "[green]identical[/]", m.group(1), m.group(2), m.group(3), *where)
            else:
                ok = False
                reason = (
                    line.removeprefix("error: ")
                    if not line.startswith("download complete")
                    else "copy differs"
                )
                table.add_row(p.name, f"[red]FAILED[/] {escape(reason)}", "-", "-", "-", *where)
        self.console.print(table)
        return ok

    def where(self, p: ShellProcess) -> str:
        """Which tracker a peer ended on, after one more request (which fails over, unseen, if
        its tracker is the one killed), and which it started on."""
        if not p.alive():
            return "-"
        first = self.tracker_name(self.tracker_list(int(p.name.removeprefix("peer"))).split(",")[0])
        out = p.run(f"list_files {GROUP}")
        if out.errors:
            return f"[red]{escape(out.errors[0])}[/]"
        return f"{self.current_tracker(p)} ({first})"

    def keep_message(self, tracker_ep: str) -> None:
        pids = " ".join(str(p.pid) for p in self.procs)
        self.say(
            f"\nThe swarm keeps running (pids {pids}).\n"
            f"Attach a shell:  scripts/peer --tracker {tracker_ep} --home {self.run_dir}/attach\n"
            f"  then:          login peer1 {PASSWORD}   (peer1 is the admin of group {GROUP!r})\n"
            f"Stop it:         kill {pids}"
        )

    def stop(self) -> None:
        for p in self.procs:
            if isinstance(p, ShellProcess) and p.alive():
                try:
                    p.finish(timeout=5)
                except Exception:  # noqa: BLE001  (whatever happened, it is killed next)
                    pass
        for p in self.procs:
            if p.alive():
                p.kill(signal.SIGTERM, timeout=5)
        self.sub.close()
        self.ctx.term()
        if self.cluster is not None:
            self.cluster.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # logs: keep table rows on one line
    demo = Demo(args, console)
    keep = False
    try:
        seeders, downloaders, src = demo.start()
        t0 = time.monotonic()
        results = demo.download(seeders, downloaders, src)
        ok = demo.check(downloaders, src, results)
        console.print(
            f"{len(downloaders)} downloads in {time.monotonic() - t0:.1f}s: "
            + ("[green]all verified[/]" if ok else "[red]CHECK FAILED[/]")
        )
        if args.keep and ok:
            keep = True
            demo.keep_message(demo.procs[0].endpoint)
        return 0 if ok else 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; stopping the swarm[/]")
        return 130
    except (RuntimeError, TimeoutError) as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        return 1
    finally:
        if not keep:
            demo.stop()


if __name__ == "__main__":
    sys.exit(main())
