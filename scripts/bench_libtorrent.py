"""libtorrent in the project's own download bench: same file, same K local holders, fresh downloader.

Why: to put Torrent's download speed beside a mature C++ BitTorrent client under the same
conditions: this machine, the same file in the page cache, K holder processes, one new downloader
process per run, and the same page-cache preparation before each run (``bench_download``).

How:
- The torrent is v2-only (SHA-256 merkle piece hashes, as ours are), made once per file and
  piece size and cached in the work folder. There is no tracker, DHT, LSD or PEX: the downloader
  is given each seeder's address and port and calls ``connect_peer``. All traffic is TCP.
- Seeders and the downloader are child processes running this file with a subcommand, as
  ``bench_baselines`` does, so CPU and peak RSS are the downloader's alone. Seeders use
  libtorrent's ``high_performance_seed()`` preset; the downloader keeps libtorrent's defaults
  except where ``COMMON`` says why.
- Timing, in the downloader: from just before ``add_torrent`` to the ``cache_flushed_alert`` that
  answers ``flush_cache()``, sent on ``torrent_finished_alert`` (every piece hash-checked; the
  flush waits for writes still queued). CPU is getrusage(RUSAGE_SELF) user+sys over the same
  span, all threads included; peak RSS is ru_maxrss, and RssAnon is sampled as it runs.
- libtorrent makes its first connection on an internal tick (``tick_interval``, 500 ms), so on
  this machine 0-0.9 s pass between ``add_torrent`` and the first connection attempt:
  ``first_connect_s`` reports that wait and ``transfer_mb_per_s`` the rate without it.
- libtorrent 2.1 writes with pread/pwrite here (its default disk I/O; each run reports
  ``disk_io``, "mmap" if the output file is mapped).
- After every run the parent compares the output file with the source, byte for byte.
- Pieces served per seeder come from each seeder's ``total_payload_upload`` before and after
  a run (so pieces sent twice in end-game count twice).

Encryption (``ENCRYPTION``): libtorrent's default is ``pe_enabled`` both ways with
``allowed_enc_level=pe_both`` and ``prefer_rc4=False``: it tries the MSE handshake first, and
peers then agree on plaintext for the payload. ``"rc4"`` forces RC4 on every byte, the closest to
CURVE encrypting every frame. What each connection negotiated is reported per run.

Smoke run: ``.venv/bin/python scripts/bench_libtorrent.py --quick``; full: ``--size 1G --runs 5``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from bench_download import PAGE_CONDITIONS, prepare_pages, summarize
from bench_netns import ShapedLinks, Skip

from launch.processes import Process, report

lt: Any  # the module, untyped here: its stubs reject the plain dicts of settings used below
try:
    import libtorrent as lt
except ImportError as exc:  # the optional "bench" extra: scripts/setup --bench
    lt = None
    _IMPORT_ERROR = f"libtorrent not importable ({exc}); install it with scripts/setup --bench"
else:
    _IMPORT_ERROR = ""

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
READY_TIMEOUT = 300.0  # a seeder checks the whole file's hashes before it reports ready

# name -> (in/out_enc_policy, allowed_enc_level); values of settings_pack's enc_policy/enc_level:
# pe_forced=0, pe_enabled=1, pe_disabled=2; pe_plaintext=1, pe_rc4=2, pe_both=3.
ENCRYPTION = {
    "disabled": (2, 3),  # plain BitTorrent handshake and payload
    "enabled": (1, 3),  # libtorrent's default: MSE handshake first, payload plaintext if both allow
    "rc4": (0, 2),  # MSE required and every payload byte RC4-encrypted
}


def libtorrent_missing() -> str:
    """Why libtorrent cannot be used here, or "" when it can."""
    return _IMPORT_ERROR


def encryption_name(encryption: bool | str) -> str:
    """``False`` is "disabled", ``True`` "rc4" (every byte encrypted, as CURVE does), or an ENCRYPTION key."""
    name = encryption if isinstance(encryption, str) else ("rc4" if encryption else "disabled")
    if name not in ENCRYPTION:
        raise ValueError(f"encryption must be a bool or one of {sorted(ENCRYPTION)}, not {encryption!r}")
    return name


# --- parent side ------------------------------------------------------------------------------


def make_torrent(path: str, piece_size: int, folder: str) -> str:
    """A v2-only .torrent for ``path`` (cached in ``folder`` by name, size, mtime and piece size)."""
    if lt is None:
        raise Skip(_IMPORT_ERROR)
    st = os.stat(path)
    name = f"{os.path.basename(path)}-{st.st_size}-{st.st_mtime_ns}-{piece_size}.torrent"
    out = os.path.join(folder, name)
    if not os.path.exists(out):
        ct = lt.create_torrent(lt.list_files(path), piece_size, lt.create_torrent.v2_only)
        lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(path)))
        os.makedirs(folder, exist_ok=True)
        with open(out + ".tmp", "wb") as f:
            f.write(lt.bencode(ct.generate()))
        os.replace(out + ".tmp", out)
    return out


def same_bytes(a: str, b: str, block: int = 8 * MIB) -> bool:
    """Whether two files hold the same bytes."""
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(block)
            if x != fb.read(block):
                return False
            if not x:
                return True


def _spawn(args: list[str], name: str, netns: ShapedLinks | None = None, ns: str = "") -> Process:
    argv = [sys.executable, os.path.abspath(__file__), *args]
    if netns is not None:
        argv = netns.argv(ns, argv)
    return Process(argv, name, stdin=True, cwd=ROOT)


def _ask(proc: Process, key: str, timeout: float, **command: Any) -> dict[str, Any]:
    """Send one command line to a child and return its next report starting with ``key``."""
    start = len(proc.lines)
    proc.send_line(command)
    m = proc.wait_for(rf'^\{{"{key}":.*\}}$', timeout=timeout, start=start)
    return orjson.loads(m.group(0))


SUMMARY_KEYS = (
    "mb_per_s",
    "transfer_mb_per_s",
    "seconds",
    "first_connect_s",
    "cpu_s_per_gb",
    "seeders_cpu_s",
    "peak_rss_mib",
    "peak_anon_mib",
)


class LibtorrentBench:
    """K seeder processes sharing ``src``, and downloads from them, each by a new downloader process.

    On loopback every process binds ``bind``; with ``netns`` (a ``bench_netns.ShapedLinks``
    already entered) seeder i runs in holder namespace i on its link's address and the
    downloader in the downloader namespace.
    """

    def __init__(
        self,
        workdir: str,
        src: str,
        holders: int,
        piece_size: int = MIB,
        *,
        bind: str = "127.0.0.1",
        netns: ShapedLinks | None = None,
        encryption: bool | str = False,
        settings: dict[str, Any] | None = None,
    ) -> None:
        if lt is None:
            raise Skip(_IMPORT_ERROR)
        if netns is not None and len(netns.links) != holders:
            raise ValueError(f"{holders} holders but {len(netns.links)} shaped links")
        self.workdir, self.src, self.piece_size = workdir, os.path.abspath(src), piece_size
        self.size = os.path.getsize(src)
        self.bind, self.netns, self.encryption = bind, netns, encryption_name(encryption)
        self.settings = settings or {}  # downloader settings on top of ours, for experiments
        os.makedirs(workdir, exist_ok=True)
        self.torrent = make_torrent(self.src, piece_size, workdir)
        self.seeders: list[Process] = []
        self.peers: list[tuple[str, int]] = []
        try:
            self._start_seeders(holders)
        except BaseException:
            self.close()
            raise

    def _start_seeders(self, holders: int) -> None:
        for i in range(holders):
            addr = self.netns.links[i].holder_addr if self.netns else self.bind
            ns = self.netns.links[i].ns if self.netns else ""
            args = ["seed", self.torrent, os.path.dirname(self.src), addr, self.encryption]
            self.seeders.append(_spawn(args, f"lt-seed{i}", self.netns, ns))
        for s in self.seeders:
            ready = s.json_line("port", READY_TIMEOUT)
            self.peers.append((ready["addr"], ready["port"]))

    def _stats(self) -> list[dict[str, Any]]:
        """Each seeder's payload bytes uploaded and CPU seconds so far."""
        return [_ask(s, "uploaded", 30, cmd="stats") for s in self.seeders]

    def run_once(self, index: int = 0, pages: str = "recycled", timeout: float | None = None) -> dict:
        """One download by a new downloader process; raises if it fails or the bytes differ.

        ``pages`` is "recycled" or "fresh" (``bench_download.prepare_pages``), applied after the
        downloader process is up and before it adds the torrent. Returns seconds, finished_s,
        first_connect_s, mb_per_s, transfer_mb_per_s, cpu_s, cpu_s_per_gb, seeders_cpu_s,
        peak_rss_mib, peak_anon_mib, bytes_per_seeder, pieces_per_seeder (bytes / piece size),
        redundant_bytes, peer_encryption, disk_io, pages and encryption.
        """
        timeout = timeout or 60.0 + self.size / 20e6  # generous: 20 MB/s at worst
        out_dir = os.path.join(self.workdir, f"out{index}")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        bind = "0.0.0.0" if self.netns else self.bind  # 0.0.0.0: each link has its own source address
        args = ["download", self.torrent, out_dir, bind, self.encryption]
        args += [orjson.dumps(self.peers).decode(), orjson.dumps(self.settings).decode()]
        d = _spawn(args, f"lt-dl{index}", self.netns, self.netns.downloader_ns if self.netns else "")
        try:
            d.json_line("ready", READY_TIMEOUT)
            prepare_pages(self.workdir, self.size, pages)
            before = self._stats()
            d.send_line({"cmd": "go"})
            result = d.json_line("seconds", timeout)
            after = self._stats()
            served = [b["uploaded"] - a["uploaded"] for a, b in zip(before, after, strict=True)]
            seeder_cpu = sum(b["cpu_s"] - a["cpu_s"] for a, b in zip(before, after, strict=True))
            out = os.path.join(out_dir, os.path.basename(self.src))
            if not same_bytes(self.src, out):
                raise RuntimeError(f"libtorrent's download {out} differs from {self.src}")
            return self._row(result, served, seeder_cpu, pages)
        finally:
            d.kill()
            shutil.rmtree(out_dir, ignore_errors=True)

    def _row(self, r: dict, served: list[int], seeder_cpu: float, pages: str) -> dict:
        seconds = r["seconds"]
        return {
            "seconds": seconds,
            "finished_s": r["finished_s"],
            "first_connect_s": r["first_connect_s"],
            "mb_per_s": self.size / seconds / 1e6,
            # the same without libtorrent's wait before its first connection (see first_connect_s)
            "transfer_mb_per_s": self.size / (seconds - r["first_connect_s"]) / 1e6,
            "cpu_s": r["cpu_s"],
            "cpu_s_per_gb": r["cpu_s"] / (self.size / 1e9),
            "seeders_cpu_s": seeder_cpu,  # all seeders together
            "peak_rss_mib": r["peak_rss_mib"],
            "peak_anon_mib": r["peak_anon_mib"],
            "bytes_per_seeder": served,
            "pieces_per_seeder": [round(b / self.piece_size, 1) for b in served],
            "redundant_bytes": sum(served) - self.size,
            "peer_encryption": r["peer_encryption"],
            "disk_io": r["disk_io"],
            "pages": pages,
            "encryption": self.encryption,
        }

    def runs(self, reps: int, pages: str = "recycled") -> dict:
        """``reps`` downloads: every run, and the median, min and max of the main figures."""
        results = [self.run_once(i, pages) for i in range(reps)]
        out: dict = {"runs": results}
        for key in SUMMARY_KEYS:
            out[key] = summarize([r[key] for r in results])
        return out

    def close(self) -> None:
        for s in self.seeders:
            s.kill()

    def __enter__(self) -> LibtorrentBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def libtorrent_download(
    path: str,
    holders: int,
    piece_size: int = MIB,
    *,
    pages: str = "recycled",
    bind: str = "127.0.0.1",
    netns: ShapedLinks | None = None,
    encryption: bool | str = False,
    workdir: str | None = None,
    timeout: float | None = None,
    settings: dict[str, Any] | None = None,
) -> dict:
    """One libtorrent download of ``path`` from ``holders`` seeders (started and stopped here).

    The keys are those of ``LibtorrentBench.run_once``; use ``LibtorrentBench.runs`` for several
    runs against the same seeders (each seeder hash-checks the whole file when it starts).
    """
    workdir = workdir or os.path.join(ROOT, "data", "bench", "work", "libtorrent")
    with LibtorrentBench(
        workdir, path, holders, piece_size, bind=bind, netns=netns, encryption=encryption, settings=settings
    ) as bench:
        return bench.run_once(0, pages, timeout)


