"""The seeder's logic: a piece request's frames in, the reply's frames out, no socket.

It checks, in order: the message is well formed; the grant was signed by the tracker, for this
file, for the very key that sent the request (ZeroMQ authenticated it), is current and was not
revoked since; we serve the file and hold the piece; the requester's share of the send
budget has room, and the file on disk has not changed since it was shared (size and mtime, one
fstat). Only then does it read the piece into a pooled buffer, which goes out as a raw frame
without being copied again; the frame's tracker gives the buffer back to the pool once ZeroMQ
is done with it.
Partial files (our own downloads) are opened without following symlinks.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import zmq

from messages.errors import Code, Refused, TorrentError
from messages.grants import GrantChecker
from messages.pieces import PieceReply, PieceRequest
from messages.protocol import DIGEST_SIZE, DIGESTS_PER_PAGE, OP_GET_DIGESTS
from messages.records import Revocation

from .budget import SendBudget
from .library import Library, Share
from .revocations import Revocations
from .slots import UploadSlots

log = logging.getLogger(__name__)


def _why(rev: Revocation) -> str:
    if rev.file is not None:
        return "the file was removed from the group"
    if rev.group is not None and rev.user is not None:
        return f"{rev.user} is no longer a member of {rev.group}"
    if rev.group is not None:
        return f"grant issued before this holder joined {rev.group}; ask the tracker for a fresh one"
    if rev.key is not None:
        return "that session ended"
    return "grant issued before this holder logged in; ask the tracker for a fresh one"


def digest_page(digests: bytes, count: int, page: int) -> bytes:
    """One page of a file's piece digests (the last page may be short)."""
    first = page * DIGESTS_PER_PAGE
    if first >= max(count, 1):
        raise Refused(Code.NO_SUCH_PIECE, f"no digest page {page}")
    return digests[first * DIGEST_SIZE : min(count, first + DIGESTS_PER_PAGE) * DIGEST_SIZE]


class PieceServer:
    def __init__(
        self,
        library: Library,
        revoked: Revocations | None = None,
        budget: SendBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        slots: UploadSlots | None = None,
    ) -> None:
        self.library = library
        self.grants: GrantChecker | None = None  # set once the tracker gave us its grant key
        # Not ``revoked or ...``: an empty Revocations is falsy (it has a length), and the
        # seeder must share the very list the peer's pushes fill.
        self.revoked = revoked if revoked is not None else Revocations()
        self.budget = budget or SendBudget()
        self.slots = slots or UploadSlots()
        self.clock = clock
        self._fds: dict[str, int] = {}

    def answer(self, frames: list[Any], requester: str = "", conn: bytes = b"") -> list[Any]:
        """The reply to one request; ``requester`` is the CURVE key that sent it ("" when the
        seeder serves without encryption: grants are then bearer tokens), ``conn`` the
        connection it came on when the reply leaves encrypted (see SendBudget's tails)."""
        req_id, piece = 0, -1
        try:
            req = PieceRequest.decode(frames)
            req_id, piece = req.id, req.piece
            self._check_grant(req, requester)
            share = self.library.get((req.group, req.file))
            if share is None:
                raise Refused(Code.NOT_SHARING, f"not sharing {req.file!r} in {req.group!r}")
            payload: bytes | zmq.Frame
            if req.op == OP_GET_DIGESTS:
                payload = digest_page(share.digests, share.meta.num_pieces, req.piece)
            elif not self.library.has(share.meta.key, req.piece):
                raise Refused(Code.NO_SUCH_PIECE, f"piece {req.piece} of {req.file!r} is not here (yet)")
            else:
                payload = self._piece(share, req.piece, requester or req.grant.user, conn)
        except TorrentError as exc:
            return PieceReply.failure(req_id, piece, exc).encode()
        except Exception:  # a bug must cost one request, never the seeder
            log.exception("seeder failed on a request")
            return PieceReply.failure(
                req_id, piece, TorrentError(Code.INTERNAL, "seeder internal error")
            ).encode()
        return PieceReply(req_id, piece, payload).encode()

    def _check_grant(self, req: PieceRequest, requester: str) -> None:
        if self.grants is None:
            raise Refused(Code.BAD_GRANT, "this holder is not in touch with a tracker yet")
        self.grants.check(req.grant, req.group, req.file, requester or None)
        rev = self.revoked.covering(req.grant)
        if rev is not None:
            raise Refused(Code.BAD_GRANT, "access revoked: " + _why(rev))

    def _piece(self, share: Share, piece: int, requester: str, conn: bytes) -> zmq.Frame:
        now = self.clock()
        if share.complete and not self.slots.admit(requester, now):  # see peer/slots.py
            raise Refused(
                Code.BUSY, "this holder serves others right now; ask another one or try again shortly"
            )
        buf = self.budget.take(requester, share.meta.piece_size, now, conn)
        if buf is None:
            raise Refused(Code.BUSY, "this holder is busy; ask another one or try again shortly")
        try:
            view = self._read(share, piece, buf)
        except BaseException:
            self.budget.give_back(buf)
            raise
        frame = zmq.Frame(view, track=True)
        tracker = frame.tracker
        self.budget.hold(requester, buf, lambda: tracker.done, conn)
        return frame

    def _read(self, share: Share, piece: int, buf: bytearray) -> memoryview:
        meta = share.meta
        try:
            fd = self._fd(share.path, nofollow=not share.complete)
            if share.complete and not self._unchanged(fd, share):
                # Our cached descriptor may be an old inode (file replaced and shared again).
                self._drop_fd(share.path)
                fd = self._fd(share.path)
                if not self._unchanged(fd, share):
                    raise Refused(Code.FILE_CHANGED, f"{meta.name!r} changed on disk since it was shared")
            view = memoryview(buf)[: meta.piece_len(piece)]
            got = os.preadv(fd, [view], piece * meta.piece_size)
        except OSError as exc:
            self._drop_fd(share.path)
            raise Refused(Code.IO_ERROR, f"cannot read {meta.name!r}: {exc.strerror}") from None
        if got != len(view):
            raise Refused(Code.FILE_CHANGED, f"{meta.name!r} is shorter than when it was shared")
        return view

    @staticmethod
    def _unchanged(fd: int, share: Share) -> bool:
        st = os.fstat(fd)
        return (st.st_size, st.st_mtime_ns) == (share.size_on_disk, share.mtime_ns)

    def _fd(self, path: str, *, nofollow: bool = False) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY | (os.O_NOFOLLOW if nofollow else 0))
        return fd

    def _drop_fd(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def sweep(self) -> None:
        """Close files we no longer serve (stopped shares, renamed partials); trim the pool."""
        self.budget.trim(self.clock())
        self.revoked.prune()
        live = self.library.paths()
        for path in [p for p in self._fds if p not in live]:
            self._drop_fd(path)

    def close(self) -> None:
        for path in list(self._fds):
            self._drop_fd(path)
