"""Several trackers on one PostgreSQL database: any of them answers anything, a dead one costs
users nothing they can see. Real processes, a real PostgreSQL (a throwaway cluster)."""

from __future__ import annotations

import random
import signal
import threading
import time

import psycopg
import pytest
from harness import PeerProc, Swarm, make_file, read, wait_until

from broker.client import ControlClient
from broker.keys import KeyPair
from broker.sockets import new_context, term_context
from broker.trackers import TrackerSet
from messages import protocol as P

pytestmark = pytest.mark.slow


def tracker_in_use(p: PeerProc) -> str:
    return p.ok("status").lines[0].split("; tracker ")[1].split(";")[0]


def test_a_write_through_one_tracker_is_read_through_the_other(cluster: Swarm) -> None:
    a_tracker, b_tracker = cluster.trackers
    # alice talks to A only, bob to B only.
    cluster.trackers = [a_tracker]
    alice = cluster.peer("alice", "--piece-size", "64K")
    cluster.trackers = [b_tracker]
    cluster.tracker = b_tracker
    bob = cluster.peer("bob")
    carol = cluster.peer("carol")
    alice.ok("create_group films")  # groups, through A ...
    bob.ok("join_group films")  # ... requests, through B
    assert alice.ok("list_requests films").lines == ["bob"]
    alice.ok("accept_request films bob")  # membership, through A
    assert "films\tadmin=alice\tmembers=2\tmember" in bob.ok("list_groups").lines
    data = make_file(f"{cluster.tmp}/files/talk.mkv", 300_000, seed=7)
    alice.ok(f"upload_file {cluster.tmp}/files/talk.mkv films")  # shares and presence, through A
    assert bob.ok("list_files films").lines[0].startswith("talk.mkv\t300000 bytes")
    wait_until(lambda: "1 online" in bob.ok("list_files films").text, what="alice online, seen by B")
    bob.ok(f"download_file films talk.mkv {cluster.tmp}/out")  # holders and grants, through B
    bob.wait_for(r"download complete: \[films\] talk.mkv")
    assert read(f"{cluster.tmp}/out/talk.mkv") == data
    carol.ok("join_group films")
    alice.ok("reject_request films carol")  # a rejection, through A
    carol.refused("list_files films", "not a member")  # seen through B
    bob.ok("leave_group films")  # leaving, through B
    assert alice.ok("list_groups").lines == ["films\tadmin=alice\tmembers=1\tadmin"]
    bob.ok("logout")  # sessions end everywhere
    alice.ok("stop_share films talk.mkv")
    assert alice.ok("list_files films").lines == ["no files in films"]


def test_a_tracker_killed_mid_download_costs_nothing_visible(cluster: Swarm) -> None:
    holders = [cluster.peer(n, "--piece-size", "256K", "--upload-limit", "8M") for n in ("h1", "h2", "h3")]
    d = cluster.peer("dl")
    cluster.group(holders[0], "g", *holders[1:], d)
    data = make_file(f"{cluster.tmp}/files/big.bin", 64 << 20, seed=3)
    for h in holders:
        h.ok(f"upload_file {cluster.tmp}/files/big.bin g")
    first = cluster.trackers[0]
    assert all(tracker_in_use(p) == first.endpoint for p in [*holders, d])
    d.ok(f"download_file g big.bin {cluster.tmp}/out")
    # ~2.7 s at the holders' capped rates: polls under load are seconds apart at worst
    wait_until(lambda: 0.05 < d.progress("big.bin") < 0.8, timeout=30, what="download under way")
    first.kill(signal.SIGKILL)
    line = d.wait_for(r"download (complete|of \[g\] big.bin failed)", timeout=120).string
    assert "download complete" in line, line
    assert read(f"{cluster.tmp}/out/big.bin") == data
    second = cluster.trackers[1].endpoint
    for p in [*holders, d]:
        assert not [x for x in p.lines if x.startswith("error:")], p.name
        wait_until(
            lambda p=p: tracker_in_use(p) == second, timeout=15, what=f"{p.name} on the second tracker"
        )
    assert "4 online" in d.ok("list_files g").text  # every holder re-announced there, and dl shares it


