"""The demo as CI runs it: small, real processes, and its checks really fail when they should."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from harness import ROOT

pytestmark = pytest.mark.slow


def run_demo(tmp_path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, os.path.join(ROOT, "scripts", "demo.py"), "--size", "8M", "--peers", "4"]
    argv += ["--piece-size", "256K", "--dir", str(tmp_path / "demo"), *extra]
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=240, cwd=ROOT)


def test_demo_small_swarm_verifies_every_copy(tmp_path) -> None:
    r = run_demo(tmp_path, "--seeders", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all verified" in r.stdout
    for name in ("peer3", "peer4"):
        line = next(line for line in r.stdout.splitlines() if f"│ {name}" in line)
        assert "identical" in line and "peer1:" in line and "peer2:" in line
    # Every process it started is gone.
    assert processes_mentioning(str(tmp_path / "demo")) == []


def test_demo_cluster_survives_a_killed_tracker(tmp_path) -> None:
    """Two trackers on one PostgreSQL; tracker1 is SIGKILLed mid-download: every copy is still
    identical, nobody printed an error, and every downloader ends on tracker2."""
    r = run_demo(tmp_path, "--seeders", "2", "--trackers", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "killed tracker1" in r.stdout
    for name in ("peer3", "peer4"):
        line = next(line for line in r.stdout.splitlines() if f"│ {name}" in line)
        assert "identical" in line and "tracker2 (" in line, line
    assert "error" not in r.stdout.lower()
    assert processes_mentioning(str(tmp_path / "demo")) == []


def processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_demo_fails_loudly_when_seeders_serve_corrupt_data(tmp_path) -> None:
    r = run_demo(tmp_path, "--plant-corruption")
    assert r.returncode != 0
    assert "FAILED" in r.stdout and "CHECK FAILED" in r.stdout
    assert "no online peer holds" in r.stdout


def test_demo_fails_when_every_holder_is_killed(tmp_path) -> None:
    r = run_demo(tmp_path, "--kill-seeders")
    assert r.returncode != 0
    assert "CHECK FAILED" in r.stdout


@pytest.mark.parametrize("trackers", [1, 2], ids=["one-tracker", "cluster"])
def test_swarm_start_attach_and_stop(tmp_path, trackers: int) -> None:
    swarm_dir = str(tmp_path / "swarm")
    script = os.path.join(ROOT, "scripts", "swarm.py")

    def swarm(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, script, *args, "--dir", swarm_dir]
        return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)

    started = swarm("start", "--peers", "3", "--trackers", str(trackers))
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        with open(os.path.join(swarm_dir, "swarm.json"), "rb") as f:
            record = orjson.loads(f.read())
        pids = [t["pid"] for t in record["trackers"]] + [p["pid"] for p in record["peers"]]
        assert len(pids) == 3 + trackers
        assert all(os.path.exists(f"/proc/{pid}") for pid in pids)
        # Attach from another "terminal": a one-shot shell as the admin sees all three members.
        tracker = ",".join(t["endpoint"] for t in record["trackers"])
        key = record["trackers"][0]["key"]
        argv = [
            sys.executable,
            "-m",
            "peer",
            "--tracker",
            tracker,
            f"--tracker-key={key}",
            "--home",
            str(tmp_path / "me"),
        ]
        argv += ["-c", "login peer1 pw", "-c", "list_groups"]
        attached = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert attached.returncode == 0, attached.stderr
        assert "swarm\tadmin=peer1\tmembers=3\tadmin" in attached.stdout
    finally:
        stopped = swarm("stop")
    assert stopped.returncode == 0 and f"stopped {3 + trackers} processes" in stopped.stdout
    assert processes_mentioning(swarm_dir) == []
