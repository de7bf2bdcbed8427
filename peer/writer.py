"""A worker's writer thread: writes verified pieces at their offset and reports them in.

Writes past the page cache wait on the disk (about a millisecond per 1 MiB piece here); done by
the worker itself, that wait held up the next piece's hashing, and the two workers spent half
their time waiting. Each worker hands its verified pieces (the received frame itself, no copy)
to its own writer over inproc, and goes on hashing; the writer tells the sink once a piece is
down, so a piece counts as in (and is served to others) only once it is on disk.
"""

from __future__ import annotations

import errno
import threading

import zmq

from messages.errors import Code
from messages.pipeline import Result, Verified

from .piecewriter import PieceWriter

POLL_MS = 100  # how often an idle writer looks at the stop flag


class Writer(threading.Thread):
    def __init__(
        self, ctx: zmq.Context, inbox: str, sink: str, writer: PieceWriter, stop: threading.Event, name: str
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.ctx, self.inbox, self.sink = ctx, inbox, sink
        self.writer, self.stop_event = writer, stop
        self.ready = threading.Event()  # set once its sockets are connected

    def run(self) -> None:
        pull = self.ctx.socket(zmq.PULL)
        push = self.ctx.socket(zmq.PUSH)
        try:
            pull.connect(self.inbox)
            push.connect(self.sink)
            self.ready.set()
            while not self.stop_event.is_set():
                if pull.poll(POLL_MS):
                    v = Verified.decode(pull.recv_multipart(copy=False))
                    push.send_multipart(self._write(v).encode())
        except zmq.ContextTerminated:
            pass
        finally:
            self.ready.set()
            pull.close(linger=0)
            push.close(linger=0)
            self.writer.close()

    def _write(self, v: Verified) -> Result:
        try:
            self.writer.write(v.payload.buffer, v.offset)
        except OSError as exc:
            code = Code.NO_SPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else Code.IO_ERROR
            return Result.local(v.piece, v.holder, code, exc.strerror or str(exc))
        return Result.ok(v.piece, v.holder)
