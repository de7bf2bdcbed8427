"""Background swarm for driving by hand: scripts/swarm start | status | stop.

start: a tracker (or, with --trackers N, a throwaway PostgreSQL cluster and N trackers sharing
it) and M peers (users peer1..peerM, password 'pw', all in group 'swarm', peer1 its admin) as
background processes that keep serving; what was started goes to swarm.json as it starts, so
stop (or a failed start) ends exactly those processes (SIGTERM, then SIGKILL after a grace
period) and stops the PostgreSQL cluster.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Any

import orjson

from launch.background import TRACKER_READY, spawn, wait_line
from launch.pgcluster import PgCluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "pw"
GROUP = "swarm"


def peer_argv(trackers: str, key: str, home: str, commands: list[str], stay: bool) -> list[str]:
    argv = [sys.executable, "-m", "peer", "--tracker", trackers, f"--tracker-key={key}", "--home", home]
    for c in commands:
        argv += ["-c", c]
    return [*argv, "--stay"] if stay else argv


class Record:
    """swarm.json, written after every process started, so a failed start can be undone."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, "swarm.json")
        self.data: dict[str, Any] = {"trackers": [], "peers": [], "postgres": None}

    def save(self) -> None:
        with open(self.path, "wb") as f:
            f.write(orjson.dumps(self.data, option=orjson.OPT_INDENT_2))


def start_trackers(args: argparse.Namespace, record: Record) -> tuple[str, str]:
    """The trackers (and their PostgreSQL); (comma-separated endpoints, their key)."""
    db = os.path.join(args.dir, "tracker.db")
    if args.trackers > 1:
        # Durable settings (it is a demo, not a test); in the system's temporary folder, which the
        # postgres user can reach whatever the rights on --dir.
        cluster = PgCluster()
        record.data["postgres"] = {"dir": cluster.dir, "port": cluster.port}
        record.save()
        db = cluster.create_database("torrent")
    endpoints, key = [], ""
    for i in range(1, args.trackers + 1):
        log = os.path.join(args.dir, f"tracker{i}.log")
        bind = args.bind if args.trackers == 1 else "tcp://127.0.0.1:0"
        argv = [sys.executable, "-m", "tracker", "--bind", bind, "--db", db]
        t = spawn([*argv, "--keys", os.path.join(args.dir, "keys")], log, ROOT)
        record.data["trackers"].append({"pid": t.pid, "log": log})
        record.save()
        ready = wait_line(log, TRACKER_READY, t)
        endpoints.append(ready.group(1))
        key = ready.group(2)
        record.data["trackers"][-1].update(endpoint=ready.group(1), key=key)
    record.save()
    return ",".join(endpoints), key


