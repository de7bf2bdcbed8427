"""scripts/bench --quick runs end to end, so the benchmark cannot rot (no speed is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from harness import ROOT

pytestmark = pytest.mark.slow


def test_bench_quick_runs_every_section_and_writes_figures(tmp_path) -> None:
    out = tmp_path / "results.json"
    argv = [sys.executable, os.path.join(ROOT, "scripts", "bench.py"), "--quick"]
    argv += ["--dir", str(tmp_path / "bench"), "--json", str(out)]
    r = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = orjson.loads(out.read_bytes())
    for key in ("tcp", "zmq", "curve", "write", "direct", "sha256", "aesgcm"):
        assert results[key]["mb_per_s"]["median"] > 0, key
    for key in ("tcp", "zmq", "curve"):  # both ends of a transfer report their CPU time
        assert results[key]["sender_cpu_s_per_gb"]["median"] > 0, key
    # Downloads: both page conditions, ours encrypted and plain (every copy verified by the shell,
    # libtorrent's compared byte for byte by its bench, which raises otherwise).
    assert {"k2-1M-recycled", "k2-1M-fresh"} <= set(results["compare"])
    for row in results["compare"].values():
        for name in ("ours", "ours_plain"):
            assert row[name]["mb_per_s"]["median"] > 0 and row[name]["peak_rss_mib"]["median"] > 0
            assert sum(row[name]["runs"][0]["pieces_per_holder"]) == 16
        if "libtorrent" in row:
            assert row["ratio"]["ours_vs_lt"] > 0
    assert any("(memory)" in key for key in results["download"])
    _check_control(results["control"])
    for row in results["push"].values():
        assert 0 < row["dead_holder_dropped_s"]["median"] < 15
        assert 0 < row["new_holder_first_piece_s"]["median"] < 15
    shaped = results["shaped"]
    if "skipped" not in shaped:
        assert sum(shaped["ours"]["pieces_per_holder"]) >= 16
    names = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True).stdout
    assert "tbench-" not in names
    assert "Tracker control plane" in r.stdout and "Pushes seen by a running download" in r.stdout


def _check_control(control: dict) -> None:
    assert set(control["rows"]) == {"sqlite:1", "postgres:1", "postgres:2"}
    for row in control["rows"].values():
        assert row["writes_acknowledged"] > 0
        assert row["writes_found_after_sigkill"] >= row["writes_acknowledged"]
        assert row["read_list_files_rps"] > 0 and row["read_holders_rps"] > 0
        for phase, errors in row["errors"].items():  # join targets may run out in a fast window
            assert set(errors) <= {"out_of_targets"}, (phase, errors)
    assert control["reads_2_over_1"]["read_list_files_rps"] > 0


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
