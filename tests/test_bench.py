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
