"""scripts/bench: how fast Torrent moves data and answers requests, beside libtorrent and this
machine's raw limits, in one run.

Sections (all by default; ``--only a,b`` runs some):
  baselines   one plain TCP stream, a bare pyzmq DEALER/ROUTER pair, page-cache writes alone,
              O_DIRECT writes alone and SHA-256 alone (the floor of a downloader's CPU per GB);
  download    our downloader from K local holder processes, pieces encrypted and --plain-pieces,
  libtorrent  ... and libtorrent on the same file and K, alternating with ours every repetition,
              on recycled and on fresh pages, with the ratios ours/libtorrent per condition;
  memory      our downloader's peak RSS for a file of --mem-size;
  sweep       other piece sizes at the largest K (only with --sweep SIZES);
  shaped      ours and libtorrent with each holder behind its own rate-limited link (network
              namespaces, tc tbf; root only, otherwise skipped with the reason);
  control     tracker requests/s, reads and durable writes, SQLite and PostgreSQL (1 and 2
              trackers), against a bare echo, with a SIGKILL durability check;
  push        how fast a running download sees a dead holder and a new one (1 tracker on SQLite,
              2 on PostgreSQL with holders and downloader on different trackers).
Each figure is the median of several runs with min and max; the JSON file (--json) has every run.

``scripts/bench --scale [--quick]`` runs the scale benchmark instead (scripts/bench_scale.py:
10,000 simulated peers on the wire, a login burst, listings of 20,000 files, a 60-downloader
swarm); it takes its own options (``--scale --help``).
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import bench_report
import orjson
from bench_baselines import curve_baseline, tcp_baseline, zmq_baseline
from bench_compare import compare_rows, shaped_rows
from bench_control import control_rows
from bench_download import PAGE_CONDITIONS, DownloadBench, make_source, recycle_page_cache, summarize
from bench_netns import Skip
from bench_push import push_rows
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from rich.console import Console

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


def direct_write_baseline(src: str, dest: str) -> dict[str, float]:
    """Our downloader's write step alone: 1 MiB pieces copied into an aligned buffer and written
    with O_DIRECT (peer/piecewriter.py), in random order as pieces arrive."""
    piece = 1 << 20
    count = max(1, os.path.getsize(src) // piece)
    size = count * piece
    data = os.urandom(piece)
    buf = mmap.mmap(-1, piece)
    view = memoryview(buf)
    order = list(range(count))
    random.shuffle(order)
    fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        dfd = os.open(dest, os.O_WRONLY | os.O_DIRECT)
        try:
            cpu0, t0 = time.process_time(), time.perf_counter()
            for i in order:
                view[:] = data
                os.pwrite(dfd, view, i * piece)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        finally:
            os.close(dfd)
    finally:
        view.release()
        buf.close()
        os.close(fd)
        os.unlink(dest)
    return {"seconds": seconds, "mb_per_s": size / seconds / 1e6, "receiver_cpu_s": cpu}


def sha256_baseline(src: str, dest: str) -> dict[str, float]:
    """Verifying every piece, alone: SHA-256 over the file in 1 MiB pieces from memory (hashlib,
    which uses the CPU's SHA extensions where it has them). ``dest`` is not used."""
    piece = 1 << 20
    count = max(1, os.path.getsize(src) // piece)
    size = count * piece
    pieces = [os.urandom(piece) for _ in range(64)]  # 64 MiB: more than the caches hold
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(count):
        hashlib.sha256(pieces[i % len(pieces)]).digest()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"seconds": seconds, "mb_per_s": size / seconds / 1e6, "receiver_cpu_s": cpu}


def aesgcm_baseline(src: str, dest: str) -> dict[str, float]:
    """What sealing pieces in the application would cost a receiver instead of CURVE: AES-256-GCM
    decryption (``cryptography``, AES-NI) of 1 MiB pieces into one reused buffer. Not used by
    the peers; a figure for a design choice (docs/performance.md). ``dest`` is not used."""
    piece = 1 << 20
    count = max(1, os.path.getsize(src) // piece)
    size = count * piece
    aead, nonce = AESGCM(AESGCM.generate_key(bit_length=256)), os.urandom(12)
    sealed = [aead.encrypt(nonce, os.urandom(piece), None) for _ in range(64)]
    out = bytearray(piece)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(count):
        aead.decrypt_into(nonce, sealed[i % len(sealed)], None, out)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"seconds": seconds, "mb_per_s": size / seconds / 1e6, "receiver_cpu_s": cpu}


def baseline(fn: Callable[[str, str], dict[str, float]], src: str, workdir: str, reps: int) -> dict[str, Any]:
    """``reps`` runs of one raw-transfer baseline, each on recycled pages, as our rows are."""
    runs = []
    for _ in range(reps):
        recycle_page_cache(workdir, os.path.getsize(src))
        runs.append(fn(src, os.path.join(workdir, "baseline.out")))
    gb = os.path.getsize(src) / 1e9
    out = {
        "runs": runs,
        "mb_per_s": summarize([r["mb_per_s"] for r in runs]),
        "cpu_s_per_gb": summarize([r["receiver_cpu_s"] / gb for r in runs]),
    }
    if all("sender_cpu_s" in r for r in runs):
        out["sender_cpu_s_per_gb"] = summarize([r["sender_cpu_s"] / gb for r in runs])
    return out


SECTIONS = ("baselines", "download", "libtorrent", "memory", "sweep", "shaped", "control", "push")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="scripts/bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", default="", help=f"comma list of sections, of {', '.join(SECTIONS)}")
    ap.add_argument("--size", type=parse_size, default=parse_size("1G"), help="file size (default 1G)")
    ap.add_argument("--mem-size", type=parse_size, default=parse_size("2G"), help="file for the RSS row (2G)")
    ap.add_argument("--holders", default="4", help="K values of the download rows (default 4)")
    ap.add_argument("--piece-size", default="1M", help="piece size of the K rows (default 1M)")
    ap.add_argument("--sweep", default="", help="other piece sizes at the largest K, e.g. 256K,512K,2M")
    ap.add_argument("--pages", default=",".join(PAGE_CONDITIONS), help="page conditions of the download rows")
    ap.add_argument("--reps", type=int, default=5, help="runs per download row (default 5)")
    ap.add_argument("--shaped-size", type=parse_size, default=parse_size("1G"), help="file over shaped links")
    ap.add_argument("--shaped-reps", type=int, default=3, help="runs per shaped row (default 3)")
    ap.add_argument("--rates", default="400,200,100,50", help="Mbit/s of each shaped link")
    ap.add_argument("--control-seconds", type=float, default=3.0, help="seconds per control-plane phase")
    ap.add_argument("--control-clients", type=int, default=50, help="closed-loop control clients (50)")
    ap.add_argument("--push-size", type=parse_size, default=parse_size("256M"), help="file of the push rows")
    ap.add_argument("--push-reps", type=int, default=5, help="repetitions of each push row (default 5)")
    ap.add_argument("--peer-args", default="", help="extra downloader options, e.g. '--workers 2'")
    ap.add_argument(
        "--quick", action="store_true", help="tiny sizes, one run each: keeps the script working in CI"
    )
    ap.add_argument("--dir", default=os.path.join(ROOT, "data", "bench"))
    ap.add_argument("--json", default=None, help="where to write the figures (default DIR/results.json)")
    args = ap.parse_args(argv)
    args.sections = (
        set(args.only.split(",")) if args.only else set(SECTIONS) - ({"sweep"} if not args.sweep else set())
    )
    if args.sections - set(SECTIONS):
        ap.error(
            f"unknown sections {sorted(args.sections - set(SECTIONS))}; choose from {', '.join(SECTIONS)}"
        )
    if args.quick:
        args.size, args.mem_size, args.reps, args.control_seconds = 16 << 20, 32 << 20, 1, 0.5
        args.holders, args.control_clients, args.push_reps, args.push_size = "2", 10, 1, 32 << 20
        args.shaped_size, args.shaped_reps, args.rates = 16 << 20, 1, "200,50"
    return args