def start_peers(args: argparse.Namespace, record: Record, trackers: str, key: str) -> None:
    procs = []
    for i in range(1, args.peers + 1):
        name = f"peer{i}"
        home = os.path.join(args.dir, name)
        cmds = [f"create_user {name} {PASSWORD}", f"login {name} {PASSWORD}"]
        cmds.append(f"create_group {GROUP}" if i == 1 else f"join_group {GROUP}")
        cmds.append("status")
        p = spawn(peer_argv(trackers, key, home, cmds, stay=True), os.path.join(home, "console.log"), ROOT)
        record.data["peers"].append({"name": name, "pid": p.pid, "home": home, "password": PASSWORD})
        record.save()
        procs.append((name, home, p))
        if i == 1:  # the group must exist before anyone asks to join it
            wait_line(os.path.join(home, "console.log"), r"serving on", p)
    for (name, home, p), entry in zip(procs, record.data["peers"], strict=True):
        log = os.path.join(home, "console.log")
        entry["endpoint"] = wait_line(log, r"serving on (tcp://\S+) ", p).group(1)
        with open(log, encoding="utf-8", errors="replace") as f:
            if "error:" in f.read():
                print(f"warning: {name} reported errors; see {log}", file=sys.stderr)
    record.save()
    # Admit everyone: a short-lived second session of the admin does it.
    accepts = [f"login peer1 {PASSWORD}"] + [
        f"accept_request {GROUP} peer{i}" for i in range(2, args.peers + 1)
    ]
    admin = subprocess.run(
        peer_argv(trackers, key, os.path.join(args.dir, "admin-session"), accepts, stay=False),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if admin.returncode != 0:
        print(admin.stderr, file=sys.stderr)


def start(args: argparse.Namespace) -> int:
    record = Record(args.dir)
    if os.path.exists(record.path):
        print(
            f"error: a swarm is already recorded in {record.path}; run scripts/swarm stop first",
            file=sys.stderr,
        )
        return 1
    os.makedirs(args.dir, exist_ok=True)
    try:
        trackers, key = start_trackers(args, record)
        start_peers(args, record, trackers, key)
    except BaseException:
        print("error: the swarm did not start; stopping what did", file=sys.stderr)
        stop(args)
        raise
    for t in record.data["trackers"]:
        print(f"tracker {t['endpoint']} (pid {t['pid']})")
    for p in record.data["peers"]:
        print(f"{p['name']}: {p['endpoint']} (pid {p['pid']}, home {p['home']})")
    print(f"state: {record.path}")
    print(f"tracker key {key}")
    attach = f"scripts/peer --tracker {trackers} --tracker-key='{key}' --home {args.dir}/me"
    print(f"attach: {attach}   then: login peer1 {PASSWORD}")
    return 0


def _is_ours(pid: int) -> bool:
    """Only signal a pid that is still one of our tracker/peer processes (pids get reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")
    except OSError:
        return False
    return b"-m" in cmd and (b"peer" in cmd or b"tracker" in cmd)


def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = orjson.loads(f.read())
            return data
    except FileNotFoundError:
        return None


def stop(args: argparse.Namespace) -> int:
    path = os.path.join(args.dir, "swarm.json")
    data = _load(path)
    if data is None:
        print(f"no swarm recorded in {path}")
        return 0
    pids = [p["pid"] for p in data["peers"]] + [t["pid"] for t in data["trackers"]]
    live = [pid for pid in pids if _is_ours(pid)]
    for pid in live:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_is_ours(pid) for pid in live):
        time.sleep(0.1)
    for pid in live:
        if _is_ours(pid):
            os.kill(pid, signal.SIGKILL)
    if data.get("postgres"):
        PgCluster.stop_cluster(data["postgres"]["dir"])
    os.remove(path)
    print(f"stopped {len(live)} processes" + (" and the PostgreSQL cluster" if data.get("postgres") else ""))
    return 0


def status(args: argparse.Namespace) -> int:
    data = _load(os.path.join(args.dir, "swarm.json"))
    if data is None:
        print("no swarm running")
        return 1
    for t in data["trackers"]:
        print(f"tracker {t.get('endpoint', '?')} pid {t['pid']} {'up' if _is_ours(t['pid']) else 'DOWN'}")
    if data.get("postgres"):
        print(f"postgresql on 127.0.0.1:{data['postgres']['port']} ({data['postgres']['dir']})")
    for p in data["peers"]:
        print(f"{p['name']} {p.get('endpoint', '?')} pid {p['pid']} {'up' if _is_ours(p['pid']) else 'DOWN'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/swarm", description=__doc__)
    ap.add_argument("action", choices=("start", "stop", "status"))
    ap.add_argument("--peers", type=int, default=3)
    ap.add_argument(
        "--trackers", type=int, default=1, help="2 or more: a PostgreSQL cluster and that many trackers"
    )
    ap.add_argument(
        "--bind", default="tcp://127.0.0.1:0", help="tracker endpoint (one tracker; default: a free port)"
    )
    ap.add_argument("--dir", default=os.path.join(ROOT, "data", "swarm"))
    args = ap.parse_args(argv)
    if args.trackers < 1 or args.peers < 1:
        ap.error("--trackers and --peers must be at least 1")
    args.dir = os.path.abspath(args.dir)
    return {"start": start, "stop": stop, "status": status}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
