"""Writing pieces past the page cache: the bytes on disk are the bytes verified, whichever way
each piece went, and the second descriptor is never opened on some other file."""

from __future__ import annotations

import os

import pytest

from peer.piecewriter import ALIGN, PieceWriter, open_direct, reserve

PIECE = 64 * 1024


def _pieces(size: int) -> list[bytes]:
    data = os.urandom(size)
    return [data[i : i + PIECE] for i in range(0, size, PIECE)]


def _write_all_pieces(tmp_path, size: int, *, direct: bool) -> tuple[bytes, bool]:
    path = tmp_path / "f.part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, size)
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    dfd = open_direct("f.part", dir_fd, os.fstat(fd)) if direct else -1
    pieces = _pieces(size)
    try:
        writers = [PieceWriter(fd, dfd, PIECE) for _ in range(2)]  # two workers, one file
        for i in reversed(range(len(pieces))):  # any order, as the workers finish them
            writers[i % 2].write(memoryview(pieces[i]), i * PIECE)
        for w in writers:
            w.close()
        return b"".join(pieces), dfd >= 0
    finally:
        for d in (dfd, fd, dir_fd):
            if d >= 0:
                os.close(d)


@pytest.mark.parametrize("size", [4 * PIECE, 4 * PIECE + 1, 3 * PIECE + ALIGN, 100])
def test_every_piece_lands_at_its_offset_with_a_short_last_piece_too(tmp_path, size):
    expected, went_direct = _write_all_pieces(tmp_path, size, direct=True)
    assert went_direct, "this test's folder is on a file system with O_DIRECT (ext4, tmpfs)"
    assert (tmp_path / "f.part").read_bytes() == expected


def test_through_the_page_cache_when_asked(tmp_path):
    expected, went_direct = _write_all_pieces(tmp_path, 4 * PIECE + 7, direct=False)
    assert not went_direct
    assert (tmp_path / "f.part").read_bytes() == expected


def test_the_second_descriptor_is_refused_when_the_name_now_leads_elsewhere(tmp_path):
    """Were the partial file replaced between the two opens (say by a link to another file),
    writing through the name would write into that other file; the writer then stays on the
    first descriptor."""
    fd = os.open(tmp_path / "f.part", os.O_RDWR | os.O_CREAT, 0o600)
    first = os.fstat(fd)
    (tmp_path / "other").write_bytes(b"keep me")
    os.replace(tmp_path / "other", tmp_path / "f.part")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert open_direct("f.part", dir_fd, first) == -1
    finally:
        os.close(dir_fd)
        os.close(fd)
    assert (tmp_path / "f.part").read_bytes() == b"keep me"


def test_a_symbolic_link_is_not_followed(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"x" * ALIGN)
    os.symlink(target, tmp_path / "f.part")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError):
            open_direct("f.part", dir_fd, os.stat(target))
    finally:
        os.close(dir_fd)


def test_reserving_allocates_the_whole_file_and_keeps_what_was_written(tmp_path):
    fd = os.open(tmp_path / "f.part", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 8 * PIECE)
        os.pwrite(fd, b"kept", 3 * PIECE)
        assert os.fstat(fd).st_blocks * 512 < 8 * PIECE  # sparse: holes everywhere else
        assert reserve(fd, 8 * PIECE)
        assert os.fstat(fd).st_blocks * 512 >= 8 * PIECE
        assert os.pread(fd, 4, 3 * PIECE) == b"kept"
        assert os.fstat(fd).st_size == 8 * PIECE
    finally:
        os.close(fd)


def test_a_direct_write_the_kernel_refuses_goes_through_the_page_cache(tmp_path, monkeypatch) -> None:
    # A file system may accept O_DIRECT at open and refuse the write itself (EINVAL: larger
    # blocks, some FUSE or stacked devices). The piece must still land, and so must the next.
    import errno

    import peer.piecewriter as pw

    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, 2 * PIECE)
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    dfd = open_direct("f", dir_fd, os.fstat(fd))
    real_pwrite = os.pwrite

    def refusing_pwrite(f: int, data, offset: int) -> int:
        if f == dfd:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(f, data, offset)

    monkeypatch.setattr(pw.os, "pwrite", refusing_pwrite)
    pieces = _pieces(2 * PIECE)
    writer = PieceWriter(fd, dfd, PIECE)
    try:
        for i, piece in enumerate(pieces):
            writer.write(memoryview(piece), i * PIECE)
        assert os.pread(fd, 2 * PIECE, 0) == b"".join(pieces)
    finally:
        writer.close()
        for d in (dfd, fd, dir_fd):
            if d >= 0:
                os.close(d)
