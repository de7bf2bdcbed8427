"""Shaped links between network namespaces: download rows over links slower than loopback.

Why: on loopback every holder is as fast as memory, so a swarm's real question (does the
downloader use fast and slow holders each to their full rate?) never comes up. Here each holder
gets its own link with its own rate, and a download can be set against the ideal: the sum of
the holder rates.

Topology, chosen so that shaping one holder is one qdisc on one link, with no bridge:

    namespace PREFIXdl (downloader)                 namespace PREFIXh<i> (holder i)
      interface h<i>, 198.18.<i>.1/24  <-- veth -->   interface dl, 198.18.<i>.2/24
                                                      root qdisc: tbf rate R_i (holder -> downloader)

Only the holder's egress is shaped: that is the data direction; requests and ACKs go back
unshaped. Addresses come from 198.18.0.0/15, the range set aside for benchmarks (RFC 2544);
the namespaces have no default route, so nothing leaves them.

tbf parameters (see ``tbf_burst``): the burst is at least 64 KiB, because veth hands the qdisc
GSO packets of up to 64 KiB and tbf must split any packet larger than its burst (more CPU), and
at least 2 ms at the link's rate; ``latency 20ms`` bounds the queue at rate x 20 ms, far above
the link's bandwidth-delay product (a veth round trip is well under 1 ms), so TCP never starves
for lack of queue, while queueing delay stays at most 20 ms. Measured alone on this machine
(3 s streams), bursts of 16-256 KiB and latencies of 2-50 ms all gave the same rate: 95.6% of
the configured rate as TCP payload, which is exactly 1448/1514 (payload per full frame; tbf
counts the whole Ethernet frame).

Everything is removed on exit, on exceptions, Ctrl-C and SIGTERM; namespaces left by a crashed
earlier run with the same prefix are removed at the start (so two runs at once need two
prefixes: ``--prefix``). Needs root, ``ip`` and ``tc`` with tbf; otherwise ``ShapedLinks``
raises ``Skip`` with the reason.

Smoke run: ``.venv/bin/python scripts/bench_netns.py --quick``; the shaped-link figures:
``scripts/bench_netns.py --libtorrent --runs 3``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

import orjson

from launch.processes import Process, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "tbench-"
RATES_MBIT = (400.0, 200.0, 100.0, 50.0)
LATENCY_MS = 20.0
PAYLOAD_SHARE = 1448 / 1514  # TCP payload per full Ethernet frame (MTU 1500, timestamps on)
CHILD_TIMEOUT_S = 60.0


class Skip(Exception):
    """This machine cannot run the row; ``str(exc)`` says why, for one clear skip line."""


@dataclass(frozen=True)
class Link:
    """One holder's link: its namespace, its rate, and the addresses at both ends."""

    index: int
    ns: str  # the holder's namespace
    rate_mbit: float
    holder_addr: str
    downloader_addr: str

    @property
    def payload_mbit(self) -> float:
        """The most TCP payload this link can carry."""
        return self.rate_mbit * PAYLOAD_SHARE


def tbf_burst(rate_mbit: float) -> int:
    """tbf burst in bytes: one 64 KiB GSO packet, or 2 ms at the link's rate if that is more."""
    return max(64 * 1024, int(rate_mbit * 1e6 / 8 * 0.002))


def _run(argv: list[str]) -> str:
    r = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {(r.stderr or r.stdout).strip()}")
    return r.stdout


def check_support() -> None:
    """Raise ``Skip`` unless this is Linux, we are root and ``ip`` and ``tc`` exist."""
    if not sys.platform.startswith("linux"):
        raise Skip("network namespaces need Linux")
    if os.geteuid() != 0:
        raise Skip("network namespaces and tc need root")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise Skip(f"no `{tool}` command (iproute2)")


def remove_stale(prefix: str = PREFIX) -> list[str]:
    """Delete namespaces named ``prefix*`` (left by a crashed run); return their names."""
    names = [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line.strip()]
    stale = [n for n in names if n.startswith(prefix)]
    for name in stale:
        _run(["ip", "netns", "del", name])
    return stale


