"""scripts/bench: how fast Torrent moves data, beside this machine's raw limits.

Rows (each the median of --reps runs, with min and max):
  download from K holder processes (default piece size), and a piece-size sweep at the largest K;
  the same bytes over one plain TCP stream and through a bare pyzmq DEALER/ROUTER pair;
  the downloader's peak RSS for a file of --mem-size;
  tracker requests/s for reads and durable writes, against a bare pyzmq ROUTER echo.
The figures are printed as a table and written as JSON (--json).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import orjson
from bench_baselines import tcp_baseline, zmq_baseline
from bench_control import control_bench
from bench_download import DownloadBench, make_source, recycle_page_cache, summarize
from rich.console import Console
from rich.table import Table

from peer.argtypes import parse_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_baseline(src: str, dest: str) -> dict[str, float]:
    """The machine's ceiling for the last step of every download: writing new file pages."""
    size = os.path.getsize(src)
    block = os.urandom(512 * 1024)
    fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for off in range(0, size, len(block)):
            os.pwrite(fd, block[: size - off], off)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        os.close(fd)
        os.unlink(dest)
    return {"seconds": seconds, "mb_per_s": size / seconds / 1e6, "receiver_cpu_s": cpu}


def baseline(fn, src: str, workdir: str, reps: int) -> dict:
    runs = []
    for _ in range(reps):
        recycle_page_cache(workdir, os.path.getsize(src))
        runs.append(fn(src, os.path.join(workdir, "baseline.out")))
    return {
        "runs": runs,
        "mb_per_s": summarize([r["mb_per_s"] for r in runs]),
        "cpu_s_per_gb": summarize([r["receiver_cpu_s"] / (os.path.getsize(src) / 1e9) for r in runs]),
    }


def download_row(workdir: str, src: str, k: int, piece: str, reps: int, peer_args: list[str]) -> dict:
    bench = DownloadBench(os.path.join(workdir, f"k{k}-{piece}"), src, k, piece, peer_args)
    try:
        return bench.runs(reps)
    finally:
        bench.close()


