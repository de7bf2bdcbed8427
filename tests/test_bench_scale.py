"""scripts/bench --scale --quick runs end to end, so the scale benchmark cannot rot: every row is
there and every download is verified (no speed or latency is asserted: CI machines vary)."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from harness import ROOT

pytestmark = pytest.mark.slow

OPS = ("heartbeat", "list_files", "holders")


def test_scale_bench_quick_measures_every_row_and_verifies_every_download(tmp_path) -> None:
    out = tmp_path / "scale.json"
    argv = [sys.executable, os.path.join(ROOT, "scripts", "bench_scale.py"), "--quick"]
    argv += ["--dir", str(tmp_path / "scale"), "--json", str(out)]
    r = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = orjson.loads(out.read_bytes())
    latency = results["load"]["latency"]
    for phase in ("before", "burst1", "after1"):
        for op in OPS:
            assert latency[f"{phase}/{op}"]["count"] > 0, f"{phase}/{op}"
    sizes = results["sizes"]
    assert results["load"]["sessions"] == sizes["peers"] + sizes["logins"] * sizes["bursts"]
    assert {c["what"] for c in results["checks"]} >= {"logins answered", "swarm downloads verified"}
    assert all(c["met"] for c in results["checks"] if c["kind"] == "correct"), results["checks"]
    swarm = results["swarm"]
    assert swarm["verified"] == swarm["downloaders"] == results["sizes"]["downloaders"]
    assert all(row["verified"] for row in swarm["rows"])
    popular = results["popular"]
    assert popular["verified"] and popular["holders_total"] >= sizes["holders"]
    assert set(results["accept"]) == {"acc-small", "acc-big"}
    assert all(row["per_s"] > 0 for row in results["accept"].values())
    assert set(results["sharestore"]) == {"250", "1750"}
    assert set(results["cpu"]) >= {"before", "burst1", "after1"}
    assert "Issue 11 targets" in r.stdout