class ShapedLinks:
    """A downloader namespace and one holder namespace per rate, each joined by a shaped veth."""

    def __init__(
        self,
        rates_mbit: Sequence[float] = RATES_MBIT,
        *,
        prefix: str = PREFIX,
        latency_ms: float = LATENCY_MS,
    ) -> None:
        if not 1 <= len(rates_mbit) <= 250:
            raise ValueError("between 1 and 250 links")
        self.prefix, self.latency_ms = prefix, latency_ms
        self.downloader_ns = f"{prefix}dl"
        self.links = [
            Link(i, f"{prefix}h{i}", float(rate), f"198.18.{i}.2", f"198.18.{i}.1")
            for i, rate in enumerate(rates_mbit)
        ]
        self._made: list[str] = []
        self._old_sigterm: Callable | int | None = None

    @property
    def ideal_mbit(self) -> float:
        """The sum of the links' TCP payload rates: what a perfect download would reach."""
        return sum(link.payload_mbit for link in self.links)

    def argv(self, ns: str, argv: list[str]) -> list[str]:
        """``argv`` run inside namespace ``ns`` (``ip netns exec`` execs it: the pid is argv's)."""
        if ns != self.downloader_ns and ns not in {link.ns for link in self.links}:
            raise ValueError(f"{ns!r} is not one of this object's namespaces")
        return ["ip", "netns", "exec", ns, *argv]

    def __enter__(self) -> ShapedLinks:
        check_support()
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            remove_stale(self.prefix)
            self._create()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    def _create(self) -> None:
        self._add_ns(self.downloader_ns)
        for link in self.links:
            self._add_ns(link.ns)
            dev = f"h{link.index}"  # both ends are created in their namespaces: no name clash in the root one
            peer = ("peer", "name", "dl", "netns", link.ns)
            _run(["ip", "link", "add", dev, "netns", self.downloader_ns, "type", "veth", *peer])
            for ns, name, addr in (
                (self.downloader_ns, dev, link.downloader_addr),
                (link.ns, "dl", link.holder_addr),
            ):
                _run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", name])
                _run(["ip", "-n", ns, "link", "set", name, "up"])
            self._shape(link)

    def _add_ns(self, name: str) -> None:
        try:
            _run(["ip", "netns", "add", name])
        except RuntimeError as e:
            raise Skip(f"cannot create a network namespace: {e}") from e
        self._made.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _shape(self, link: Link) -> None:
        rate, burst = f"{link.rate_mbit:g}mbit", str(tbf_burst(link.rate_mbit))
        argv = ["tc", "-n", link.ns, "qdisc", "add", "dev", "dl", "root", "tbf", "rate", rate]
        try:
            _run([*argv, "burst", burst, "latency", f"{self.latency_ms:g}ms"])
        except RuntimeError as e:
            raise Skip(f"cannot shape a link with tc tbf: {e}") from e

    def _remove(self) -> None:
        """Kill what still runs in our namespaces (children we started), then delete them."""
        in_main = threading.current_thread() is threading.main_thread()
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            for name in reversed(self._made):
                with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                    for pid in _run(["ip", "netns", "pids", name]).split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
                try:
                    _run(["ip", "netns", "del", name])
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    print(f"warning: could not remove namespace {name}: {e}", file=sys.stderr)
            self._made.clear()
        finally:
            if in_main:
                signal.signal(signal.SIGINT, old_int)
                if self._old_sigterm is not None:
                    signal.signal(signal.SIGTERM, self._old_sigterm)
                    self._old_sigterm = None


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through ``with ShapedLinks(...)``, which cleans up


# --- verifying the shaping: plain TCP streams through the links --------------------------------


def _spawn(net: ShapedLinks, ns: str, args: list[str]) -> Process:
    argv = net.argv(ns, [sys.executable, os.path.abspath(__file__), *args])
    return Process(argv, f"{args[0]} in {ns}", cwd=ROOT)


def tcp_streams(net: ShapedLinks, links: Sequence[Link], seconds: float) -> list[dict]:
    """One TCP stream per link at the same time, holder -> downloader; the achieved rates."""
    procs: list[Process] = []
    try:
        sinks = [_spawn(net, net.downloader_ns, ["tcp-sink", link.downloader_addr]) for link in links]
        procs += sinks
        ports = [s.json_line("port", CHILD_TIMEOUT_S)["port"] for s in sinks]
        for link, port in zip(links, ports, strict=True):
            procs.append(_spawn(net, link.ns, ["tcp-source", link.downloader_addr, str(port), str(seconds)]))
        got = [s.json_line("bytes", seconds + CHILD_TIMEOUT_S) for s in sinks]
    finally:
        for p in procs:
            p.kill()
    rows = []
    for link, r in zip(links, got, strict=True):
        achieved = r["bytes"] * 8 / r["seconds"] / 1e6
        rows.append(
            {
                "link": link.index,
                "configured_mbit": link.rate_mbit,
                "achieved_mbit": achieved,
                "of_configured": achieved / link.rate_mbit,
                "of_payload_ceiling": achieved / link.payload_mbit,
            }
        )
    return rows


def verify_shaping(net: ShapedLinks, seconds: float = 3.0) -> dict[str, list[dict]]:
    """Each link alone, then all at once: achieved TCP payload rate against the configured rate."""
    alone = [tcp_streams(net, [link], seconds)[0] for link in net.links]
    return {"alone": alone, "together": tcp_streams(net, net.links, seconds)}