def run_downloads(args: argparse.Namespace, src: str, workdir: str, console: Console) -> dict[str, Any]:
    """The comparison rows for every K, ours and libtorrent alternating."""
    rows: dict[str, Any] = {}
    pages = args.pages.split(",")
    for k in [int(k) for k in args.holders.split(",")]:
        console.print(f"[bold]downloads[/] from {k} holders, {'/'.join(pages)} pages, {args.reps} runs each")
        rows |= compare_rows(
            workdir,
            src,
            k,
            args.piece_size,
            args.reps,
            pages,
            args.peer_args.split(),
            ours="download" in args.sections,
            libtorrent="libtorrent" in args.sections,
        )
    return rows


def run_ours_only(args: argparse.Namespace, src: str, workdir: str, console: Console) -> dict[str, Any]:
    """The piece-size sweep and the memory row: our downloader alone, on recycled pages."""
    rows: dict[str, Any] = {}
    k, peer_args = max(int(k) for k in args.holders.split(",")), args.peer_args.split()
    jobs = [
        (f"{k} holders, {piece} pieces", src, piece, args.reps) for piece in args.sweep.split(",") if piece
    ]
    jobs = jobs if "sweep" in args.sections else []
    if "memory" in args.sections:
        mem_src = make_source(args.dir, args.mem_size)
        jobs.append((f"{args.mem_size >> 20} MiB file (memory)", mem_src, args.piece_size, 1))
    for label, path, piece, reps in jobs:
        console.print(f"[bold]download[/], ours alone: {label}")
        bench = DownloadBench(os.path.join(workdir, f"k{k}-{piece}"), path, k, piece, peer_args)
        try:
            rows[label] = bench.runs(reps)
        finally:
            bench.close()
    return rows


