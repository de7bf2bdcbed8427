"""scripts/bench --scale: the tracker at the sizes of issue 11, simulated peers on the wire.

A real tracker process serves a SQLite state written beforehand (``scale_state``): 10,000
users online, 100,000 files in 100 groups (one of 20,000 files), 20,000 groups in all. Load
processes (``scale_load``) keep the 10,000 simulated peers online (announce, then a heartbeat a
second each) and probe list_files and holders at a fixed rate, while 500 real logins are fired
at once; every request's latency is recorded by phase (before, during and after the burst).
Then: complete listings of the 20,000 files and 20,000 groups, a real download of a file with
2,000 holders (simulated sessions speaking from real seeders' keys and announcing their
endpoints), and a swarm of one real seeder and 60 real downloaders that leave as they finish.
Beside them: accept_request in groups of 100 and 10,000 members, and a peer's cost per upload
at 250 and 1,750 shares. Figures are printed and written as JSON (``--json``).

Every process it starts is stopped on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import signal
import sys
import time
from collections import Counter
from typing import Any

import orjson
import scale_micro
import scale_report
import scale_state
import scale_swarm
import zmq
from rich.console import Console
from scale_cpu import CpuMeter
from scale_load import merge, percentile
from scale_ping import Pinger
from scale_state import FULL, QUICK, Sizes, State

from broker.client import ControlClient
from broker.keys import KeyPair, load_or_create
from broker.trackers import TrackerSet
from launch.processes import Process, ShellProcess, TrackerProcess
from messages import protocol as P

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = KeyPair.generate()  # every simulated session not behind a real seeder speaks from it
START_TIMEOUT = 180.0  # load processes: start, connect, announce every session
LOGIN_TIMEOUT = 180.0  # the whole burst of logins
PHASES = ("before", "burst", "after", "listings", "download")
LATENCY_OPS = (P.OP_HEARTBEAT, P.OP_LIST_FILES, P.OP_HOLDERS)


class ScaleBench:
    """Owns every child process; ``close`` stops them all."""

    def __init__(self, sizes: Sizes, workdir: str, console: Console) -> None:
        self.s = sizes
        self.workdir = workdir
        self.console = console
        self.children: list[Process] = []
        self.loads: list[Process] = []
        self.ctx = zmq.Context()
        self.results: dict[str, Any] = {"sizes": dataclasses.asdict(sizes)}
        self.tracker: TrackerProcess | None = None
        self.started = time.monotonic()
        self.cpu = CpuMeter(self.cpu_groups)

    def cpu_groups(self) -> dict[str, list[int]]:
        return {
            "tracker": [self.tracker.pid] if self.tracker is not None else [],
            "loads": [p.pid for p in self.loads],
            "peers": [p.pid for p in self.children if isinstance(p, ShellProcess)],
        }

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.started:6.1f}s[/] {text}", highlight=False)

    # --- processes --------------------------------------------------------------------------
    def peer(self, name: str) -> ShellProcess:
        assert self.tracker is not None
        home = os.path.join(self.workdir, "peers", name)
        args = ("--piece-size", str(self.s.piece_size))
        p = ShellProcess(self.tracker.endpoint, home, *args, key=self.tracker.key, name=name, cwd=ROOT)
        self.children.append(p)
        return p

    def load(self, name: str, spec: dict[str, Any]) -> Process:
        path = os.path.join(self.workdir, f"{name}.json")
        with open(path, "wb") as f:
            f.write(orjson.dumps(spec))
        p = Process([sys.executable, os.path.join(HERE, "scale_load.py")], name, stdin=True, cwd=ROOT)
        self.children.append(p)
        self.loads.append(p)
        p.send_line(path)  # a JSON string: the child reads the line as the path
        return p

    def tell(self, cmd: dict[str, Any]) -> None:
        for p in self.loads:
            if p.alive():
                p.send_line(cmd)

    def close(self) -> None:
        for p in reversed(self.children):
            if isinstance(p, ShellProcess) and p.alive() and p.p.stdin and not p.p.stdin.closed:
                try:
                    p.p.stdin.close()  # a shell leaves (logging out) when its input ends
                except OSError:
                    pass
        for p in reversed(self.children):
            p.kill(signal.SIGTERM, timeout=5)
        self.ctx.destroy(linger=0)

    # --- the run ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        r, s = self.results, self.s
        self.say("share store: cost of one upload at 250 and 1,750 shares")
        r["sharestore"] = scale_micro.sharestore_cost(os.path.join(self.workdir, "sharestore"))
        state, files = self.build()
        self.tracker = TrackerProcess(self.db, cwd=ROOT, timeout=60)
        self.children.append(self.tracker)
        self.say(f"tracker on {self.tracker.endpoint} (pid {self.tracker.pid})")
        self.say(f"accept_request: groups of {s.accept_small} and {s.accept_big} members")
        r["accept"] = scale_micro.accept_rates(
            self.ctx, self.tracker.endpoint, self.tracker.key, CLIENT, state.owner_token, s.accepts
        )
        self.say(f"{s.holder_seeders} real seeders behind the popular file's {s.holders} holders")
        endpoints = scale_swarm.holder_seeders(self.peer, state, files["popular"])
        for sim in state.peers:
            if sim.key:
                sim.endpoint = endpoints[sim.key - 1]
        log_mark = self.log_size()
        self.online(state)
        self.burst(state)
        self.listings(state)
        self.popular(state, files["popular"])
        stop_mark, stopped = self.log_size(), time.monotonic()
        self.stop_loads()
        r["tracker_log"] = self.dropped_between(log_mark, stop_mark)
        self.crowd_expiry(stop_mark, r["load"]["sessions"], stopped)
        self.say(f"swarm: 1 real seeder, {s.downloaders} real downloaders that leave as they finish")
        pinger = self.pinger()
        r["swarm"] = scale_swarm.swarm(
            self.peer, state, files["swarm"], os.path.join(self.workdir, "out", "swarm"), 600
        )
        r["swarm"]["ping"] = pinger.finish()
        r["elapsed_s"] = time.monotonic() - self.started
        return r

    @property
    def db(self) -> str:
        return os.path.join(self.workdir, "tracker", "tracker.db")

    def build(self) -> tuple[State, dict[str, str]]:
        s = self.s
        shutil.rmtree(os.path.join(self.workdir, "tracker"), ignore_errors=True)
        shutil.rmtree(os.path.join(self.workdir, "peers"), ignore_errors=True)
        files = {
            "popular": scale_state.random_file(
                os.path.join(self.workdir, "files", "popular.bin"), s.popular_size
            ),
            "swarm": scale_state.random_file(os.path.join(self.workdir, "files", "swarm.bin"), s.swarm_size),
        }
        # The real seeders' key pairs first: their holders' sessions are bound to them.
        homes = [os.path.join(self.workdir, "peers", f"hs{k}") for k in range(s.holder_seeders)]
        self.holder_keys = [load_or_create(h, "peer") for h in homes]
        t0 = time.monotonic()
        state = scale_state.build(
            self.db, s, [k.public for k in self.holder_keys], CLIENT.public, files["popular"], files["swarm"]
        )
        self.results["state"] = {"build_s": time.monotonic() - t0, "db_mib": os.path.getsize(self.db) / 2**20}
        self.say(
            f"state: {s.peers} peers, {s.files} files in {s.groups} groups, {s.all_groups} groups in all "
            f"({self.results['state']['build_s']:.1f}s, {self.results['state']['db_mib']:.0f} MiB)"
        )
        return state, files

    # --- simulated peers --------------------------------------------------------------------
    def spec(
        self, state: State, sims: list[dict[str, Any]], rates: dict[str, float], seed: int
    ) -> dict[str, Any]:
        assert self.tracker is not None
        return {
            "endpoint": self.tracker.endpoint,
            "server_key": self.tracker.key,
            "keys": [[CLIENT.public, CLIENT.secret]] + [[k.public, k.secret] for k in self.holder_keys],
            "interval": P.HEARTBEAT_INTERVAL,
            "per_socket": self.s.per_socket,
            "popular": [state.popular_group, scale_state.POPULAR],
            "rates": rates,
            "sims": sims,
            "seed": seed,
        }

    def online(self, state: State) -> None:
        """Start the load processes; each announces its share of the peers, then heartbeats."""
        s, n = self.s, self.s.procs
        self.cpu.mark("start")
        rates = {P.OP_LIST_FILES: s.list_files_rate / n, P.OP_HOLDERS: s.holders_rate / n}
        t0 = time.monotonic()
        for i in range(n):
            sims = [dataclasses.asdict(p) for p in state.peers[i::n]]
            self.load(f"load{i}", self.spec(state, sims, rates, i))
        ready = [p.json_line("ready", START_TIMEOUT) for p in self.loads]
        seconds = time.monotonic() - t0
        self.results["announce"] = {
            "sessions": sum(x["ready"]["sessions"] for x in ready),
            "seconds": seconds,
            "per_s": len(state.peers) / seconds,
            "refused": sum(x["ready"]["refused"] for x in ready),
        }
        self.say(f"{len(state.peers)} simulated peers online in {seconds:.1f}s (announce and heartbeat)")

    def burst(self, state: State) -> None:
        """Probes on; a quiet window; then, ``bursts`` times, logins all at once and a window
        after them (long enough for a missed lease to show)."""
        s = self.s
        drivers = []
        for b in range(s.bursts):
            users = state.logins[b * s.logins : (b + 1) * s.logins]
            drivers.append(self.load(f"logins{b + 1}", self.spec(state, login_sims(users), {}, 100 + b)))
        for p in drivers:
            p.json_line("ready", START_TIMEOUT)
        self.tell({"probes": True})
        self.phase("before")
        self.say(f"steady state for {s.window:.0f}s")
        time.sleep(s.window)
        rounds = []
        for b, driver in enumerate(drivers, 1):
            self.say(f"burst {b}: {s.logins} logins at once")
            self.phase(f"burst{b}")
            driver.send_line({"go": True})
            done = driver.json_line("logged_in", LOGIN_TIMEOUT)["logged_in"]
            rounds.append(done | {"count": s.logins})
            self.say(f"burst {b}: {done['ok']} ok, {done['failed']} failed in {done['seconds']:.1f}s")
            self.phase(f"after{b}")
            time.sleep(max(s.window, 2 * P.HEARTBEAT_EXPIRY))
        self.results["logins"] = rounds

    def phase(self, name: str | None) -> None:
        """Requests sent from now on count under ``name``; the CPU meter starts a phase too."""
        if name is not None:
            self.tell({"phase": name})
        self.cpu.mark(name)

    # --- listings and the popular file, while the peers stay online -------------------------
    def client(self) -> ControlClient:
        assert self.tracker is not None
        return ControlClient(self.ctx, TrackerSet([self.tracker.endpoint], self.tracker.key, CLIENT))

    def listings(self, state: State) -> None:
        self.phase("listings")
        c = self.client()
        try:
            out = {}
            for op, args in ((P.OP_LIST_FILES, {"group": state.big_group}), (P.OP_LIST_GROUPS, {})):
                out[op] = every_page(c, op, args, state.owner_token)
                self.say(
                    f"{op}: {out[op]['items']} entries in {out[op]['pages']} pages, {out[op]['seconds']:.2f}s"
                )
        finally:
            c.close()
        self.results["listings"] = out

    def popular(self, state: State, src: str) -> None:
        self.phase("download")
        c = self.client()
        try:
            args = {"group": state.popular_group, "file": scale_state.POPULAR}
            listed = c.call(P.OP_HOLDERS, args, token=state.owner_token).unwrap()
        finally:
            c.close()
        self.say(f"popular file: {listed['total']} holders online; a real downloader fetches it")
        row = scale_swarm.popular_download(
            self.peer, state, src, os.path.join(self.workdir, "out", "popular"), 300
        )
        row |= {"holders_total": listed["total"], "sample": len(listed["holders"])}
        self.results["popular"] = row
        self.say(f"popular file: verified={row['verified']} in {row['seconds']:.1f}s")

    def stop_loads(self) -> None:
        self.phase(None)
        self.results["cpu"] = self.cpu.phases
        self.tell({"stop": True})
        reports = [p.json_line("report", 60)["report"] for p in self.loads]
        for p in self.loads:
            p.p.wait(timeout=30)
        self.results["load"] = summarize_loads(reports)
        self.say("simulated peers stopped")

    def log_size(self) -> int:
        path = os.path.join(os.path.dirname(self.db), "tracker.log")
        return os.path.getsize(path) if os.path.exists(path) else 0

    def dropped_between(self, start: int, end: int | None = None) -> dict[str, Any]:
        """What the tracker's log says about silent peers it dropped between two offsets."""
        with open(os.path.join(os.path.dirname(self.db), "tracker.log"), "rb") as f:
            f.seek(start)
            text = f.read(-1 if end is None else end - start).decode("utf-8", "replace")
        drops = [int(n) for n in re.findall(r"(\d+) silent peer\(s\) dropped", text)]
        return {"dropped_peers": sum(drops), "drop_events": len(drops)}

    def pinger(self) -> Pinger:
        assert self.tracker is not None
        p = Pinger(self.ctx, self.tracker.endpoint, self.tracker.key, CLIENT)
        p.start()
        return p

    def crowd_expiry(self, mark: int, sessions: int, stopped: float) -> None:
        """Every simulated peer went silent at once (at ``stopped``): how long the tracker takes
        to drop them all, and how long it takes meanwhile to answer a ping."""
        pinger = self.pinger()
        while time.monotonic() - stopped < 30:
            if self.dropped_between(mark)["dropped_peers"] >= sessions:
                break
            time.sleep(0.2)
        seconds = time.monotonic() - stopped
        time.sleep(0.5)
        ping = pinger.finish()
        self.results["crowd_expiry"] = self.dropped_between(mark) | {"seconds": seconds, "ping": ping}
        self.say(
            f"{sessions} silent sessions dropped {seconds:.1f}s after they stopped; "
            f"ping meanwhile: max {ping.get('max_ms', 0):.0f} ms"
        )


