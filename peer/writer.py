"""A worker's writer thread: writes verified pieces at their offset and reports them in.

Writes past the page cache wait on the disk (about a millisecond per 1 MiB piece here); done by
the worker itself, that wait held up the next piece's hashing, and the two workers spent half
their time waiting. Each worker hands its verified pieces (the received frame itself, no copy)
to its own writer over inproc, and goes on hashing; the writer tells the sink once a piece is
down, so a piece counts as in (and is served to others) only once it is on disk.
"""

from __future__ import annotations

import errno
import logging
import threading

import zmq

from messages.errors import Code
from messages.pipeline import Result, Verified

from .piecewriter import PieceWriter

log = logging.getLogger(__name__)

POLL_MS = 100  # how often an idle writer looks at the stop flag
START_TIMEOUT = 5.0  # how long a worker waits for its writer to come up


class Writer(threading.Thread):
    def __init__(
        self, ctx: zmq.Context, inbox: str, sink: str, writer: PieceWriter, stop: threading.Event, name: str
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.ctx, self.inbox, self.sink = ctx, inbox, sink
        self.writer, self.stop_event = writer, stop
        self.ready = threading.Event()  # set once it is up, or once it failed to come up
        self.up = False  # whether its sockets are connected (read after ``ready``)
        self.dropped = 0  # results the sink was no longer there to take

    def run(self) -> None:
        sockets: list[zmq.Socket] = []
        try:
            # Created inside the try: a context out of sockets (or being terminated) must still
            # set ``ready``, or the worker waiting on it would wait for ever.
            pull = self.ctx.socket(zmq.PULL)
            sockets.append(pull)
            push = self.ctx.socket(zmq.PUSH)
            sockets.append(push)
            pull.connect(self.inbox)
            push.connect(self.sink)
            self.up = True
            self.ready.set()
            while not self.stop_event.is_set():
                if pull.poll(POLL_MS):
                    v = Verified.decode(pull.recv_multipart(copy=False))
                    self._report(push, self._write(v))
        except zmq.ContextTerminated:
            pass
        except zmq.ZMQError as exc:
            log.warning("download writer %s could not start: %s", self.name, exc)
        finally:
            self.ready.set()
            for sock in sockets:
                sock.close(linger=0)
            self.writer.close()

    def _report(self, push: zmq.Socket, result: Result) -> None:
        """Never blocks: a sink that is gone (the download ended while a slow write went on)
        would otherwise hold this thread, its buffer and its sockets until the peer exits."""
        try:
            push.send_multipart(result.encode(), zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            log.debug("piece %d written after its download ended; result dropped", result.piece)

    def _write(self, v: Verified) -> Result:
        try:
            self.writer.write(v.payload.buffer, v.offset)
        except OSError as exc:
            code = Code.NO_SPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else Code.IO_ERROR
            return Result.local(v.piece, v.holder, code, exc.strerror or str(exc))
        except Exception as exc:  # a bug must fail the download with a reason, not kill this thread
            log.exception("download writer failed on piece %d", v.piece)
            return Result.local(v.piece, v.holder, Code.INTERNAL, f"writer failed: {exc!r}")
        return Result.ok(v.piece, v.holder)
