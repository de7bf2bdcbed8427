"""Raw transfer limits of this machine, to put our download throughput in proportion.

``tcp_baseline`` is one kernel TCP stream (``sendfile`` out, ``recv_into`` + ``pwrite`` in);
``zmq_baseline`` moves the same bytes as frames through a bare DEALER -> ROUTER pair, the
transport our peers use, without any protocol on top; with ``curve=True`` the pair talks CURVE,
as our piece sockets do by default, so the difference between the two rows is what libzmq's
encryption costs each end. Sender and receiver are separate processes, as a seeder and a
downloader are, with the peers' malloc settings (peer/heap.py); the receiver times itself from
connect to its last write, and each end reports its own CPU time.

Smoke run: ``.venv/bin/python scripts/bench_baselines.py FILE [--runs N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable

import zmq

from launch.processes import Process, report
from peer.heap import keep_piece_buffers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECV_BUF = 512 * 1024  # the receiver's preallocated buffer, as large as our default piece
FRAME = 512 * 1024
HWM = 16  # frames queued per zmq socket: bounds memory at HWM * frame on each side
CHILD_TIMEOUT_MS = 60_000  # a child stuck this long on one socket call gives up by itself
_OFFSET = struct.Struct("<Q")
_CURVE_ENV = "TORRENT_BENCH_CURVE"  # "server-public server-secret client-public client-secret"


def tcp_baseline(path: str, dest: str) -> dict[str, float]:
    """One TCP stream from ``sendfile`` to ``pwrite``: the most a single download could reach."""
    size = os.path.getsize(path)
    return _run_pair(["tcp-send", path], ["tcp-recv", dest, str(size)], size, dest)


def zmq_baseline(path: str, dest: str, frame: int = FRAME, *, curve: bool = False) -> dict[str, float]:
    """The same bytes as ``frame``-sized frames over bare DEALER -> ROUTER: zmq's own cost."""
    size = os.path.getsize(path)
    env = None
    if curve:  # throwaway keys for this pair only, handed to the children out of their argv
        server, client = zmq.curve_keypair(), zmq.curve_keypair()
        env = {**os.environ, _CURVE_ENV: b" ".join((*server, *client)).decode("ascii")}
    return _run_pair(["zmq-send", path, str(frame)], ["zmq-recv", dest, str(size)], size, dest, env)


def curve_baseline(path: str, dest: str) -> dict[str, float]:
    """``zmq_baseline`` over CURVE."""
    return zmq_baseline(path, dest, curve=True)


# --- parent side ------------------------------------------------------------------------------


def _run_pair(
    send: list[str], recv: list[str], size: int, dest: str, env: dict[str, str] | None = None
) -> dict[str, float]:
    """Start the sender, hand its port to the receiver, collect both ends' figures."""
    deadline = time.monotonic() + 30.0 + size / 10e6  # generous: 10 MB/s at worst
    procs: list[Process] = []
    try:
        sender = _spawn(send, env)
        procs.append(sender)
        port = sender.json_line("port", deadline - time.monotonic())["port"]
        receiver = _spawn([*recv, str(port)], env)
        procs.append(receiver)
        report = receiver.json_line("seconds", deadline - time.monotonic())
        sent = sender.json_line("cpu_s", deadline - time.monotonic())
        for p in procs:
            rc = p.p.wait(timeout=max(0.1, deadline - time.monotonic()))
            if rc != 0:
                tail = "\n".join(p.lines[-20:])
                raise RuntimeError(f"{p.name} exited with status {rc}:\n{tail}")
    finally:
        for p in procs:
            p.kill()  # no-op for a child that already exited; SIGKILL otherwise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dest)
    if report["bytes"] != size:
        raise RuntimeError(f"receiver got {report['bytes']} bytes of {size}")
    seconds = report["seconds"]
    return {
        "seconds": seconds,
        "mb_per_s": size / seconds / 1e6,
        "receiver_cpu_s": report["cpu_s"],
        "sender_cpu_s": sent["cpu_s"],
    }


def _spawn(args: list[str], env: dict[str, str] | None = None) -> Process:
    argv = [sys.executable, os.path.abspath(__file__), *args]
    return Process(argv, f"baseline {args[0]}", cwd=ROOT, env=env)


# --- children ---------------------------------------------------------------------------------


