"""Background swarm for driving by hand: scripts/swarm start | status | stop.

start: a tracker and N peers (users peer1..peerN, password 'pw', all in group 'swarm', peer1 its
admin) as background processes that keep serving; their endpoints and pids go to swarm.json.
stop: ends exactly the processes listed there (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import orjson

from launch.background import TRACKER_READY, spawn, wait_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "pw"
GROUP = "swarm"


def peer_argv(tracker: str, key: str, home: str, commands: list[str], stay: bool) -> list[str]:
    argv = [sys.executable, "-m", "peer", "--tracker", tracker, f"--tracker-key={key}", "--home", home]
    for c in commands:
        argv += ["-c", c]
    return [*argv, "--stay"] if stay else argv


def start(args: argparse.Namespace) -> int:
    state_file = os.path.join(args.dir, "swarm.json")
    if os.path.exists(state_file):
        print(
            f"error: a swarm is already recorded in {state_file}; run scripts/swarm stop first",
            file=sys.stderr,
        )
        return 1
    os.makedirs(args.dir, exist_ok=True)
    tlog = os.path.join(args.dir, "tracker.log")
    tracker = spawn(
        [sys.executable, "-m", "tracker", "--bind", args.bind, "--db", os.path.join(args.dir, "tracker.db")],
        tlog,
        ROOT,
    )
    ready = wait_line(tlog, TRACKER_READY, tracker)
    endpoint, key = ready.group(1), ready.group(2)
    record = {"tracker": {"endpoint": endpoint, "key": key, "pid": tracker.pid, "log": tlog}, "peers": []}
    procs = []
    for i in range(1, args.peers + 1):
        name = f"peer{i}"
        home = os.path.join(args.dir, name)
        cmds = [f"create_user {name} {PASSWORD}", f"login {name} {PASSWORD}"]
        cmds.append(f"create_group {GROUP}" if i == 1 else f"join_group {GROUP}")
        cmds.append("status")
        p = spawn(peer_argv(endpoint, key, home, cmds, stay=True), os.path.join(home, "console.log"), ROOT)
        procs.append((name, home, p))
        if i == 1:  # the group must exist before anyone asks to join it
            wait_line(os.path.join(home, "console.log"), r"serving on", p)
    for name, home, p in procs:
        log = os.path.join(home, "console.log")
        ep = wait_line(log, r"serving on (tcp://\S+) ", p).group(1)
        with open(log, encoding="utf-8", errors="replace") as f:
            if "error:" in f.read():
                print(f"warning: {name} reported errors; see {log}", file=sys.stderr)
        record["peers"].append(
            {"name": name, "pid": p.pid, "home": home, "endpoint": ep, "password": PASSWORD}
        )
    # Admit everyone: a short-lived second session of the admin does it.
    accepts = [f"login peer1 {PASSWORD}"] + [
        f"accept_request {GROUP} peer{i}" for i in range(2, args.peers + 1)
    ]
    admin = subprocess.run(
        peer_argv(endpoint, key, os.path.join(args.dir, "admin-session"), accepts, stay=False),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if admin.returncode != 0:
        print(admin.stderr, file=sys.stderr)
    with open(state_file, "wb") as f:
        f.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    print(f"tracker {endpoint} (pid {tracker.pid})")
    for p in record["peers"]:
        print(f"{p['name']}: {p['endpoint']} (pid {p['pid']}, home {p['home']})")
    print(f"state: {state_file}")
    print(f"tracker key {key}")
    print(
        f"attach: scripts/peer --tracker {endpoint} --tracker-key='{key}' --home {args.dir}/me   "
        f"then: login peer1 {PASSWORD}"
    )
    return 0


def _is_ours(pid: int) -> bool:
    """Only signal a pid that is still one of our tracker/peer processes (pids get reused)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")
    except OSError:
        return False
    return b"-m" in cmd and (b"peer" in cmd or b"tracker" in cmd)


def stop(args: argparse.Namespace) -> int:
    state_file = os.path.join(args.dir, "swarm.json")
    try:
        with open(state_file, "rb") as f:
            record = orjson.loads(f.read())
    except FileNotFoundError:
        print(f"no swarm recorded in {state_file}")
        return 0
    pids = [p["pid"] for p in record["peers"]] + [record["tracker"]["pid"]]
    live = [pid for pid in pids if _is_ours(pid)]
    for pid in live:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_is_ours(pid) for pid in live):
        time.sleep(0.1)
    for pid in live:
        if _is_ours(pid):
            os.kill(pid, signal.SIGKILL)
    os.remove(state_file)
    print(f"stopped {len(live)} processes")
    return 0


def status(args: argparse.Namespace) -> int:
    state_file = os.path.join(args.dir, "swarm.json")
    if not os.path.exists(state_file):
        print("no swarm running")
        return 1
    with open(state_file, "rb") as f:
        record = orjson.loads(f.read())
    t = record["tracker"]
    print(f"tracker {t['endpoint']} pid {t['pid']} {'up' if _is_ours(t['pid']) else 'DOWN'}")
    for p in record["peers"]:
        print(f"{p['name']} {p['endpoint']} pid {p['pid']} {'up' if _is_ours(p['pid']) else 'DOWN'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/swarm", description=__doc__)
    ap.add_argument("action", choices=("start", "stop", "status"))
    ap.add_argument("--peers", type=int, default=3)
    ap.add_argument("--bind", default="tcp://127.0.0.1:0", help="tracker endpoint (default: a free port)")
    ap.add_argument("--dir", default=os.path.join(ROOT, "data", "swarm"))
    args = ap.parse_args(argv)
    args.dir = os.path.abspath(args.dir)
    return {"start": start, "stop": stop, "status": status}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
