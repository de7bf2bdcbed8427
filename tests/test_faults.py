"""Faults a user meets, with real tracker and peer processes: nothing lost, nothing hung.

Lost-share races, planted symlinks and look-alike names at the destination, the longest file
names, a full disk where the peer keeps its state, and a damaged tracker database.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from harness import ROOT, Swarm, make_file, read, wait_until

from launch.processes import TrackerProcess

pytestmark = pytest.mark.slow


def holds_for(cond: Callable[[], bool], seconds: float, what: str) -> None:
    """``cond`` stays true for the whole window (checked continuously until it ends)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert cond(), f"{what} stopped holding"


def online_count(peer, group: str, name: str) -> int:  # type: ignore[no-untyped-def]
    for line in peer.ok(f"list_files {group}").lines:
        fields = line.split("\t")
        if fields[0] == name:
            return int(fields[2].split()[0])
    return -1


# --- lost or wrong data ---------------------------------------------------------------------


def test_upload_right_after_login_stays_listed(swarm: Swarm) -> None:
    """The heartbeat's re-announce after login must never wipe a share made just after it."""
    a = swarm.peer("a", login=False)
    b = swarm.peer("b")
    a.ok("login a pw-a")
    swarm.group(a, "g", b)
    a.ok("logout")
    for i in range(12):
        path = os.path.join(swarm.tmp, "files", f"f{i}.bin")
        make_file(path, 1000 + i, seed=i)
        a.ok("login a pw-a")
        a.ok(f"upload_file {path} g")  # at once, while the presence thread re-announces
        # Listed, and still listed over the next heartbeats (the race removed it a moment later).
        wait_until(lambda i=i: online_count(b, "g", f"f{i}.bin") == 1, timeout=10, what=f"f{i}.bin online")
        holds_for(lambda i=i: online_count(b, "g", f"f{i}.bin") == 1, seconds=1.5, what=f"f{i}.bin online")
        a.ok("logout")


def test_a_symlink_planted_at_the_partial_file_is_not_followed(swarm: Swarm) -> None:
    a = swarm.peer("a")
    b = swarm.peer("b")
    swarm.group(a, "g", b)
    make_file(f"{swarm.tmp}/files/a.bin", 200_000, seed=1)
    a.ok(f"upload_file {swarm.tmp}/files/a.bin g")
    victim = os.path.join(swarm.tmp, "victim.txt")
    with open(victim, "w") as f:
        f.write("precious")
    out = os.path.join(swarm.tmp, "out")
    os.makedirs(os.path.join(out, ".torrent-partial"))
    os.symlink(victim, os.path.join(out, ".torrent-partial", "a.bin"))
    b.ok(f"download_file g a.bin {out}")
    err = b.wait_for(r"download of \[g\] a.bin failed").string
    assert "symbolic link" in err
    assert read(victim) == b"precious"
    # A planted symlinked folder is refused the same way.
    shutil.rmtree(os.path.join(out, ".torrent-partial"))
    os.symlink(swarm.tmp, os.path.join(out, ".torrent-partial"))
    b.ok(f"download_file g a.bin {out}")
    assert "symbolic link" in b.wait_for(r"download of \[g\] a.bin failed.*symbolic", timeout=30).string


def test_a_finished_file_named_like_a_partial_is_left_alone(swarm: Swarm) -> None:
    a = swarm.peer("a")
    b = swarm.peer("b")
    swarm.group(a, "g", b)
    data = make_file(f"{swarm.tmp}/files/a.bin", 300_000, seed=2)
    a.ok(f"upload_file {swarm.tmp}/files/a.bin g")
    out = os.path.join(swarm.tmp, "out")
    lookalike = make_file(os.path.join(out, "a.bin.part"), 5000, seed=3)
    b.ok(f"download_file g a.bin {out}")
    b.wait_for(r"download complete: \[g\] a.bin")
    assert read(os.path.join(out, "a.bin")) == data
    assert read(os.path.join(out, "a.bin.part")) == lookalike