def fmt(stat: dict, digits: int = 0) -> str:
    return f"{stat['median']:.{digits}f} [{stat['min']:.{digits}f}-{stat['max']:.{digits}f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", type=parse_size, default=parse_size("1G"), help="file size (default 1G)")
    ap.add_argument("--mem-size", type=parse_size, default=parse_size("2G"), help="file for the RSS row (2G)")
    ap.add_argument("--holders", default="1,2,4", help="K values (default 1,2,4)")
    ap.add_argument("--piece-size", default="1M", help="piece size of the K rows (default 1M)")
    ap.add_argument(
        "--sweep", default="256K,512K,2M,4M", help="other piece sizes at the largest K ('' for none)"
    )
    ap.add_argument("--reps", type=int, default=5, help="runs per row (default 5)")
    ap.add_argument("--control-seconds", type=float, default=3.0, help="seconds per control-plane row")
    ap.add_argument("--peer-args", default="", help="extra downloader options, e.g. '--workers 2'")
    ap.add_argument(
        "--quick", action="store_true", help="tiny sizes, one run each: keeps the script working in CI"
    )
    ap.add_argument("--dir", default=os.path.join(ROOT, "data", "bench"))
    ap.add_argument("--json", default=None, help="where to write the figures (default DIR/results.json)")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.mem_size, args.reps, args.control_seconds = 16 << 20, 32 << 20, 1, 0.5
        args.holders, args.sweep = "1,2", "512K"
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # logs and pipes: keep each row on one line
    ks = [int(k) for k in args.holders.split(",")]
    sweep = [s for s in args.sweep.split(",") if s]
    peer_args = args.peer_args.split()
    workdir = os.path.join(args.dir, "work")
    os.makedirs(workdir, exist_ok=True)
    t_start = time.monotonic()
    src = make_source(args.dir, args.size)
    results: dict = {
        "size": args.size,
        "reps": args.reps,
        "piece_size": args.piece_size,
        "cpus": os.cpu_count(),
    }

    console.print(f"[bold]baselines[/] ({args.size >> 20} MiB, {args.reps} runs each)")
    results["tcp"] = baseline(tcp_baseline, src, workdir, args.reps)
    results["zmq"] = baseline(zmq_baseline, src, workdir, args.reps)
    results["write"] = baseline(write_baseline, src, workdir, args.reps)
    results["download"] = {}
    for k in ks:
        console.print(f"[bold]download[/] from {k} holder(s), piece size {args.piece_size}")
        results["download"][f"k{k}-{args.piece_size}"] = download_row(
            workdir, src, k, args.piece_size, args.reps, peer_args
        )
    for piece in sweep:
        console.print(f"[bold]download[/] from {max(ks)} holders, piece size {piece}")
        results["download"][f"k{max(ks)}-{piece}"] = download_row(
            workdir, src, max(ks), piece, args.reps, peer_args
        )
    console.print(f"[bold]memory[/]: {args.mem_size >> 20} MiB file from {max(ks)} holders")
    mem_src = make_source(args.dir, args.mem_size)
    results["memory"] = download_row(workdir, mem_src, max(ks), args.piece_size, 1, peer_args)
    console.print("[bold]control plane[/]")
    results["control"] = control_bench(os.path.join(workdir, "control"), duration=args.control_seconds)
    results["elapsed_s"] = time.monotonic() - t_start

    table = Table(title=f"Torrent benchmark: {args.size >> 20} MiB, median \\[min-max] of {args.reps} run(s)")
    for col in ("row", "MB/s", "CPU s/GB", "peak RSS MiB", "x TCP", "x ZMQ"):
        table.add_column(col, justify="right" if col != "row" else "left")
    tcp, zq = results["tcp"]["mb_per_s"]["median"], results["zmq"]["mb_per_s"]["median"]
    limits = (
        ("write", "page-cache write alone (pwrite 512 KiB from memory)", "", ""),
        ("tcp", "plain TCP stream (sendfile -> recv_into+pwrite)", "1.00", ""),
        ("zmq", "bare pyzmq DEALER->ROUTER, 512 KiB frames + pwrite", "", "1.00"),
    )
    for key, label, x_tcp, x_zmq in limits:
        row = results[key]
        table.add_row(label, fmt(row["mb_per_s"]), fmt(row["cpu_s_per_gb"], 2), "", x_tcp, x_zmq)
    for name, row in results["download"].items():
        k, piece = name.split("-")
        med = row["mb_per_s"]["median"]
        table.add_row(
            f"download, {k[1:]} holder(s), {piece} pieces",
            fmt(row["mb_per_s"]),
            fmt(row["cpu_s_per_gb"], 2),
            fmt(row["peak_rss_mib"]),
            f"{med / tcp:.2f}",
            f"{med / zq:.2f}",
        )
    mem = results["memory"]
    table.add_row(
        f"download of {args.mem_size >> 20} MiB (memory)",
        fmt(mem["mb_per_s"]),
        fmt(mem["cpu_s_per_gb"], 2),
        fmt(mem["peak_rss_mib"]),
        "",
        "",
    )
    console.print(table)
    c = results["control"]
    ctable = Table(title=f"Tracker control plane: 50 concurrent clients, {args.control_seconds:.0f}s per row")
    ctable.add_column("row")
    ctable.add_column("requests/s", justify="right")
    ctable.add_column("x echo", justify="right")
    for key, label in (
        ("echo_rps", "bare pyzmq ROUTER echo (orjson)"),
        ("read_list_files_rps", "read: list_files"),
        ("read_holders_rps", "read: holders of a file"),
        ("write_create_group_rps", "durable write: create_group"),
        ("write_join_group_rps", "durable write: join_group"),
    ):
        ctable.add_row(label, f"{c[key]:.0f}", f"{c[key] / c['echo_rps']:.2f}")
    console.print(ctable)
    acked, found = c["writes_acknowledged"], c["writes_found_after_sigkill"]
    console.print(f"acknowledged writes {acked}, found after SIGKILL and restart {found}")
    out = args.json or os.path.join(args.dir, "results.json")
    with open(out, "wb") as f:
        f.write(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    console.print(f"figures written to {out} ({results['elapsed_s']:.0f}s)")
    return 0 if c["writes_found_after_sigkill"] >= c["writes_acknowledged"] else 1


if __name__ == "__main__":
    sys.exit(main())
