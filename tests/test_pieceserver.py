"""The seeder's logic, frames in and frames out, over real files: no sockets.

Every refusal a downloader can meet, and the bytes it gets when nothing is wrong.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from messages import protocol as P
from messages.bitfield import Bitfield
from messages.errors import Code
from messages.grants import GrantChecker, GrantSigner
from messages.pieces import PieceReply, PieceRequest
from messages.records import FileMeta, Revocation
from peer.budget import SendBudget
from peer.hashing import hash_file
from peer.library import Library
from peer.pieceserver import PieceServer
from peer.revocations import Revocations

TRACKER = GrantSigner(b"s" * 32)


def key_of(user: str) -> str:
    return (user * 40)[:40]


PIECE = 128 * 1024  # above ZeroMQ's copy threshold, so payloads are tracked, not copied


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[tuple[PieceServer, FileMeta, bytes, str]]:
    path = str(tmp_path / "movie.mkv")
    data = os.urandom(3 * PIECE - 5)
    with open(path, "wb") as f:
        f.write(data)
    size, root, digests = hash_file(path, PIECE)
    meta = FileMeta(group="films", name="movie.mkv", size=size, piece_size=PIECE, root=root)
    library = Library()
    library.load(str(tmp_path / "home"))
    library.add_complete(meta, path, digests)
    server = PieceServer(library)
    server.grants = GrantChecker(TRACKER.public)
    try:
        yield server, meta, data, path
    finally:
        server.close()


def ask(
    server: PieceServer,
    piece: int,
    *,
    signer: GrantSigner = TRACKER,
    file: str = "movie.mkv",
    life: float = 60,
    op: str = P.OP_GET_PIECE,
    user: str = "bob",
    sender: str | None = None,
) -> PieceReply:
    """``user``'s request, with a grant for ``user``'s key, sent from ``sender``'s (default: the same)."""
    grant = signer.grant(user, key_of(user), "films", file, life)
    req = PieceRequest(id=7, group="films", file=file, piece=piece, grant=grant, op=op)
    return PieceReply.decode(server.answer(req.encode(), key_of(sender or user)))


def refused(reply: PieceReply, code: Code) -> str:
    assert reply.error is not None, "expected a refusal"
    assert reply.error.code == code, reply.error
    return reply.error.message


def test_serves_every_piece_byte_for_byte(shared: Any) -> None:
    server, meta, data, _ = shared
    for i in range(meta.num_pieces):
        reply = ask(server, i)
        assert (reply.id, reply.piece, reply.error) == (7, i, None)
        assert bytes(reply.payload) == data[i * PIECE : (i + 1) * PIECE]


def test_grant_problems(shared: Any) -> None:
    server = shared[0]
    assert "signature" in refused(ask(server, 0, signer=GrantSigner(b"x" * 32)), Code.BAD_GRANT)
    assert "expired" in refused(ask(server, 0, life=-1), Code.BAD_GRANT)
    # A grant (kept, or sniffed on a plain link) used from a connection with another key.
    assert "another key" in refused(ask(server, 0, sender="mallory"), Code.BAD_GRANT)


def test_revoked_grants_are_refused_at_once(shared: Any) -> None:
    server = shared[0]
    assert ask(server, 0).error is None
    server.revoked.add(Revocation(at=time.time() + 1, user="bob", group="films"))
    assert "no longer a member" in refused(ask(server, 0), Code.BAD_GRANT)
    assert ask(server, 0, user="carol").error is None
    server.revoked.add(Revocation(at=time.time() + 1, key=key_of("carol")))
    assert "session ended" in refused(ask(server, 0, user="carol"), Code.BAD_GRANT)


def test_revocations_added_to_the_peers_list_reach_the_server(shared: Any) -> None:
    """The peer hands the seeder its (still empty) list and fills it as pushes arrive: the
    server must check that very list, not a copy made because an empty one looked falsy."""
    server, _meta, _data, _path = shared
    peers = Revocations()
    server = PieceServer(server.library, peers)
    server.grants = GrantChecker(TRACKER.public)
    assert ask(server, 0).error is None
    peers.add(Revocation(at=time.time() + 1, user="bob", group="films"))
    assert "no longer a member" in refused(ask(server, 0), Code.BAD_GRANT)
    server.close()


def test_a_seeder_not_yet_in_touch_with_a_tracker_serves_nothing(shared: Any) -> None:
    server = shared[0]
    server.grants = None
    assert "not in touch" in refused(ask(server, 0), Code.BAD_GRANT)


def test_unknown_file_and_piece(shared: Any) -> None:
    server = shared[0]
    refused(ask(server, 0, file="other.mkv"), Code.NOT_SHARING)
    refused(ask(server, 3), Code.NO_SUCH_PIECE)


