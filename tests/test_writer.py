"""A worker's writer thread over real inproc sockets: verified pieces in, pieces on disk and
Results out; a failed write is reported, never swallowed; it stops when told."""

from __future__ import annotations

import os
import threading
import time

import zmq

from messages.pipeline import Outcome, Result, Verified
from peer.piecewriter import PieceWriter
from peer.writer import Writer

PIECE = 64 * 1024


def _run(ctx: zmq.Context, fd: int, pieces: dict[int, bytes]) -> list[Result]:
    sink, inbox = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    sink.bind("inproc://t-sink")
    inbox.bind("inproc://t-write")
    stop = threading.Event()
    w = Writer(ctx, "inproc://t-write", "inproc://t-sink", PieceWriter(fd, -1, PIECE), stop, "t-writer")
    w.start()
    try:
        assert w.ready.wait(5)
        for i, data in pieces.items():
            inbox.send_multipart(Verified(i, "tcp://h:1", i * PIECE, data).encode(), copy=False)
        results = []
        for _ in pieces:
            assert sink.poll(5000), "no result within 5 s"
            results.append(Result.decode(sink.recv_multipart()))
        return results
    finally:
        stop.set()
        w.join(timeout=5)
        assert not w.is_alive(), "the writer did not stop"
        sink.close(linger=0)
        inbox.close(linger=0)


def test_pieces_handed_over_are_written_at_their_offset_and_reported(tmp_path) -> None:
    pieces = {i: os.urandom(PIECE) for i in (3, 0, 2, 1)}
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    ctx = zmq.Context()
    try:
        results = _run(ctx, fd, pieces)
        assert sorted(r.piece for r in results) == [0, 1, 2, 3]
        assert all(r.outcome is Outcome.OK and r.holder == "tcp://h:1" for r in results)
        assert (tmp_path / "f").read_bytes() == b"".join(pieces[i] for i in range(4))
    finally:
        os.close(fd)
        ctx.term()


def test_a_write_that_fails_is_reported_as_our_side_failing(tmp_path) -> None:
    (tmp_path / "f").write_bytes(b"")
    fd = os.open(tmp_path / "f", os.O_RDONLY)  # every write fails (EBADF)
    ctx = zmq.Context()
    try:
        start = time.monotonic()
        [r] = _run(ctx, fd, {5: os.urandom(PIECE)})
        assert (r.piece, r.outcome, r.code) == (5, Outcome.LOCAL, "io_error")
        assert r.message and time.monotonic() - start < 5
    finally:
        os.close(fd)
        ctx.term()


def test_a_writer_that_cannot_get_sockets_says_so_at_once_and_ends(tmp_path) -> None:
    # A context out of sockets (ZMQ_MAX_SOCKETS; each holder costs a download one) must not
    # leave the worker waiting for its writer for ever.
    ctx = zmq.Context()
    ctx.max_sockets = 1
    taken = ctx.socket(zmq.PULL)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        w = Writer(
            ctx, "inproc://t-write", "inproc://t-sink", PieceWriter(fd, -1, PIECE), threading.Event(), "t"
        )
        w.start()
        assert w.ready.wait(5), "ready never set"
        assert not w.up
        w.join(timeout=5)
        assert not w.is_alive()
    finally:
        taken.close(linger=0)
        os.close(fd)
        ctx.term()


def test_a_result_for_a_download_that_ended_is_dropped_not_waited_on(tmp_path) -> None:
    # The download gave up waiting (a slow disk) and closed its sink. Once ZeroMQ has seen the
    # sink go, a blocking report would hold the writer thread, its buffer and its sockets until
    # the peer exits.
    ctx = zmq.Context()
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    sink, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    try:
        sink.bind("inproc://t-sink")
        push.connect("inproc://t-sink")
        push.send(b"x")
        assert sink.poll(5000)
        sink.recv()
        sink.close(linger=0)
        deadline = time.monotonic() + 5
        while push.poll(10, zmq.POLLOUT) and time.monotonic() < deadline:
            pass  # until the PUSH knows it has nobody to send to
        assert not push.poll(0, zmq.POLLOUT)
        w = Writer(
            ctx, "inproc://t-write", "inproc://t-sink", PieceWriter(fd, -1, PIECE), threading.Event(), "t"
        )
        done = threading.Event()

        def report() -> None:
            w._report(push, Result.ok(7, "tcp://h:1"))
            done.set()

        threading.Thread(target=report, daemon=True).start()
        assert done.wait(5), "the writer waits on a sink that is gone"
        assert w.dropped == 1
    finally:
        push.close(linger=0)
        sink.close(linger=0)
        os.close(fd)
        ctx.term()