def _cpu_seconds() -> float:
    """User + system time of this process, all threads (zmq's I/O thread included)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _open_dest(dest: str, size: int) -> int:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(fd, size)
    return fd


def _tcp_send(path: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv, open(path, "rb") as f:
        srv.settimeout(CHILD_TIMEOUT_MS / 1000)
        report(port=srv.getsockname()[1])
        conn, _ = srv.accept()
        with conn:
            cpu0 = _cpu_seconds()
            conn.settimeout(None)  # blocking: a timeout would add a poll() before every sendfile
            conn.sendfile(f)
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(CHILD_TIMEOUT_MS / 1000)
            conn.recv(1)  # EOF once the receiver has written everything and closed
            report(cpu_s=_cpu_seconds() - cpu0)


def _tcp_recv(dest: str, size: str, port: str) -> None:
    total = int(size)
    buf = bytearray(RECV_BUF)
    view = memoryview(buf)
    fd = _open_dest(dest, total)
    try:
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        with socket.create_connection(("127.0.0.1", int(port)), timeout=CHILD_TIMEOUT_MS / 1000) as sock:
            sock.settimeout(None)  # blocking recv_into, no poll() per call; the parent keeps the deadline
            got = 0
            while got < total:
                n = sock.recv_into(buf)
                if n == 0:
                    break
                _pwrite_all(fd, view[:n], got)
                got += n
            seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    finally:
        os.close(fd)
    report(seconds=seconds, bytes=got, cpu_s=cpu)


def _curve(sock: zmq.Socket, server: bool) -> None:
    """CURVE on ``sock`` when the parent asked for it (no ZAP handler: any client key is let in)."""
    keys = os.environ.get(_CURVE_ENV, "").split()
    if not keys:
        return
    server_public, server_secret, client_public, client_secret = (k.encode("ascii") for k in keys)
    if server:
        sock.curve_secretkey, sock.curve_server = server_secret, True
    else:
        sock.curve_serverkey, sock.curve_publickey = server_public, client_public
        sock.curve_secretkey = client_secret


def _zmq_send(path: str, frame: str) -> None:
    keep_piece_buffers()
    step = int(frame)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    fd = os.open(path, os.O_RDONLY)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, HWM)
        sock.setsockopt(zmq.SNDTIMEO, CHILD_TIMEOUT_MS)
        sock.setsockopt(zmq.RCVTIMEO, CHILD_TIMEOUT_MS)
        _curve(sock, server=True)
        report(port=sock.bind_to_random_port("tcp://127.0.0.1"))
        size = os.fstat(fd).st_size
        cpu0 = _cpu_seconds()
        for offset in range(0, size, step):
            sock.send_multipart([_OFFSET.pack(offset), os.pread(fd, step, offset)], copy=False)
        sock.recv()  # the receiver's "done": only now may LINGER 0 drop what is queued (nothing)
        report(cpu_s=_cpu_seconds() - cpu0)
    finally:
        os.close(fd)
        sock.close(linger=0)
        ctx.term()


def _zmq_recv(dest: str, size: str, port: str) -> None:
    keep_piece_buffers()
    total = int(size)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    fd = _open_dest(dest, total)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, HWM)
        sock.setsockopt(zmq.RCVTIMEO, CHILD_TIMEOUT_MS)
        sock.setsockopt(zmq.SNDTIMEO, CHILD_TIMEOUT_MS)
        _curve(sock, server=False)
        cpu0, t0 = _cpu_seconds(), time.perf_counter()
        sock.connect(f"tcp://127.0.0.1:{int(port)}")
        got = 0
        ident = b""
        while got < total:
            ident_frame, head, data = sock.recv_multipart(copy=False)
            (offset,) = _OFFSET.unpack(head.bytes)
            _pwrite_all(fd, data.buffer, offset)
            got += len(data)
            ident = ident_frame.bytes
        seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
        sock.send_multipart([ident, b"done"])
    finally:
        os.close(fd)
        sock.close(linger=0)
        ctx.term()
    report(seconds=seconds, bytes=got, cpu_s=cpu)


_CHILDREN: dict[str, Callable[..., None]] = {
    "tcp-send": _tcp_send,
    "tcp-recv": _tcp_recv,
    "zmq-send": _zmq_send,
    "zmq-recv": _zmq_recv,
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in _CHILDREN:
        _CHILDREN[argv[0]](*argv[1:])
        return 0
    ap = argparse.ArgumentParser(description="Print the TCP and bare-zmq transfer baselines for FILE.")
    ap.add_argument("file", help="source file (its size sets the transfer size)")
    ap.add_argument("--runs", type=int, default=1, help="repetitions of each baseline (default 1)")
    ap.add_argument("--frame", type=int, default=FRAME, help=f"zmq frame size (default {FRAME})")
    args = ap.parse_args(argv)
    fd, dest = tempfile.mkstemp(prefix="bench-dest-")
    os.close(fd)
    try:
        for run in range(1, args.runs + 1):
            print(f"run {run} tcp {tcp_baseline(args.file, dest)}", flush=True)
            print(f"run {run} zmq {zmq_baseline(args.file, dest, args.frame)}", flush=True)
            print(f"run {run} curve {zmq_baseline(args.file, dest, args.frame, curve=True)}", flush=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