def test_partial_file_serves_only_pieces_it_has(shared: Any, tmp_path: Path) -> None:
    server, meta, data, _ = shared
    library = server.library
    part = str(tmp_path / "partial")
    with open(part, "wb") as f:
        f.write(data)
    digests = library.get(meta.key).digests
    library.remove(meta.key)
    library.add_partial(meta, part, digests, Bitfield.from_indices(meta.num_pieces, [1]))
    refused(ask(server, 0), Code.NO_SUCH_PIECE)
    assert bytes(ask(server, 1).payload) == data[PIECE : 2 * PIECE]
    library.mark(meta.key, 0)
    assert bytes(ask(server, 0).payload) == data[:PIECE]


def test_changed_or_shrunk_file_is_refused(shared: Any) -> None:
    server, _, _, path = shared
    assert ask(server, 0).error is None
    with open(path, "r+b") as f:  # same size, new mtime
        f.write(b"\0")
    os.utime(path, ns=(1, 1))
    refused(ask(server, 0), Code.FILE_CHANGED)


def test_file_replaced_and_shared_again_is_served_from_the_new_inode(shared: Any) -> None:
    server, meta, data, path = shared
    assert ask(server, 0).error is None  # the descriptor is now cached
    os.unlink(path)
    with open(path, "wb") as f:
        f.write(data)
    server.library.add_complete(meta, path, server.library.get(meta.key).digests)
    assert bytes(ask(server, 2).payload) == data[2 * PIECE :]


def test_vanished_file_is_an_io_error(shared: Any) -> None:
    server, _, _, path = shared
    os.unlink(path)
    assert "cannot read" in refused(ask(server, 0), Code.IO_ERROR)


def test_truncated_file_with_restored_mtime_is_refused(shared: Any) -> None:
    server, _, _, path = shared
    st = os.stat(path)
    os.truncate(path, PIECE)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    refused(ask(server, 2), Code.FILE_CHANGED)  # the size differs from the one shared


def test_partial_file_shorter_than_its_pieces_is_refused(shared: Any, tmp_path: Path) -> None:
    server, meta, _, _ = shared
    short = str(tmp_path / "short")
    with open(short, "wb") as f:
        f.write(b"x" * 100)
    digests = server.library.get(meta.key).digests
    server.library.remove(meta.key)
    server.library.add_partial(meta, short, digests, Bitfield.full(meta.num_pieces))
    assert "shorter" in refused(ask(server, 1), Code.FILE_CHANGED)


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([b"nope", b"{}"], Code.BAD_FRAME),
        ([P.PIECE_TAG], Code.BAD_FRAME),
        ([P.PIECE_TAG, b"{bad"], Code.BAD_JSON),
        ([P.PIECE_TAG, orjson.dumps({"id": 1, "op": "put"})], Code.UNKNOWN_OP),
        ([P.PIECE_TAG, b"x" * (P.MAX_HEADER_BYTES + 1)], Code.TOO_LARGE),
    ],
)
def test_malformed_requests_get_error_replies(shared: Any, frames: list[bytes], code: Code) -> None:
    refused(PieceReply.decode(shared[0].answer(frames)), code)


def test_sweep_closes_files_no_longer_served(shared: Any) -> None:
    server, meta, _, _ = shared
    ask(server, 0)
    assert server._fds
    server.library.remove(meta.key)
    server.sweep()
    assert not server._fds


def test_digest_pages_give_the_files_digests(shared: Any) -> None:
    server, meta, _, _ = shared
    digests = server.library.get(meta.key).digests
    assert bytes(ask(server, 0, op=P.OP_GET_DIGESTS).payload) == digests
    refused(ask(server, 1, op=P.OP_GET_DIGESTS), Code.NO_SUCH_PIECE)


def test_budget_answers_busy_and_recovers_when_replies_are_released(shared: Any) -> None:
    server = shared[0]
    server.budget = SendBudget(total=3 * PIECE, per_requester=2 * PIECE)  # three pieces in all
    grant = TRACKER.grant("bob", key_of("bob"), "films", "movie.mkv", 60)
    held = [
        server.answer(PieceRequest(i, "films", "movie.mkv", i, grant).encode(), key_of("bob"))
        for i in range(2)
    ]
    assert all(PieceReply.decode(f).error is None for f in held)
    assert "busy" in refused(ask(server, 2), Code.BUSY)  # bob holds his share of the budget
    carol = ask(server, 2, user="carol")  # another requester still gets a piece (held, unsent)
    assert carol.error is None
    refused(ask(server, 0, user="dave"), Code.BUSY)  # the seeder as a whole is full now
    del held, carol  # ZeroMQ released them (here: never sent, so freed with their frames)
    gc.collect()
    deadline = time.monotonic() + 5  # frames are freed by pyzmq's own thread: wait, bounded
    while (reply := ask(server, 2)).error is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reply.error is None


def test_a_symlink_in_place_of_a_partial_file_is_not_followed(shared: Any, tmp_path: Path) -> None:
    server, meta, _, _ = shared
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * meta.size)
    link = tmp_path / "partial-link"
    link.symlink_to(secret)
    digests = server.library.get(meta.key).digests
    server.library.remove(meta.key)
    server.library.add_partial(meta, str(link), digests, Bitfield.full(meta.num_pieces))
    refused(ask(server, 0), Code.IO_ERROR)