# --- children ---------------------------------------------------------------------------------

# Non-default settings for every libtorrent session here, each with its reason.
COMMON: dict[str, Any] = {
    "enable_dht": False,  # peers are handed over directly: no discovery traffic or delay
    "enable_lsd": False,  # (local service discovery would multicast on the link)
    "enable_upnp": False,  # no router to map ports on
    "enable_natpmp": False,
    "enable_incoming_utp": False,  # TCP only, as our peers use (uTP is a UDP transport
    "enable_outgoing_utp": False,  # with its own congestion control)
    "allow_multiple_connections_per_ip": True,  # all loopback seeders are 127.0.0.1
}


def _settings(bind: str, encryption: str, seed: bool) -> dict[str, Any]:
    base = lt.high_performance_seed() if seed else {}
    policy, level = ENCRYPTION[encryption]
    base.update(COMMON)
    base.update(
        {
            "listen_interfaces": f"{bind}:0",  # our address only, a port the OS picks
            "out_enc_policy": policy,
            "in_enc_policy": policy,
            "allowed_enc_level": level,
            "prefer_rc4": encryption == "rc4",
            "alert_mask": int(
                lt.alert.category_t.status_notification
                | lt.alert.category_t.error_notification
                | lt.alert.category_t.storage_notification
                | lt.alert.category_t.connect_notification
            ),  # the alerts we wait for: finished, flushed, errors, and the first connection
        }
    )
    return base