def test_the_longest_names_download(swarm: Swarm) -> None:
    a = swarm.peer("a")
    b = swarm.peer("b")
    swarm.group(a, "g", b)
    for length in (251, 255):
        name = "n" * (length - 4) + ".bin"
        data = make_file(os.path.join(swarm.tmp, "files", name), 70_000 + length, seed=length)
        a.ok(f"upload_file {swarm.tmp}/files/{name} g")
        b.ok(f"download_file g {name} {swarm.tmp}/out")
        b.wait_for(rf"download complete: \[g\] n+\.bin.*{70_000 + length}|download complete: \[g\] {name}")
        assert read(os.path.join(swarm.tmp, "out", name)) == data


# --- a full disk where the peer keeps its state ---------------------------------------------


@contextlib.contextmanager
def small_disk(path: str, size: str) -> Iterator[str]:
    """A tmpfs of ``size`` mounted at ``path`` (root only), unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], check=False, capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def fill(folder: str) -> None:
    """Write until the disk under ``folder`` is full."""
    fd = os.open(os.path.join(folder, "filler"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_full_home_refuses_an_upload_cleanly_and_the_peer_goes_on(swarm: Swarm) -> None:
    a = swarm.peer("a")
    with small_disk(os.path.join(swarm.tmp, "c"), "2m") as home:
        c = swarm.peer("c")
        assert os.path.dirname(c.home.rstrip("/")) == swarm.tmp and c.home.endswith("/c")
        swarm.group(a, "g", c)
        make_file(f"{swarm.tmp}/files/big.bin", 100_000, seed=4)
        fill(home)
        err = c.refused(f"upload_file {swarm.tmp}/files/big.bin g", "no space left")
        assert "share list" in err
        assert "big.bin" not in a.ok("list_files g").text  # the tracker was never told
        c.ok("status")  # alive and well
        os.unlink(os.path.join(home, "filler"))
        c.ok(f"upload_file {swarm.tmp}/files/big.bin g")  # space again: it works
        assert online_count(a, "g", "big.bin") == 1


def test_full_home_does_not_hang_a_finished_download(swarm: Swarm) -> None:
    a = swarm.peer("a", "--upload-limit", "2M")
    with small_disk(os.path.join(swarm.tmp, "c"), "2m") as home:
        c = swarm.peer("c")
        swarm.group(a, "g", c)
        data = make_file(f"{swarm.tmp}/files/f.bin", 3_000_000, seed=5)
        a.ok(f"upload_file {swarm.tmp}/files/f.bin g")
        out = os.path.join(swarm.tmp, "out")  # the destination is on the big disk
        c.ok(f"download_file g f.bin {out}")
        fill(home)  # the home fills up while the download runs
        r = c.run("wait", timeout=60)
        assert any("download complete" in line and "not shared" in line for line in r.lines), r.lines
        assert read(os.path.join(out, "f.bin")) == data
        c.ok("status")


def test_a_destination_without_room_for_the_file_fails_at_once_and_says_so(swarm: Swarm) -> None:
    """The partial file's blocks are reserved when the download starts: a disk that cannot
    hold the file is named at once, not after the bytes that did fit were fetched."""
    a = swarm.peer("a")
    c = swarm.peer("c")
    swarm.group(a, "g", c)
    make_file(f"{swarm.tmp}/files/f.bin", 3_000_000, seed=6)
    a.ok(f"upload_file {swarm.tmp}/files/f.bin g")
    with small_disk(os.path.join(swarm.tmp, "small"), "2m") as out:
        c.ok(f"download_file g f.bin {out}")
        r = c.run("wait", timeout=30)
        failed = [line for line in r.lines if "download of" in line and "failed" in line]
        assert failed and "not enough free space" in failed[0] and "3,000,000 bytes" in failed[0], r.lines
        c.ok("status")  # the peer goes on


# --- a damaged tracker database -------------------------------------------------------------


def start_tracker(db: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run the tracker only as far as it gets (it must refuse), or until it says it listens."""
    argv = [sys.executable, "-m", "tracker", "--bind", "tcp://127.0.0.1:0", "--db", db, *extra]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)