def _tcp_sink(addr: str) -> None:
    with socket.create_server((addr, 0)) as srv:
        srv.settimeout(CHILD_TIMEOUT_S)
        report(port=srv.getsockname()[1])
        conn, _ = srv.accept()
    buf = bytearray(1 << 20)
    got, t0 = 0, 0.0
    with conn:
        conn.settimeout(CHILD_TIMEOUT_S)
        while n := conn.recv_into(buf):
            if not got:
                t0 = time.perf_counter()  # from the first byte: connection setup is not the link's rate
            got += n
    report(bytes=got, seconds=time.perf_counter() - t0)


def _tcp_source(addr: str, port: str, seconds: str) -> None:
    data = b"\0" * (1 << 20)
    with socket.create_connection((addr, int(port)), timeout=CHILD_TIMEOUT_S) as sock:
        end = time.monotonic() + float(seconds)
        while time.monotonic() < end:
            sock.sendall(data)


_CHILDREN: dict[str, Callable[..., None]] = {"tcp-sink": _tcp_sink, "tcp-source": _tcp_source}


# --- command line -----------------------------------------------------------------------------


def _print_verify(net: ShapedLinks, rows: dict[str, list[dict]]) -> None:
    for mode, stream in rows.items():
        for r in stream:
            print(
                f"tcp {mode:8} link {r['link']}: configured {r['configured_mbit']:.0f} Mbit/s, "
                f"achieved {r['achieved_mbit']:.1f} ({r['of_configured']:.1%} of configured, "
                f"{r['of_payload_ceiling']:.1%} of the payload ceiling)",
                flush=True,
            )
    total = sum(r["achieved_mbit"] for r in rows["together"])
    print(f"tcp together: {total:.1f} Mbit/s of an ideal {net.ideal_mbit:.1f} (payload)", flush=True)


def shaped_libtorrent(
    net: ShapedLinks, src: str, runs: int, workdir: str, encryption: str = "disabled"
) -> dict:
    """libtorrent downloads of ``src`` across the links, against the ideal sum of holder rates."""
    from bench_libtorrent import MIB, LibtorrentBench

    with LibtorrentBench(workdir, src, len(net.links), MIB, netns=net, encryption=encryption) as bench:
        row = bench.runs(runs, "recycled")
    for r in row["runs"]:
        r["mbit_per_s"] = r["mb_per_s"] * 8
        r["of_ideal"] = r["mbit_per_s"] / net.ideal_mbit
        r["of_rate_sum"] = r["mbit_per_s"] / sum(link.rate_mbit for link in net.links)
        print(
            f"libtorrent shaped: {r['mbit_per_s']:.0f} Mbit/s in {r['seconds']:.2f} s, "
            f"{r['of_ideal']:.1%} of the payload ideal {net.ideal_mbit:.0f}, "
            f"{r['of_rate_sum']:.1%} of the rate sum; pieces per holder "
            f"{r['pieces_per_seeder']} (rates {[link.rate_mbit for link in net.links]})",
            flush=True,
        )
    return row


def _measure(args: argparse.Namespace, rates: list[float]) -> dict:
    results: dict = {"rates_mbit": rates}
    with ShapedLinks(rates, prefix=args.prefix) as net:
        results["ideal_payload_mbit"] = net.ideal_mbit
        results["tcp"] = verify_shaping(net, args.seconds)
        _print_verify(net, results["tcp"])
        if args.libtorrent:
            from bench_download import make_source
            from bench_libtorrent import libtorrent_missing

            from peer.argtypes import parse_size

            if libtorrent_missing():
                print(f"skip libtorrent over shaped links: {libtorrent_missing()}", flush=True)
                return results
            src = make_source(args.dir, parse_size(args.size))
            workdir = os.path.join(args.dir, "work", "libtorrent")
            results["libtorrent"] = shaped_libtorrent(net, src, args.runs, workdir, args.encryption)
    return results


def main(argv: list[str]) -> int:
    if argv and argv[0] in _CHILDREN:
        _CHILDREN[argv[0]](*argv[1:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES_MBIT), help="Mbit/s per holder")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each TCP stream (default 3)")
    ap.add_argument("--libtorrent", action="store_true", help="also download with libtorrent")
    ap.add_argument("--size", default="1G", help="file size for --libtorrent (default 1G)")
    ap.add_argument("--runs", type=int, default=3, help="libtorrent downloads (default 3)")
    ap.add_argument("--encryption", default="disabled", help="disabled, enabled or rc4")
    ap.add_argument("--prefix", default=PREFIX, help=f"namespace name prefix (default {PREFIX})")
    ap.add_argument("--quick", action="store_true", help="two links, 1 s streams, 16 MiB: a smoke test")
    ap.add_argument("--dir", default=os.path.join(ROOT, "data", "bench"))
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    if args.quick:
        rates, args.seconds, args.size, args.runs = [200.0, 50.0], 1.0, "16M", 1
    try:
        results = _measure(args, rates)
    except Skip as e:
        print(f"skip shaped links: {e}", flush=True)
        return 0
    except KeyboardInterrupt:
        print("interrupted; namespaces removed", file=sys.stderr)
        return 130
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
