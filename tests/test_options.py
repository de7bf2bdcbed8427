"""Command-line options are checked at start: a clear message and exit status 2, never a hang."""

from __future__ import annotations

import subprocess
import sys

import pytest

from peer.cli import build_parser
from tracker.cli import main as tracker_main

T = ["--tracker", "tcp://127.0.0.1:6000"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers: must be a whole number from 1 to 256"),
        (["--workers", "many"], "--workers: 'many' is not a whole number"),
        (["--in-flight", "0"], "--in-flight: must be a whole number from 1 to 256"),
        (["--per-holder", "0"], "--per-holder: must be a whole number from 1 to 256"),
        (["--upload-limit", "-5"], "--upload-limit: must be a positive number"),
        (["--upload-limit", "0"], "--upload-limit: must be a positive number"),
        (["--piece-size", "0"], "--piece-size: must be a power of two from 16K to 16M"),
        (["--piece-size", "100K"], "--piece-size: must be a power of two"),
        (["--piece-size", "32M"], "--piece-size: must be a power of two"),
        (["--piece-size", "lots"], "--piece-size: 'LOTS' is not a size"),
        (["--piece-timeout", "0"], "--piece-timeout: must be from 0.1 to 3600 seconds"),
        (["--listen", "udp://x:1"], "--listen: endpoint must look like tcp://HOST:PORT"),
        (["--advertise", "tcp://h:0"], "--advertise: endpoint must look like tcp://HOST:PORT (port 1-65535)"),
    ],
)
def test_peer_refuses_bad_options(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*T, *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_peer_needs_a_valid_tracker(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--tracker", "127.0.0.1:6000"])
    assert info.value.code == 2
    assert "--tracker: endpoint must look like tcp://HOST:PORT" in capsys.readouterr().err


def test_good_options_pass() -> None:
    args = build_parser().parse_args([*T, "--piece-size", "512K", "--workers", "2", "--upload-limit", "10M"])
    assert (args.piece_size, args.workers, args.upload_limit) == (512 * 1024, 2, 10 * 1024 * 1024)


def test_tracker_refuses_a_bad_bind(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        tracker_main(["--bind", "tcp://127.0.0.1"])
    assert info.value.code == 2
    assert "--bind: endpoint must look like tcp://HOST:PORT" in capsys.readouterr().err


def test_the_real_command_exits_2() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "peer", *T, "--workers", "0"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "--workers: must be a whole number from 1 to 256" in r.stderr