def test_a_peer_whose_first_tracker_is_down_from_the_start_works(cluster: Swarm) -> None:
    cluster.trackers[0].kill(signal.SIGKILL)
    a = cluster.peer("a")
    b = cluster.peer("b")
    cluster.group(a, "g", b)
    make_file(f"{cluster.tmp}/files/f.bin", 100_000)
    a.ok(f"upload_file {cluster.tmp}/files/f.bin g")
    b.ok(f"download_file g f.bin {cluster.tmp}/out")
    b.wait_for(r"download complete: \[g\] f.bin")
    assert tracker_in_use(a) == cluster.trackers[1].endpoint


def test_both_trackers_down_then_up_state_back_peers_register_again(cluster: Swarm) -> None:
    a = cluster.peer("a")
    b = cluster.peer("b")
    cluster.group(a, "g", b)
    make_file(f"{cluster.tmp}/files/f.bin", 200_000, seed=5)
    a.ok(f"upload_file {cluster.tmp}/files/f.bin g")
    for t in list(cluster.trackers):
        t.kill(signal.SIGKILL)
    for t in list(cluster.trackers):
        cluster.restart(t)
    # Nobody logs in again: sessions, groups and shares are in the database, presence comes
    # back with the peers' own heartbeats and announces.
    wait_until(lambda: "1 online" in b.run("list_files g").text, timeout=30, what="a back online")
    b.ok(f"download_file g f.bin {cluster.tmp}/out")
    b.wait_for(r"download complete: \[g\] f.bin")


def test_acknowledged_writes_survive_trackers_killed_at_random(cluster: Swarm) -> None:
    """1,000 writes or more spread over both trackers while each is SIGKILLed and restarted about
    20 times:
    every acknowledged write is there, none is lost, none was done twice (a retry answered
    "exists" would be its own write seen twice)."""
    rng = random.Random(4)
    stop = threading.Event()
    kills: list[str] = []
    ctx = new_context()
    endpoints = [t.endpoint for t in cluster.trackers]
    client = ControlClient(
        ctx, TrackerSet(endpoints, cluster.trackers[0].key, KeyPair.generate()), timeout=1.0, retries=30
    )
    killer = threading.Thread(target=_kill_at_random, args=(cluster, rng, stop, kills), daemon=True)
    acked: list[str] = []
    try:
        client.call(P.OP_CREATE_USER, {"user": "w", "password": "pw"}).unwrap()
        token = client.call(P.OP_LOGIN, {"user": "w", "password": "pw"}).unwrap()["token"]
        killer.start()
        i = 0
        deadline = time.monotonic() + 120
        while len(acked) < 1000 or (len(kills) < 40 and killer.is_alive()):  # until both counts
            assert time.monotonic() < deadline, f"{len(acked)} writes, {len(kills)} kills in 120 s"
            name = f"g{i:05d}"
            i += 1
            client.call(P.OP_CREATE_GROUP, {"group": name}, token=token).unwrap()  # retried until answered
            acked.append(name)
    finally:
        stop.set()
        killer.join()
        client.close()
        term_context(ctx)
    assert len(kills) == 40, kills  # (the killer stops early only if a restart failed)
    with psycopg.connect(cluster.trackers[0].db) as conn:
        stored = [r[0] for r in conn.execute("SELECT name FROM groups WHERE admin='w' ORDER BY name")]
    assert stored == acked


def _kill_at_random(cluster: Swarm, rng: random.Random, stop: threading.Event, kills: list[str]) -> None:
    """SIGKILL a random tracker and start it again, 40 times (20 each on average)."""
    while not stop.is_set() and len(kills) < 40:
        if stop.wait(rng.uniform(0.05, 0.3)):
            return
        i = rng.randrange(len(cluster.trackers))
        t = cluster.trackers[i]
        t.kill(signal.SIGKILL)
        cluster.restart(t)
        kills.append(t.endpoint)
