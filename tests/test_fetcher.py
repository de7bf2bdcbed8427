"""A download worker over real inproc sockets: what it reports when it cannot even open a
socket to a holder (its own peer is out of sockets): a failure of ours, not bad data from the
holder, which would ban it for the rest of the download and report it to the tracker."""

from __future__ import annotations

import os
import threading

import zmq

from broker.keys import KeyPair
from messages.pipeline import READY, Assignment, Outcome, Result
from messages.records import FileMeta, Grant
from peer.fetcher import Fetcher
from peer.piecewriter import PieceWriter

PIECE = 64 * 1024


def test_a_worker_out_of_sockets_does_not_blame_the_holder(tmp_path) -> None:
    ctx = zmq.Context()
    # Ours 2, the worker's 3, its writer's 2: no room left for a DEALER to a holder (set before
    # the first socket: libzmq sizes its table then).
    ctx.max_sockets = 7
    vent, sink = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    stop = threading.Event()
    meta = FileMeta(group="g", name="f", size=4 * PIECE, piece_size=PIECE, root="00" * 32)
    grant = Grant(user="u", key="k", group="g", file="f", issued=0.0, exp=1e12, sig="")
    try:
        vent.bind("inproc://t-vent")
        sink.bind("inproc://t-sink")
        pipes = ("inproc://t-vent", "inproc://t-sink")
        w = Fetcher(
            ctx,
            pipes,
            meta,
            b"\0" * 128,
            PieceWriter(fd, -1, PIECE),
            KeyPair.generate(),
            stop,
            "inproc://t-w0",
        )
        w.start()
        assert sink.poll(5000) and sink.recv_multipart()[0] == READY
        vent.send_multipart(Assignment(2, "tcp://127.0.0.1:9", grant, 5.0).encode())
        assert sink.poll(5000), "no result for the assignment"
        r = Result.decode(sink.recv_multipart())
        assert (r.piece, r.outcome, r.code) == (2, Outcome.FAILED, "internal")
        assert "cannot open a socket" in (r.message or "")
    finally:
        stop.set()
        w.join(timeout=5)
        vent.close(linger=0)
        sink.close(linger=0)
        os.close(fd)
        ctx.term()