def test_an_empty_database_file_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "state.db"
    db.write_bytes(b"")
    r = start_tracker(str(db))
    assert r.returncode == 1
    assert "empty file, not a tracker database" in r.stderr
    assert db.stat().st_size == 0  # not silently made into a new, empty tracker


def damage(db: str) -> None:
    """Zero one page in the middle of the file, as a bad sector would."""
    page = 4096
    size = os.path.getsize(db)
    with open(db, "r+b") as f:
        f.seek((size // page // 2) * page)
        f.write(b"\0" * page)


def test_a_damaged_database_is_refused_at_start_and_found_by_check(swarm: Swarm) -> None:
    a = swarm.peer("a")
    for i in range(300):
        a.ok(f"create_group grp{i:03d}-{'x' * 40}")
    assert swarm.tracker is not None
    db = swarm.tracker.db
    swarm.tracker.kill()  # SIGKILL: the WAL holds recent writes; checkpoint them first
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    damage(db)
    check = start_tracker(db, "--check")
    assert check.returncode == 1 and "damaged" in check.stderr
    r = start_tracker(db)
    assert r.returncode == 1
    assert "damaged" in r.stderr and "backup" in r.stderr


def test_backup_of_a_running_tracker_is_complete(swarm: Swarm) -> None:
    a = swarm.peer("a")
    for i in range(20):
        a.ok(f"create_group g{i}")
    assert swarm.tracker is not None
    db = swarm.tracker.db
    copy = os.path.join(swarm.tmp, "copy.db")
    r = start_tracker(db, "--backup", copy)  # while the tracker runs, writes still in its WAL
    assert r.returncode == 0, r.stderr
    assert start_tracker(copy, "--check").returncode == 0
    # A tracker on the backup (same key pair) has every group.
    keys = swarm.tracker_keys
    restored = TrackerProcess(copy, "tcp://127.0.0.1:0", "--keys", keys, cwd=ROOT)
    swarm.procs.append(restored)
    probe = swarm.peer("probe", "--tracker", restored.endpoint)
    names = {line.split("\t")[0] for line in probe.ok("list_groups").lines}
    assert {f"g{i}" for i in range(20)} <= names
    assert start_tracker(db, "--backup", copy).returncode == 1  # never overwrites a file


# --- smaller --------------------------------------------------------------------------------


def test_passwords_come_from_a_file_or_the_environment_never_the_process_list(
    swarm: Swarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``-c 'login u pw'`` shows the password to every local user in ``ps``; a password file
    or TORRENT_PASSWORD keep it out, and with neither (and no terminal) the error says how."""
    secret_file = os.path.join(swarm.tmp, "pw")
    with open(secret_file, "w", encoding="utf-8") as f:
        f.write("file-pw-7731\n")
    os.chmod(secret_file, 0o600)
    a = swarm.peer("a", "--password-file", secret_file, login=False, create=False)
    a.ok("create_user a")
    a.ok("login a")
    monkeypatch.setenv("TORRENT_PASSWORD", "env-pw-5519")
    b = swarm.peer("b", login=False, create=False)
    b.ok("create_user b")
    b.ok("login b")
    monkeypatch.delenv("TORRENT_PASSWORD")
    c = swarm.peer("c", login=False, create=False)
    c.refused("login b", "no password: give it after the user name, set TORRENT_PASSWORD or use --pass")
    c.ok("login b env-pw-5519")  # the password b was created with came from its environment
    c.ok("logout")
    c.refused("login a env-pw-5519", "password")
    c.ok("login a file-pw-7731")
    for p in (a, b):
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            argv = f.read()
        assert b"file-pw-7731" not in argv and b"env-pw-5519" not in argv
