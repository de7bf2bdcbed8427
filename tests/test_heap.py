"""The peer's malloc thresholds: set where the C library is glibc (this machine's is)."""

from __future__ import annotations

import subprocess
import sys


def test_a_peer_process_sets_glibcs_thresholds() -> None:
    code = "from peer.heap import keep_piece_buffers; print(keep_piece_buffers())"
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "True", out.stderr