def run_shaped(args: argparse.Namespace, workdir: str, console: Console) -> dict[str, Any]:
    console.print(f"[bold]shaped links[/] {args.rates} Mbit/s, {args.shaped_size >> 20} MiB")
    src = make_source(args.dir, args.shaped_size)
    rates = [float(r) for r in args.rates.split(",")]
    try:
        return shaped_rows(workdir, src, args.shaped_reps, rates)
    except Skip as e:
        console.print(f"skip shaped links: {e}")
        return {"skipped": str(e)}


def run_sections(args: argparse.Namespace, console: Console, results: dict[str, Any]) -> None:
    workdir = os.path.join(args.dir, "work")
    os.makedirs(workdir, exist_ok=True)
    on = args.sections
    src = make_source(args.dir, args.size) if on & {"baselines", "download", "libtorrent", "sweep"} else ""
    if "baselines" in on:
        console.print(f"[bold]baselines[/] ({args.size >> 20} MiB, {args.reps} runs each)")
        for key, fn in (
            ("tcp", tcp_baseline),
            ("zmq", zmq_baseline),
            ("curve", curve_baseline),
            ("write", write_baseline),
            ("direct", direct_write_baseline),
            ("sha256", sha256_baseline),
            ("aesgcm", aesgcm_baseline),
        ):
            results[key] = baseline(fn, src, workdir, args.reps)
    if on & {"download", "libtorrent"}:
        results["compare"] = run_downloads(args, src, workdir, console)
    if on & {"sweep", "memory"}:
        results["download"] = run_ours_only(args, src, workdir, console)
    if "shaped" in on:
        results["shaped"] = run_shaped(args, workdir, console)
    if "control" in on:
        console.print("[bold]control plane[/]: SQLite x1, PostgreSQL x1, PostgreSQL x2")
        results["control"] = control_rows(
            os.path.join(workdir, "control"), duration=args.control_seconds, clients=args.control_clients
        )
    if "push" in on:
        console.print("[bold]push latencies[/]: SQLite x1, PostgreSQL x2")
        push_src = make_source(args.dir, args.push_size)
        results["push"] = push_rows(os.path.join(workdir, "push"), push_src, args.push_reps)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--scale" in argv:
        import bench_scale

        return bench_scale.main([a for a in argv if a != "--scale"])
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # logs and pipes: keep each row on one line
    t_start = time.monotonic()
    results: dict[str, Any] = {"size": args.size, "reps": args.reps, "piece_size": args.piece_size}
    results |= {
        "cpus": os.cpu_count(),
        "sections": sorted(args.sections),
        "control_clients": args.control_clients,
    }
    run_sections(args, console, results)
    results["elapsed_s"] = time.monotonic() - t_start
    for show in (bench_report.baselines, bench_report.downloads, bench_report.shaped):
        show(console, results)
    bench_report.control(console, results)
    bench_report.push(console, results)
    out = args.json or os.path.join(args.dir, "results.json")
    with open(out, "wb") as f:
        f.write(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    console.print(f"figures written to {out} ({results['elapsed_s']:.0f}s)")
    lost = [
        n
        for n, r in results.get("control", {}).get("rows", {}).items()
        if r["writes_found_after_sigkill"] < r["writes_acknowledged"]
    ]
    if lost:
        console.print(f"[red]acknowledged writes lost[/] in {', '.join(lost)}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