def _params(torrent: str, save_path: str) -> Any:
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save_path
    # start at once: not queued behind the session's auto-manager, not paused
    params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
    return params


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _seed(torrent: str, save_path: str, bind: str, encryption: str) -> None:
    """Seed ``torrent`` from ``save_path``; answer {"cmd": "stats"} lines until stdin closes."""
    ses = lt.session(_settings(bind, encryption, seed=True))
    h = ses.add_torrent(_params(torrent, save_path))
    deadline = time.monotonic() + READY_TIMEOUT
    while h.status().state != lt.torrent_status.seeding:  # the initial hash check of the file
        if time.monotonic() > deadline or h.status().errc.value():
            raise SystemExit(f"seeder not ready: state {h.status().state}, {h.status().errc.message()}")
        time.sleep(0.05)
    report(port=ses.listen_port(), addr=bind)
    for line in sys.stdin:
        if orjson.loads(line).get("cmd") == "stats":
            report(uploaded=h.status().total_payload_upload, cpu_s=_cpu_seconds())


class _Watch:
    """What the downloader notes while it waits: first connection, peers' encryption, anon memory."""

    PEERS_EVERY = 0.5  # s; get_peer_info is a call into libtorrent's busy network thread

    def __init__(self, t0: float, peers: int) -> None:
        self.t0, self.expected = t0, peers
        self.peers: dict[str, str] = {}
        self.peak_anon = 0.0
        self.first_connect_s = 0.0  # from add_torrent to the first outgoing connection attempt
        self._next_peers = 0.0

    def alert(self, a: Any) -> None:
        if isinstance(a, lt.peer_connect_alert) and not self.first_connect_s:
            self.first_connect_s = time.perf_counter() - self.t0

    def sample(self, h: Any) -> None:
        self.peak_anon = max(self.peak_anon, _status_mib("RssAnon"))
        now = time.perf_counter()
        if len(self.peers) >= self.expected and now < self._next_peers:
            return  # every peer's encryption is known: look again only now and then
        self._next_peers = now + self.PEERS_EVERY
        for p in h.get_peer_info():
            if p.flags & lt.peer_info.rc4_encrypted:
                enc = "rc4"
            elif p.flags & lt.peer_info.plaintext_encrypted:
                enc = "mse-plaintext"  # MSE handshake, then a plaintext payload
            else:
                enc = "none"
            self.peers[f"{p.ip[0]}:{p.ip[1]}"] = enc


