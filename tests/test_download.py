"""Downloads through real peer processes: parallel holders, sizes, and faults."""

from __future__ import annotations

import os
import re

import pytest
from harness import PeerProc, Swarm, make_file, read, wait_until

pytestmark = pytest.mark.slow

PIECE = 64 * 1024


def pieces_from(line: str) -> dict[str, int]:
    """'pieces from a:3 b:4' -> {'a': 3, 'b': 4} from a completion line."""
    m = re.search(r"pieces from ([^;)]+?)(?:, reused (\d+))?\)", line)
    assert m, line
    return {u: int(n) for u, n in (p.split(":") for p in m.group(1).split())}


def share_everywhere(swarm: Swarm, holders: list[PeerProc], name: str, size: int) -> bytes:
    data = b""
    for h in holders:
        data = make_file(os.path.join(swarm.tmp, f"{h.name}-files", name), size, seed=size)
        h.ok(f"upload_file {swarm.tmp}/{h.name}-files/{name} g")
    return data


def test_three_holders_share_the_load(swarm: Swarm) -> None:
    holders = [swarm.peer(n, "--piece-size", "64K") for n in ("h1", "h2", "h3")]
    d = swarm.peer("dl")
    swarm.group(holders[0], "g", *holders[1:], d)
    data = share_everywhere(swarm, holders, "movie.mkv", 96 * PIECE + 1234)  # 97 pieces
    out = os.path.join(swarm.tmp, "out")
    d.ok(f"download_file g movie.mkv {out}")
    line = d.wait_for(r"download complete: \[g\] movie.mkv").string
    assert read(os.path.join(out, "movie.mkv")) == data
    counts = pieces_from(line)
    assert set(counts) == {"h1", "h2", "h3"} and sum(counts.values()) == 97
    # Equal holders carry about equal shares: none more than 1.5x its fair third.
    assert max(counts.values()) <= 1.5 * 97 / 3, counts


@pytest.mark.parametrize(
    "size", [0, 1, 4 * PIECE, 4 * PIECE + 7], ids=["empty", "1byte", "multiple", "ragged"]
)
def test_sizes(swarm: Swarm, size: int) -> None:
    a = swarm.peer("a", "--piece-size", "64K")
    b = swarm.peer("b")
    swarm.group(a, "g", b)
    data = share_everywhere(swarm, [a], "f.bin", size)
    b.ok(f"download_file g f.bin {swarm.tmp}/out")
    b.wait_for(r"download complete: \[g\] f.bin")
    assert read(f"{swarm.tmp}/out/f.bin") == data


def test_third_peer_fetches_from_a_peer_still_downloading(swarm: Swarm) -> None:
    # The seed is slow (upload cap), so bob is still downloading when carol starts.
    seed = swarm.peer("seed", "--piece-size", "64K", "--upload-limit", "2M")
    bob = swarm.peer("bob")
    carol = swarm.peer("carol")
    swarm.group(seed, "g", bob, carol)
    data = share_everywhere(swarm, [seed], "big.iso", 128 * PIECE)  # 8 MiB: about 4 s from the seed
    bob.ok(f"download_file g big.iso {swarm.tmp}/bob")
    wait_until(lambda: bob.progress("big.iso") >= 0.15, what="bob to get some pieces")
    assert bob.progress("big.iso") < 1.0
    carol.ok(f"download_file g big.iso {swarm.tmp}/carol")
    line = carol.wait_for(r"download complete: \[g\] big.iso", timeout=60).string
    bob.wait_for(r"download complete: \[g\] big.iso", timeout=60)
    assert read(f"{swarm.tmp}/carol/big.iso") == data
    assert read(f"{swarm.tmp}/bob/big.iso") == data
    assert pieces_from(line).get("bob", 0) > 0, line


def test_holder_killed_mid_download(swarm: Swarm) -> None:
    holders = [swarm.peer(n, "--piece-size", "64K", "--upload-limit", "1M") for n in ("h1", "h2", "h3")]
    d = swarm.peer("dl")
    swarm.group(holders[0], "g", *holders[1:], d)
    data = share_everywhere(swarm, holders, "data.bin", 96 * PIECE)  # 6 MiB at 3 MB/s: ~2 s
    d.ok(f"download_file g data.bin {swarm.tmp}/out")
    wait_until(lambda: d.progress("data.bin") >= 0.2, what="download under way")
    holders[1].kill()
    line = d.wait_for(r"download complete: \[g\] data.bin", timeout=60).string
    assert read(f"{swarm.tmp}/out/data.bin") == data
    assert pieces_from(line).get("h1", 0) > 0 and pieces_from(line).get("h3", 0) > 0


