"""The demo as CI runs it: small, real processes, and its checks really fail when they should."""

from __future__ import annotations

import os
import subprocess
import sys

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