def _wait_alert(ses: Any, h: Any, kind: type, watch: _Watch, deadline: float) -> None:
    while time.monotonic() < deadline:
        ses.wait_for_alert(100)
        for a in ses.pop_alerts():
            watch.alert(a)
            if isinstance(a, kind):
                return
            if isinstance(a, lt.torrent_error_alert | lt.file_error_alert):
                raise SystemExit(f"libtorrent error: {a.message()}")
        watch.sample(h)
    raise SystemExit(f"timed out waiting for {kind.__name__}")


def _mapped(path: str) -> bool:
    with open("/proc/self/maps") as f:
        return any(line.rstrip().endswith(path) for line in f)


def _download(torrent: str, save_path: str, bind: str, encryption: str, peers: str, extra: str) -> None:
    """Wait for {"cmd": "go"}, download, report the timings (see the module docstring)."""
    settings = _settings(bind, encryption, seed=False)
    settings.update(orjson.loads(extra))
    ses = lt.session(settings)
    params = _params(torrent, save_path)
    out = os.path.join(save_path, params.ti.name())
    report(ready=True)
    sys.stdin.readline()
    deadline = time.monotonic() + 3600
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    h = ses.add_torrent(params)
    addresses = orjson.loads(peers)
    watch = _Watch(t0, len(addresses))
    for addr, port in addresses:
        h.connect_peer((addr, port))
    _wait_alert(ses, h, lt.torrent_finished_alert, watch, deadline)
    finished = time.perf_counter() - t0
    disk_io = "mmap" if _mapped(out) else "pread/pwrite"
    h.flush_cache()
    _wait_alert(ses, h, lt.cache_flushed_alert, watch, deadline)
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    report(
        seconds=seconds,
        finished_s=finished,
        first_connect_s=watch.first_connect_s,
        cpu_s=cpu,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        peak_anon_mib=watch.peak_anon,
        peer_encryption=sorted(watch.peers.values()),
        disk_io=disk_io,
    )