@pytest.mark.parametrize("keep_mtime", [True, False], ids=["silent-corruption", "file-changed"])
def test_corrupted_holder_is_dropped(swarm: Swarm, keep_mtime: bool) -> None:
    good = swarm.peer("good", "--piece-size", "64K")
    bad = swarm.peer("bad", "--piece-size", "64K")
    d = swarm.peer("dl")
    swarm.group(good, "g", bad, d)
    data = share_everywhere(swarm, [good, bad], "doc.bin", 32 * PIECE)
    path = f"{swarm.tmp}/bad-files/doc.bin"
    st = os.stat(path)
    with open(path, "r+b") as f:  # flip bytes in every piece
        for i in range(32):
            f.seek(i * PIECE + 100)
            f.write(b"\xff" * 16)
    if keep_mtime:  # the seeder cannot tell; only the downloader's SHA-256 check can
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    d.ok(f"download_file g doc.bin {swarm.tmp}/out")
    line = d.wait_for(r"download complete: \[g\] doc.bin").string
    assert read(f"{swarm.tmp}/out/doc.bin") == data
    # The bad holder was asked at most the first pieces in flight before being dropped.
    assert pieces_from(line).get("bad", 0) == 0
    assert "bad sent bad data and was dropped" in line


def test_only_holder_of_some_pieces_gone(swarm: Swarm) -> None:
    seed = swarm.peer("seed", "--piece-size", "64K", "--upload-limit", "1M")
    d = swarm.peer("dl")
    swarm.group(seed, "g", d)
    share_everywhere(swarm, [seed], "half.bin", 64 * PIECE)
    d.ok(f"download_file g half.bin {swarm.tmp}/out")
    wait_until(lambda: d.progress("half.bin") >= 0.2, what="download under way")
    seed.kill()
    err = d.wait_for(r"error: download of \[g\] half.bin failed", timeout=60).string
    assert "no online peer holds" in err and "partial file kept" in err
    assert os.path.getsize(f"{swarm.tmp}/out/.torrent-partial/half.bin") == 64 * PIECE
    assert not os.path.exists(f"{swarm.tmp}/out/half.bin")
    assert d.run("show_downloads").lines[0].startswith("[F] [g] half.bin")


def test_downloader_killed_then_resumes_missing_pieces_only(swarm: Swarm) -> None:
    seed = swarm.peer("seed", "--piece-size", "64K", "--upload-limit", "2M")
    d = swarm.peer("dl")
    swarm.group(seed, "g", d)
    data = share_everywhere(swarm, [seed], "resume.bin", 64 * PIECE)  # 4 MiB at 2 MB/s
    d.ok(f"download_file g resume.bin {swarm.tmp}/out")
    wait_until(lambda: d.progress("resume.bin") >= 0.3, what="download under way")
    d.kill()
    part = f"{swarm.tmp}/out/.torrent-partial/resume.bin"
    assert os.path.exists(part)
    with open(part, "r+b") as f:  # damage one piece that was written: it must be fetched again
        f.write(b"garbage")
    again = PeerProc(swarm.tracker.endpoint, d.home, "--piece-timeout", "3", name="dl2")
    swarm.procs.append(again)
    again.ok("login dl pw-dl")
    again.ok(f"download_file g resume.bin {swarm.tmp}/out")
    line = again.wait_for(r"download complete: \[g\] resume.bin", timeout=60).string
    assert read(f"{swarm.tmp}/out/resume.bin") == data
    m = re.search(r"reused (\d+)", line)
    assert m, line
    reused, fetched = int(m.group(1)), sum(pieces_from(line).values())
    assert reused >= 0.3 * 64 - 1 and reused + fetched == 64


def test_several_downloads_at_once_in_one_peer(swarm: Swarm) -> None:
    a = swarm.peer("a", "--piece-size", "64K")
    b = swarm.peer("b", "--piece-size", "64K")
    d = swarm.peer("dl")
    swarm.group(a, "g", b, d)
    one = share_everywhere(swarm, [a, b], "one.bin", 40 * PIECE + 5)
    two = share_everywhere(swarm, [a, b], "two.bin", 24 * PIECE)
    d.ok(f"download_file g one.bin {swarm.tmp}/out")
    d.ok(f"download_file g two.bin {swarm.tmp}/out")
    d.ok("wait", timeout=60)  # returns once neither is running (they may have ended already)
    d.wait_for(r"download complete: \[g\] one.bin")
    d.wait_for(r"download complete: \[g\] two.bin")
    assert read(f"{swarm.tmp}/out/one.bin") == one
    assert read(f"{swarm.tmp}/out/two.bin") == two
    assert sorted(d.ok("show_downloads").lines) == ["[C] [g] one.bin", "[C] [g] two.bin"]


