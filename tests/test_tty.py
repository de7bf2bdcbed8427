"""The shell under a real pseudo-terminal: line editing, and the live `watch` view."""

from __future__ import annotations

import sys

import pexpect
import pytest
from harness import ROOT, Swarm, make_file

pytestmark = pytest.mark.slow
PROMPT = r"> "


def spawn_shell(swarm: Swarm, home: str) -> pexpect.spawn:
    assert swarm.tracker is not None
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "peer",
            "--tracker",
            swarm.tracker.endpoint,
            f"--tracker-key={swarm.tracker.key}",
            "--home",
            home,
        ],
        cwd=ROOT,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 160),
    )
    child.expect("type help for commands")
    child.expect(PROMPT)
    return child


def test_line_editing_and_watch(swarm: Swarm) -> None:
    seed = swarm.peer("seed", "--piece-size", "64K", "--upload-limit", "2M")
    src = f"{swarm.tmp}/src/film.bin"
    data = make_file(src, 4 << 20)
    seed.ok("create_group g")
    seed.ok(f"upload_file {src} g")

    child = spawn_shell(swarm, f"{swarm.tmp}/tty-home")
    try:
        # Type the command with a typo, go to the start of the line (Ctrl-A), fix it, run it.
        child.send("reate_user tina pw-tina")
        child.send("\x01")  # Ctrl-A: beginning of line
        child.send("c\r")
        child.expect("user tina created")
        child.expect(PROMPT)
        # Up-arrow history recalls the last line; Ctrl-U clears it; then log in.
        child.send("\x1b[A\x15login tina pw-tina\r")
        child.expect("logged in as tina")
        child.sendline("join_group g")
        child.expect("asked to join g")
        seed.ok("accept_request g tina")
        child.sendline(f"download_file g film.bin {swarm.tmp}/tty-out")
        child.expect("in the background")
        child.sendline("watch")
        child.expect(r"\[g\] film\.bin \(tina\)")
        child.expect(r"MB/s")
        child.expect(r"1 in use: seed")
        child.expect(r"download complete: \[g\] film.bin", timeout=60)
        child.expect(PROMPT)
        child.sendline("show_downloads")
        child.expect(r"\[C\] \[g\] film.bin")
        child.sendline("quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    with open(f"{swarm.tmp}/tty-out/film.bin", "rb") as f:
        assert f.read() == data
