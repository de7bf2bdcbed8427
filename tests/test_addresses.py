"""Addresses that work across hosts: wildcard listeners and IPv6.

The two-host test builds its hosts from network namespaces joined by a veth pair (root and
iproute2 needed; skipped with the reason otherwise) and removes them, whatever happens.
"""

from __future__ import annotations

import importlib
import os
import re
import sys

import pytest
from harness import ROOT, PeerProc, Swarm, make_file, read

from launch.processes import TrackerProcess

pytestmark = pytest.mark.slow


def _netns_module():  # scripts/bench_netns.py: the namespaces the shaped-link bench uses
    scripts = os.path.join(ROOT, "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    return importlib.import_module("bench_netns")


def test_a_wildcard_listener_is_reached_at_the_address_its_requests_come_from(tmp_path) -> None:
    """A holder on another host listens on 0.0.0.0 without --advertise: the tracker lists it at
    the address its requests came from, and a downloader on the tracker's host gets the file.
    The tracker, bound to 0.0.0.0 too, says which addresses other hosts can use."""
    netns = _netns_module()
    try:
        net = netns.ShapedLinks([1000.0], prefix=f"tw{os.getpid() % 100000}-")
        net.__enter__()
    except netns.Skip as exc:
        pytest.skip(str(exc))
    procs: list = []
    try:
        link = net.links[0]  # "host" A: the downloader namespace (tracker, dl); "host" B: the holder
        here, there = ["ip", "netns", "exec", net.downloader_ns], ["ip", "netns", "exec", link.ns]
        keys = str(tmp_path / "keys")
        tracker = TrackerProcess(
            str(tmp_path / "t.db"),
            "tcp://0.0.0.0:0",
            "--keys",
            keys,
            "--key-bind",
            "none",
            cwd=ROOT,
            wrap=here,
        )
        procs.append(tracker)
        port = tracker.endpoint.rsplit(":", 1)[1]
        reach = tracker.wait_for(r"peers elsewhere reach it at: (.*)").group(1)
        assert f"tcp://{link.downloader_addr}:{port}" in reach and "0.0.0.0" not in reach
        holder = PeerProc(
            f"tcp://{link.downloader_addr}:{port}", str(tmp_path / "h"), "--listen", "tcp://0.0.0.0:0",
            key=tracker.key, name="h", cwd=ROOT, wrap=there,
        )  # fmt: skip
        procs.append(holder)
        dl = PeerProc(
            f"tcp://127.0.0.1:{port}", str(tmp_path / "d"), key=tracker.key, name="d", cwd=ROOT, wrap=here
        )
        procs.append(dl)
        for p in (holder, dl):
            p.ok(f"create_user {p.name} pw-{p.name}")
            p.ok(f"login {p.name} pw-{p.name}")
        holder.ok("create_group g")
        dl.ok("join_group g")
        holder.ok("accept_request g d")
        data = make_file(str(tmp_path / "f.bin"), 3_000_000, seed=7)
        holder.ok(f"upload_file {tmp_path}/f.bin g")
        status = holder.ok("status").text
        assert re.search(
            rf"serving on tcp://0\.0\.0\.0:\d+ \(others reach it at tcp://{link.holder_addr}:\d+\)", status
        )
        dl.ok(f"download_file g f.bin {tmp_path}/out")
        line = dl.wait_for(r"download (complete|of \[g\] f.bin failed).*", timeout=60).string
        assert "download complete" in line, line
        assert read(str(tmp_path / "out" / "f.bin")) == data
    finally:
        for p in procs:
            if p.alive():
                p.kill()
        net.__exit__(None, None, None)


def test_tracker_seeders_and_downloads_over_ipv6(tmp_path) -> None:
    swarm = Swarm(str(tmp_path))
    try:
        assert swarm.start_tracker(bind="tcp://[::1]:0").endpoint.startswith("tcp://[::1]:")
        a = swarm.peer("a", "--listen", "tcp://[::1]:0", "--piece-size", "64K")
        b = swarm.peer("b", "--listen", "tcp://[::1]:0")
        swarm.group(a, "g", b)
        data = make_file(f"{swarm.tmp}/f.bin", 1_000_000, seed=6)
        a.ok(f"upload_file {swarm.tmp}/f.bin g")
        assert "serving on tcp://[::1]:" in a.ok("status").text
        b.ok(f"download_file g f.bin {swarm.tmp}/out")
        b.wait_for(r"download complete: \[g\] f.bin", timeout=30)
        assert read(f"{swarm.tmp}/out/f.bin") == data
    finally:
        swarm.close()