def login_sims(users: list[str]) -> list[dict[str, Any]]:
    """Users who log in (for real) when told, then announce and heartbeat like the others."""
    return [
        {"user": u, "password": scale_state.PASSWORD, "token": None, "key": 0, "group": "",
         "endpoint": scale_state.FAKE_ENDPOINT, "shares": []}
        for u in users
    ]  # fmt: skip


def every_page(c: ControlClient, op: str, args: dict[str, Any], token: str) -> dict[str, Any]:
    """A whole listing, page after page; how many entries, pages and seconds it took."""
    after, items, pages, names = "", 0, 0, set()
    t0 = time.monotonic()
    while True:
        result = c.call(op, {**args, "after": after}, token=token).unwrap()
        pages += 1
        items += len(result["items"])
        names.update(x["name"] for x in result["items"])
        if result["next"] is None:
            break
        after = result["next"]
    return {"items": items, "distinct": len(names), "pages": pages, "seconds": time.monotonic() - t0}


def summarize_loads(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The load processes' reports merged: latency by phase and operation, and presence."""
    hist: dict[tuple[str, str], Counter[int]] = {}
    counts: dict[str, Counter[str]] = {
        "sent": Counter(),
        "ok": Counter(),
        "errors": Counter(),
        "timeouts": Counter(),
    }
    offline: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for rep in reports:
        for phase, st in rep["phases"].items():
            for op, h in st["hist"].items():
                merge(hist.setdefault((phase, op), Counter()), h)
            for what, c in counts.items():
                c.update({f"{phase}/{k}": v for k, v in st[what].items()})
            offline[phase] += st["offline"]
            skipped[phase] += st["skipped"]
    latency = {
        f"{phase}/{op}": {
            "count": sum(h.values()),
            "p50_ms": percentile(h, 0.50),
            "p99_ms": percentile(h, 0.99),
            "max_ms": percentile(h, 1.0),
        }
        for (phase, op), h in sorted(hist.items())
    }
    return {
        "latency": latency,
        "counts": {k: dict(v) for k, v in counts.items()},
        "offline_answers": dict(offline),
        "skipped_heartbeats": dict(skipped),
        "sessions": sum(r["sessions"] for r in reports),
        "online_at_end": sum(r["online_now"] for r in reports),
        "offline_at_end": sum(r["offline_now"] for r in reports),
        "never_answered": sum(r["never_beat"] for r in reports),
        "states": dict(sum((Counter(r["states"]) for r in reports), Counter())),
        "pushes": sum(r["pushes"] for r in reports),
    }


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="scripts/bench --scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--quick", action="store_true", help="tiny sizes (CI): a few hundred peers, 5 downloaders"
    )
    ap.add_argument("--dir", default=os.path.join(ROOT, "data", "bench-scale"), help="work folder")
    ap.add_argument("--json", default=None, help="where to write the figures (default DIR/scale.json)")
    ap.add_argument("--procs", type=int, default=None, help="load processes (default 2)")
    ap.add_argument("--peers", type=int, default=None, help="simulated online peers")
    ap.add_argument("--downloaders", type=int, default=None, help="real downloaders in the swarm")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    overrides = {
        k: v
        for k, v in (("procs", args.procs), ("peers", args.peers), ("downloaders", args.downloaders))
        if v
    }
    sizes = dataclasses.replace(sizes, **overrides)
    console = Console() if sys.stdout.isatty() else Console(width=150)
    os.makedirs(args.dir, exist_ok=True)
    old = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    bench = ScaleBench(sizes, args.dir, console)
    try:
        results = bench.run()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; stopping every process started[/]")
        return 130
    except (RuntimeError, TimeoutError) as exc:
        console.print(f"[red]scale bench failed:[/] {exc}")
        return 1
    finally:
        bench.close()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    results["checks"] = scale_report.checks(results)
    scale_report.print_tables(console, results)
    out = args.json or os.path.join(args.dir, "scale.json")
    with open(out, "wb") as f:
        f.write(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    console.print(f"figures written to {out} ({results['elapsed_s']:.0f}s)")
    return 0 if all(c["met"] for c in results["checks"] if c["kind"] == "correct") else 1


if __name__ == "__main__":
    sys.exit(main())
