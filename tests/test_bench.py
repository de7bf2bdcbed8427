"""scripts/bench --quick runs end to end, so the benchmark cannot rot (no speed is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from harness import ROOT

pytestmark = pytest.mark.slow


def test_bench_quick_runs_and_writes_figures(tmp_path) -> None:
    out = tmp_path / "results.json"
    argv = [sys.executable, os.path.join(ROOT, "scripts", "bench.py"), "--quick"]
    argv += ["--dir", str(tmp_path / "bench"), "--json", str(out)]
    r = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = orjson.loads(out.read_bytes())
    assert {"k1-1M", "k2-1M", "k2-512K"} <= set(results["download"])
    for row in results["download"].values():
        assert row["mb_per_s"]["median"] > 0 and row["peak_rss_mib"]["median"] > 0
    assert results["tcp"]["mb_per_s"]["median"] > 0 and results["zmq"]["mb_per_s"]["median"] > 0
    control = results["control"]
    assert control["writes_acknowledged"] > 0
    assert control["writes_found_after_sigkill"] >= control["writes_acknowledged"]
    assert "Tracker control plane" in r.stdout


def _script(tmp_path, name: str, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / f"{name}.json"
    argv = [sys.executable, os.path.join(ROOT, "scripts", name), *args, "--json", str(out)]
    argv += ["--dir", str(tmp_path / "bench")]
    r = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r, (orjson.loads(out.read_bytes()) if out.exists() else {})


def test_libtorrent_bench_quick_downloads_a_verified_copy(tmp_path) -> None:
    r, rows = _script(tmp_path, "bench_libtorrent.py", "--quick")
    if r.stdout.startswith("skip libtorrent bench"):
        pytest.skip(r.stdout.strip())
    (row,) = rows.values()
    run = row["runs"][0]  # the script itself fails if the copy differs from the source
    assert run["mb_per_s"] > 0 and run["cpu_s"] > 0 and run["peak_rss_mib"] > 0
    assert sum(run["bytes_per_seeder"]) >= 16 << 20


def test_shaped_links_quick_cap_each_link_and_leave_nothing_behind(tmp_path) -> None:
    r, results = _script(tmp_path, "bench_netns.py", "--quick", "--libtorrent", "--prefix", "tbtest-")
    if r.stdout.startswith("skip shaped links"):
        pytest.skip(r.stdout.strip())
    for row in results["tcp"]["alone"] + results["tcp"]["together"]:
        assert 0 < row["achieved_mbit"] <= 1.1 * row["configured_mbit"]  # shaped: never above the rate
    if "libtorrent" in results:
        run = results["libtorrent"]["runs"][0]
        assert sum(run["bytes_per_seeder"]) >= 16 << 20 and min(run["bytes_per_seeder"]) > 0
    names = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True).stdout
    assert "tbtest-" not in names
