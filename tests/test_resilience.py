"""The tracker survives SIGKILL with its acknowledged state; bad input never stops a service."""

from __future__ import annotations

import os
import signal

import orjson
import pytest
import zmq
from harness import Swarm, make_file, read, wait_until

from broker.keys import KeyPair, client_curve

pytestmark = pytest.mark.slow
PIECE = 64 * 1024


def test_tracker_sigkill_restart_keeps_state_and_download_continues(swarm: Swarm) -> None:
    seed = swarm.peer("seed", "--piece-size", "64K", "--upload-limit", "1M")
    d = swarm.peer("dl")
    swarm.group(seed, "g", d)
    other = swarm.peer("pending")
    other.ok("join_group g")
    src = f"{swarm.tmp}/src/video.bin"
    data = make_file(src, 64 * PIECE)  # 4 MiB at 1 MB/s
    seed.ok(f"upload_file {src} g")
    d.ok(f"download_file g video.bin {swarm.tmp}/out")
    wait_until(lambda: d.progress("video.bin") >= 0.1, what="download under way")

    swarm.tracker.kill(signal.SIGKILL)
    swarm.restart_tracker()

    # The download carries on by itself and ends with the right bytes.
    d.wait_for(r"download complete: \[g\] video.bin", timeout=60)
    assert read(f"{swarm.tmp}/out/video.bin") == data
    # Peers stayed logged in and announced again without anyone typing anything.
    wait_until(
        lambda: seed.run("list_files g").lines == ["video.bin\t4194304 bytes (4.0 MiB)\t2 online"],
        what="both holders online again",
    )
    # Every acknowledged change is still there.
    assert seed.ok("list_requests g").lines == ["pending"]
    assert seed.ok("list_groups").lines == ["g\tadmin=seed\tmembers=2\tadmin"]
    fresh = swarm.peer("late", create=False, login=False)
    fresh.ok("login pending pw-pending")


def test_acknowledged_writes_survive_sigkill(swarm: Swarm) -> None:
    a = swarm.peer("a")
    for i in range(20):
        a.ok(f"create_group grp{i}")
    swarm.tracker.kill(signal.SIGKILL)
    swarm.restart_tracker()
    wait_until(lambda: not a.run("list_groups").errors, what="peer back in touch")
    assert [line.split("\t")[0] for line in a.ok("list_groups").lines] == sorted(f"grp{i}" for i in range(20))


def _raw(
    endpoint: str, frames: list[bytes], server_key: str = "", timeout: float = 5.0
) -> list[bytes] | None:
    """Send raw frames as an outsider would: over CURVE with a throwaway key when the server's
    key is given (anyone may handshake; what it sends is then judged), else in the clear."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    if server_key:
        client_curve(s, KeyPair.generate(), server_key)
    s.connect(endpoint)
    try:
        s.send_multipart(frames)
        if s.poll(timeout * 1000):
            return s.recv_multipart()
        return None
    finally:
        s.close()


def _error_code(reply: list[bytes] | None) -> str:
    assert reply is not None, "no reply"
    return orjson.loads(reply[1])["error"]["code"]


GARBAGE = [
    ([b"junk"], "bad_frame"),
    ([b"TRK1", b"{not json"], "bad_json"),
    ([b"TRK1", b"[1,2]"], "bad_json"),
    ([b"TRK1", b'{"id": 1, "op": "format_disk"}'], "unknown_op"),
    ([b"TRK1", b'{"id": 1, "op": "login", "args": {"user": 5, "password": "x"}}'], "bad_args"),
    ([b"TRK1", b'{"id": 1, "op": "login", "args": {"user": "../x", "password": "x"}}'], "bad_name"),
    ([b"TRK1", b'{"id": 1, "op": "list_groups", "args": {}, "token": "forged"}'], "unauthorized"),
    ([b"TRK1", b'{"id": "x", "op": "ping"}'], "bad_args"),
    ([b"TRK1", b"{" + b" " * 65_600 + b"}"], "too_large"),  # over 64 KiB, under the frame limit
    ([b"TRK1", b"{}", b"x", b"y"], "bad_frame"),
]


def test_tracker_answers_garbage_and_keeps_serving(swarm: Swarm) -> None:
    ep = swarm.tracker.endpoint
    key = swarm.tracker.key
    for frames, code in GARBAGE:
        assert _error_code(_raw(ep, frames, key)) == code, frames[:2]
    # A frame over ZMQ_MAXMSGSIZE: the sender is disconnected, the tracker goes on.
    assert _raw(ep, [b"TRK1", b"{}", b"x" * (40 << 20)], key, timeout=1.0) is None
    # Without CURVE nothing gets through at all, however well formed.
    assert _raw(ep, [b"TRK1", b'{"id": 1, "op": "ping"}'], timeout=1.0) is None
    a = swarm.peer("a")
    a.ok("create_group still-serving")


def test_seeder_answers_garbage_and_keeps_serving(swarm: Swarm) -> None:
    seed = swarm.peer("seed", "--piece-size", "64K")
    d = swarm.peer("dl")
    outsider = swarm.peer("outsider")
    swarm.group(seed, "g", d)
    src = f"{swarm.tmp}/src/f.bin"
    data = make_file(src, 10 * PIECE)
    seed.ok(f"upload_file {src} g")
    status = seed.ok("status").lines[0]
    ep = status.split("serving on ")[1].split(" ")[0]
    key = status.split("our key ")[1]
    grant = {"user": "outsider", "key": "k" * 40, "group": "g", "file": "f.bin", "issued": 1.0, "exp": 9e9}
    grant["sig"] = "AAAA"
    bad = [
        ([b"junk"], "bad_frame"),
        ([b"TPC1", b"nope"], "bad_json"),
        ([b"TPC1", b'{"id": 1, "op": "put"}'], "unknown_op"),
        (
            [b"TPC1", orjson.dumps({"id": 1, "op": "get", "g": "g", "f": "f.bin", "p": 0, "grant": grant})],
            "bad_grant",
        ),
        (
            [
                b"TPC1",
                orjson.dumps(
                    {"id": 1, "op": "get", "g": "g", "f": "../../etc/passwd", "p": 0, "grant": grant}
                ),
            ],
            "bad_name",
        ),
        (
            [b"TPC1", orjson.dumps({"id": 1, "op": "get", "g": "g", "f": "f.bin", "p": -1, "grant": grant})],
            "bad_args",
        ),
    ]
    for frames, code in bad:
        assert _error_code(_raw(ep, frames, key)) == code, frames
    # A well-formed request in the clear gets no data: the seeder speaks CURVE only.
    assert _raw(ep, bad[3][0], timeout=1.0) is None
    # A non-member gets no grant from the tracker, so cannot fetch at all.
    outsider.refused(f"download_file g f.bin {swarm.tmp}/o", "not a member")
    d.ok(f"download_file g f.bin {swarm.tmp}/out")
    d.wait_for(r"download complete: \[g\] f.bin")
    assert read(f"{swarm.tmp}/out/f.bin") == data
    assert os.listdir(f"{swarm.tmp}/out") == ["f.bin"]
