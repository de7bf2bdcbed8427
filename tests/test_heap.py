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


IDLE_SEEDER = """
import ctypes, threading
from peer.budget import give_memory_back
from peer.heap import keep_piece_buffers
keep_piece_buffers()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes, libc.memset.argtypes = [ctypes.c_void_p], [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
rss = lambda: next(int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmRSS"))
freed, go = threading.Event(), threading.Event()
def io_thread():  # as ZeroMQ's I/O thread: CURVE copies of 1 MiB pieces, freed when sent
    bufs = [libc.malloc((1 << 20) + 64) for _ in range(30)]
    for b in bufs:
        libc.memset(b, 1, (1 << 20) + 64)
    for b in bufs:
        libc.free(b)
    freed.set()
    go.wait()  # and it lives on
base = rss()
t = threading.Thread(target=io_thread)
t.start()
freed.wait()
give_memory_back()
print(rss() - base)
go.set()
t.join()
"""


def test_memory_freed_in_another_thread_goes_back_after_a_quiet_spell() -> None:
    out = subprocess.run(
        [sys.executable, "-c", IDLE_SEEDER], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) < 8, f"{out.stdout.strip()} MiB of 30 freed stayed resident"
