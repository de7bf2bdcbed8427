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