def test_leaving_a_group_stops_sharing_there(swarm: Swarm) -> None:
    a = swarm.peer("a")
    b = swarm.peer("b")
    swarm.group(a, "g", b)
    share_everywhere(swarm, [b], "mine.bin", 1000)
    assert a.ok("list_files g").lines == ["mine.bin\t1000 bytes (1000 B)\t1 online"]
    b.ok("leave_group g")
    assert a.ok("list_files g").lines == ["no files in g"]
    b.refused(f"download_file g mine.bin {swarm.tmp}/o", "not a member")


def test_a_member_announcing_an_unreachable_endpoint_does_not_stall_others(swarm: Swarm) -> None:
    import zmq

    from broker.client import ControlClient
    from broker.keys import KeyPair
    from broker.trackers import TrackerSet
    from messages.errors import LocalError

    alice = swarm.peer("alice", "--piece-size", "64K")
    bob = swarm.peer("bob")
    swarm.group(alice, "g", bob)
    data = share_everywhere(swarm, [alice], "f.bin", 16 * PIECE)
    # mallory joins, shares the same file (same digests) and announces a bogus endpoint.
    ctx = zmq.Context()
    c = ControlClient(ctx, TrackerSet([swarm.tracker.endpoint], swarm.tracker.key, KeyPair.generate()))
    try:
        c.call("create_user", {"user": "mallory", "password": "pw"}).unwrap()
        token = c.call("login", {"user": "mallory", "password": "pw"}).unwrap()["token"]
        c.call("join_group", {"group": "g"}, token=token).unwrap()
        alice.ok("accept_request g mallory")
        info = c.call("file_info", {"group": "g", "file": "f.bin"}, token=token)
        meta = info.unwrap()
        args = {k: meta[k] for k in ("size", "piece_size", "root")} | {"group": "g", "file": "f.bin"}
        with pytest.raises(LocalError, match="port 1-65535"):  # refused before it is sent
            c.call("announce", {"endpoint": "tcp://-:1", "plain": False, "shares": []}, token=token)
        c.call(
            "announce", {"endpoint": "tcp://127.0.0.1:9", "plain": False, "shares": []}, token=token
        ).unwrap()
        c.call("share_file", args, token=token).unwrap()
        c.call("heartbeat", {}, token=token).unwrap()
        bob.ok(f"download_file g f.bin {swarm.tmp}/out")
        line = bob.wait_for(r"download complete: \[g\] f.bin", timeout=60).string
    finally:
        c.close()
        ctx.term()
    assert read(f"{swarm.tmp}/out/f.bin") == data
    assert "mallory" not in line.split("pieces from")[1].split(")")[0]


def test_file_replaced_and_shared_again_is_served(swarm: Swarm) -> None:
    alice = swarm.peer("alice", "--piece-size", "64K")
    bob = swarm.peer("bob")
    carol = swarm.peer("carol")
    swarm.group(alice, "g", bob, carol)
    data = share_everywhere(swarm, [alice], "doc.bin", 8 * PIECE)
    bob.ok(f"download_file g doc.bin {swarm.tmp}/bob")  # alice's seeder now has the file open
    bob.wait_for(r"download complete: \[g\] doc.bin")
    bob.ok("stop_share g doc.bin")
    path = f"{swarm.tmp}/alice-files/doc.bin"
    with open(path + ".new", "wb") as f:  # an editor's save: new inode, same bytes
        f.write(data)
    os.replace(path + ".new", path)
    alice.ok(f"upload_file {path} g")
    carol.ok(f"download_file g doc.bin {swarm.tmp}/carol")
    line = carol.wait_for(r"download complete: \[g\] doc.bin").string
    assert read(f"{swarm.tmp}/carol/doc.bin") == data
    assert pieces_from(line) == {"alice": 8}


def test_stop_share_is_refused_while_downloading(swarm: Swarm) -> None:
    seed = swarm.peer("seed", "--piece-size", "64K", "--upload-limit", "1M")
    d = swarm.peer("dl")
    swarm.group(seed, "g", d)
    data = share_everywhere(swarm, [seed], "slow.bin", 48 * PIECE)
    d.ok(f"download_file g slow.bin {swarm.tmp}/out")
    d.refused("stop_share g slow.bin", "still downloading")
    d.wait_for(r"download complete: \[g\] slow.bin", timeout=60)
    assert read(f"{swarm.tmp}/out/slow.bin") == data
