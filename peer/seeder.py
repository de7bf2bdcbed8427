"""The seeder: a ROUTER that serves verified pieces to members holding a tracker grant.

It checks, in order: the message is well formed, the grant was signed for this file with our
key and is current, we serve the file and hold the piece, and the file on disk has not changed
since it was shared (size and mtime, one fstat). Only then does it pread the piece and send it
as a raw frame without copying it again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import zmq

from broker.service import Message, RouterService
from messages.errors import Code, ProtocolError, TorrentError
from messages.grants import check_grant
from messages.pieces import decode_piece_request, encode_piece_error, encode_piece_reply
from messages.protocol import SEEDER_MAX_MSG

from .library import Library, Served

log = logging.getLogger(__name__)
SEND_QUEUE_PIECES = 32


class RateLimit:
    """A token bucket on bytes sent: an upload cap a user may set (and tests use to slow a holder)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.allowance = 0.0
        self.last = time.monotonic()

    def spend(self, nbytes: int) -> None:
        now = time.monotonic()
        self.allowance = min(self.rate, self.allowance + (now - self.last) * self.rate) - nbytes
        self.last = now
        if self.allowance < 0:
            time.sleep(-self.allowance / self.rate)


class Seeder:
    def __init__(
        self,
        ctx: zmq.Context,
        listen: str,
        library: Library,
        seed_key: bytes,
        upload_limit: float | None = None,
    ) -> None:
        self.library = library
        self.seed_key = seed_key
        # A small send queue per downloader: honest ones keep a few pieces in flight (credit);
        # one that asks for more gets its excess dropped instead of growing our memory.
        self.service = RouterService(
            ctx, listen, self._handle_batch, max_msg=SEEDER_MAX_MSG, copy=False, hwm=SEND_QUEUE_PIECES
        )
        self.endpoint = self.service.endpoint
        self.limit = RateLimit(upload_limit) if upload_limit else None
        self.served_pieces = 0
        self._fds: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="seeder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            self.service.run(self._stop, on_tick=self._close_stale_fds, tick=5.0)
        finally:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def _handle_batch(self, batch: list[Message]) -> list[Message]:
        # Replies go out one by one, so a rate limit paces each piece rather than the batch.
        for ident, frames in batch:
            self.service.send(ident, self._handle(frames))
        return []

    def _handle(self, frames: list[Any]) -> list[Any]:
        req_id, piece = 0, -1
        try:
            req = decode_piece_request([f.bytes for f in frames])
            req_id, piece = req.id, req.piece
            check_grant(self.seed_key, req.grant, req.group, req.file)
            served = self.library.get((req.group, req.file))
            if served is None:
                raise ProtocolError(Code.NOT_SHARING, f"not sharing {req.file!r} in {req.group!r}")
            payload = self._read(served, req.piece)
        except TorrentError as exc:
            return encode_piece_error(req_id, piece, exc)
        except Exception:  # a bug must cost one request, never the seeder
            log.exception("seeder failed on a request")
            return encode_piece_error(req_id, piece, ProtocolError(Code.INTERNAL, "seeder internal error"))
        if self.limit is not None:
            self.limit.spend(len(payload))
        self.served_pieces += 1
        return encode_piece_reply(req_id, piece, payload)

    def _read(self, served: Served, piece: int) -> bytes:
        meta = served.meta
        if not 0 <= piece < meta.num_pieces:
            raise ProtocolError(Code.NO_SUCH_PIECE, f"no piece {piece} in {meta.name!r}")
        if served.have is not None and piece not in served.have:
            raise ProtocolError(Code.NO_SUCH_PIECE, f"piece {piece} not downloaded yet")
        try:
            fd = self._fd(served.path)
            if served.have is None and not self._unchanged(fd, served):
                # Our cached descriptor may be an old inode (file replaced and shared again).
                self._drop_fd(served.path)
                fd = self._fd(served.path)
                if not self._unchanged(fd, served):
                    raise ProtocolError(
                        Code.FILE_CHANGED, f"{meta.name!r} changed on disk since it was shared"
                    )
            length = meta.piece_len(piece)
            data = os.pread(fd, length, piece * meta.piece_size)
        except OSError as exc:
            self._drop_fd(served.path)
            raise ProtocolError(Code.IO_ERROR, f"cannot read {meta.name!r}: {exc.strerror}") from None
        if len(data) != length:
            raise ProtocolError(Code.FILE_CHANGED, f"{meta.name!r} is shorter than when it was shared")
        return data

    @staticmethod
    def _unchanged(fd: int, served: Served) -> bool:
        st = os.fstat(fd)
        return (st.st_size, st.st_mtime_ns) == (served.size_on_disk, served.mtime_ns)

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        return fd

    def _drop_fd(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def _close_stale_fds(self) -> None:
        """Close files we no longer serve (stopped shares, renamed partials)."""
        live = self.library.paths()
        for path in [p for p in self._fds if p not in live]:
            self._drop_fd(path)
