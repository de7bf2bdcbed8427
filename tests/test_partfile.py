"""The partial file on a real, small ext4 (a loop device; root only): a file too big for the disk
is refused without taking the room that is left, and space a reservation took is given back
for every piece not verified, never for one that is."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from messages.errors import Code, LocalError
from messages.records import FileMeta
from peer.partfile import PartFile

pytestmark = pytest.mark.slow  # mkfs and mount are processes

PIECE = 1 << 20
MIB = 1 << 20


@contextlib.contextmanager
def small_ext4(folder: str, mib: int) -> Iterator[str]:
    """An ext4 file system of ``mib`` MiB mounted at ``folder``, unmounted and removed at the end."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        pytest.skip("needs root and mkfs.ext4 to make a small ext4")
    image = folder + ".img"
    os.makedirs(folder)
    with open(image, "wb") as f:
        f.truncate(mib * MIB)
    subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True, capture_output=True)
    r = subprocess.run(["mount", "-o", "loop", image, folder], check=False, capture_output=True)
    if r.returncode != 0:
        os.unlink(image)
        pytest.skip(f"cannot mount a loop device here: {r.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", folder], check=False, capture_output=True)
        os.unlink(image)


def free_bytes(folder: str) -> int:
    vfs = os.statvfs(folder)
    return vfs.f_bavail * vfs.f_frsize


def _meta(size: int) -> FileMeta:
    return FileMeta(group="g", name="f.bin", size=size, piece_size=PIECE, root="00" * 32)


def _open_too_big(disk: str, free: int) -> LocalError:
    """Open the partial file of a download 8 MiB bigger than ``free``; the error it raised."""
    meta = _meta(free + 8 * MIB)
    part = PartFile(os.path.join(disk, "out"), meta)
    try:
        with pytest.raises(LocalError) as err:
            part.open(b"\0" * 32 * meta.num_pieces)
    finally:
        part.close()
    return err.value


def test_a_file_too_big_for_the_disk_is_refused_without_taking_the_room_left(tmp_path) -> None:
    with small_ext4(str(tmp_path / "disk"), 40) as disk:
        before = free_bytes(disk)
        err = _open_too_big(disk, before)
        assert err.code is Code.NO_SPACE and "not enough free space" in err.message
        assert free_bytes(disk) >= before - MIB, "the refused download filled the disk"


def test_what_a_failed_reservation_took_is_given_back_except_verified_pieces(tmp_path) -> None:
    with small_ext4(str(tmp_path / "disk"), 40) as disk:
        out = os.path.join(disk, "out")
        pieces = [os.urandom(PIECE) for _ in range(4)]
        digests = b"".join(hashlib.sha256(p).digest() for p in pieces)
        os.makedirs(os.path.join(out, ".torrent-partial"), mode=0o700)
        with open(os.path.join(out, ".torrent-partial", "f.bin"), "wb") as f:
            f.write(pieces[0] + b"\0" * PIECE + pieces[2])  # an earlier run: pieces 0 and 2 are in
        part = PartFile(out, _meta(4 * PIECE))
        try:
            have = part.open(digests)
            assert [i for i in range(4) if i in have] == [0, 2]
            assert os.fstat(part.fd).st_blocks * 512 >= 4 * PIECE  # all four reserved
            part._release_unverified()  # what _reserve does when the reservation fails half-way
            assert os.fstat(part.fd).st_blocks * 512 < 3 * PIECE
            assert os.pread(part.fd, PIECE, 0) == pieces[0]
            assert os.pread(part.fd, PIECE, 2 * PIECE) == pieces[2]
            assert os.fstat(part.fd).st_size == 4 * PIECE
        finally:
            part.close()


@pytest.mark.parametrize("planted", ["folder", "file"])
def test_a_partial_folder_or_file_of_another_user_is_refused(tmp_path, planted: str) -> None:
    # A shared destination: another user made the partial folder (or the partial file in it)
    # first; what they can still change must not become our finished, "verified" file.
    if os.geteuid() != 0:
        pytest.skip("making files owned by another user needs root")
    out = tmp_path / "out"
    folder = out / ".torrent-partial"
    folder.mkdir(parents=True, mode=0o777)
    (folder / "f.bin").write_bytes(b"")
    os.chown(folder if planted == "folder" else folder / "f.bin", 65534, 65534)
    part = PartFile(str(out), _meta(4 * PIECE))
    try:
        with pytest.raises(LocalError) as err:
            part.open(b"\0" * 32 * 4)
    finally:
        part.close()
    assert err.value.code is Code.BAD_PATH and "belongs to another user" in err.value.message


def test_a_partial_folder_of_the_destinations_owner_is_used(tmp_path) -> None:
    # Root downloading into a user's folder where that user's own earlier run left the partial
    # folder (and what network file systems that map owners report): the destination's owner
    # could replace the finished file anyway, so their partial folder is fine.
    if os.geteuid() != 0:
        pytest.skip("making files owned by another user needs root")
    out = tmp_path / "out"
    folder = out / ".torrent-partial"
    folder.mkdir(parents=True, mode=0o700)
    os.chown(out, 1000, 1000)
    os.chown(folder, 1000, 1000)
    part = PartFile(str(out), _meta(4 * PIECE))
    try:
        assert len(part.open(b"\0" * 32 * 4)) == 0
    finally:
        part.close()


def test_room_taken_by_a_reservation_that_fails_half_way_is_given_back(tmp_path, monkeypatch) -> None:
    # The free space looked enough (someone else took it between our look and the
    # reservation): ext4 keeps what the failed fallocate took, so we give it back ourselves.
    import peer.piecewriter as pw

    class Plenty:
        def __init__(self, real: os.statvfs_result) -> None:
            self.f_blocks, self.f_frsize, self.f_bavail = real.f_blocks, real.f_frsize, 10**12

    real_fstatvfs = os.fstatvfs
    with small_ext4(str(tmp_path / "disk"), 40) as disk:
        before = free_bytes(disk)
        monkeypatch.setattr(pw.os, "fstatvfs", lambda fd: Plenty(real_fstatvfs(fd)))
        assert _open_too_big(disk, before).code is Code.NO_SPACE
        assert free_bytes(disk) >= before - MIB, "the failed reservation kept the disk full"