_CHILDREN: dict[str, Callable[..., None]] = {"seed": _seed, "download": _download}


# --- command line -----------------------------------------------------------------------------


def _print_row(label: str, row: dict) -> None:
    def fmt(s: dict, digits: int = 0) -> str:
        return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"

    last = row["runs"][-1]
    print(
        f"{label}: MB/s {fmt(row['mb_per_s'])}, s {fmt(row['seconds'], 2)}, "
        f"CPU s/GB {fmt(row['cpu_s_per_gb'], 2)}, peak RSS MiB {fmt(row['peak_rss_mib'])} "
        f"(anon {fmt(row['peak_anon_mib'])}); last run: pieces/seeder {last['pieces_per_seeder']}, "
        f"peers {last['peer_encryption']}, disk {last['disk_io']}",
        flush=True,
    )


def bench_rows(
    src: str,
    holders: int,
    piece_size: int,
    reps: int,
    pages: Sequence[str],
    encryption: Sequence[str],
    workdir: str,
    settings: dict[str, Any] | None = None,
) -> dict:
    """Every (encryption, pages) row: one set of seeders per encryption setting."""
    rows: dict = {}
    for enc in encryption:
        with LibtorrentBench(workdir, src, holders, piece_size, encryption=enc, settings=settings) as bench:
            for cond in pages:
                key = f"k{holders}-{piece_size // 1024}K-{enc}-{cond}"
                rows[key] = bench.runs(reps, cond)
                _print_row(key, rows[key])
    return rows


def _setting_value(text: str) -> Any:
    """``--set`` values: numbers and true/false as such, anything else as a string."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def main(argv: list[str]) -> int:
    if argv and argv[0] in _CHILDREN:
        _CHILDREN[argv[0]](*argv[1:])
        return 0
    from bench_download import make_source  # a random file in the page cache, as scripts/bench makes

    from peer.argtypes import parse_size

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=parse_size, default=parse_size("1G"), help="file size (default 1G)")
    ap.add_argument("--holders", type=int, default=4, help="seeder processes (default 4)")
    ap.add_argument("--piece-size", type=parse_size, default=MIB, help="piece size (default 1M)")
    ap.add_argument("--runs", type=int, default=5, help="downloads per row (default 5)")
    ap.add_argument("--pages", default="recycled,fresh", help=f"page-cache conditions, of {PAGE_CONDITIONS}")
    ap.add_argument("--encryption", default="disabled,rc4", help=f"comma list of {sorted(ENCRYPTION)}")
    ap.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a downloader setting (experiments)"
    )
    ap.add_argument("--quick", action="store_true", help="16 MiB, 2 holders, 1 run, one row: a smoke test")
    ap.add_argument("--dir", default=os.path.join(ROOT, "data", "bench"))
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if lt is None:
        print(f"skip libtorrent bench: {_IMPORT_ERROR}", flush=True)
        return 0
    if args.quick:
        args.size, args.holders, args.runs = 16 * MIB, 2, 1
        args.pages, args.encryption = "recycled", "disabled"
    src = make_source(args.dir, args.size)
    workdir = os.path.join(args.dir, "work", "libtorrent")
    pages, encs = args.pages.split(","), args.encryption.split(",")
    print(f"libtorrent {lt.__version__}: {args.size >> 20} MiB from {args.holders} seeders", flush=True)
    settings = {k: _setting_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    rows = bench_rows(src, args.holders, args.piece_size, args.runs, pages, encs, workdir, settings)
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
