"""Download runs for the benchmark: one tracker, K holder processes, a fresh downloader per run.

Timing is from sending ``download_file`` to the downloader's shell printing that the file is
verified and renamed. CPU seconds and peak RSS are the downloader process's own (from /proc),
and each run uses a new downloader process so its peak RSS is that run's.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

from scale_state import random_file

from launch.processes import TRACKER_READY, Process, ShellProcess, TrackerProcess

if TYPE_CHECKING:
    from bench_netns import ShapedLinks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_hwm_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def recycle_page_cache(folder: str, size: int) -> None:
    """Write and delete a ballast file so the next writes land on recently used pages.

    On this VM, pages the guest never touched (or returned to the host by balloon free-page
    reporting) cost ~2.4 CPU-s/GB on first write; a machine that keeps moving files reuses
    page-cache pages instead. Every measured row (ours and the baselines) starts this way.
    """
    path = os.path.join(folder, "ballast.bin")
    block = b"\x5a" * (1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for off in range(0, int(size * 1.1), len(block)):
            os.pwrite(fd, block, off)
    finally:
        os.close(fd)
        os.unlink(path)


PAGE_CONDITIONS = ("recycled", "fresh")
_REPORTED_KIB = "/sys/module/page_reporting/parameters/reported_kib"


def release_free_pages(max_wait: float = 30.0, quiet: float = 4.5) -> float:
    """Wait until the guest has reported its free pages to the host, so writes land on fresh pages.

    The opposite of ``recycle_page_cache``: once the balloon's free-page reporting has handed the
    pages freed by the previous run back to the host, the next download's writes fault in pages
    the guest does not hold. Reporting runs in passes about 2 s apart, so it is taken as done when
    the reported total has not moved for ``quiet`` seconds. Returns the seconds waited (0 where
    the kernel has no free-page reporting: there "fresh" and "recycled" pages cost the same).
    """
    if not os.path.exists(_REPORTED_KIB):
        return 0.0

    def reported() -> int:
        with open(_REPORTED_KIB) as f:
            return int(f.read())

    t0 = time.monotonic()
    last, since = reported(), t0
    while time.monotonic() - t0 < max_wait and time.monotonic() - since < quiet:
        time.sleep(0.25)
        now = reported()
        if now != last:
            last, since = now, time.monotonic()
    return time.monotonic() - t0


def prepare_pages(folder: str, size: int, pages: str) -> None:
    """Put the page cache in one of ``PAGE_CONDITIONS`` before a download of ``size`` bytes."""
    if pages == "recycled":
        recycle_page_cache(folder, size)
    elif pages == "fresh":
        release_free_pages()
    else:
        raise ValueError(f"pages must be one of {PAGE_CONDITIONS}, not {pages!r}")


def make_source(folder: str, size: int) -> str:
    """A random file of ``size`` bytes in ``folder`` (made once, reused), read into the page cache."""
    path = random_file(os.path.join(folder, f"bench-{size}.bin"), size)
    with open(path, "rb") as f:  # into the page cache, as the benchmark promises
        while f.read(1 << 24):
            pass
    return path


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


class _Wrapped:
    """Our tracker and peers started under a command prefix (``ip netns exec NS``): the launch
    classes build their own argv, so these build it the same way with the prefix in front."""

    @staticmethod
    def tracker(prefix: list[str], db: str, bind: str, *extra: str) -> TrackerProcess:
        t = TrackerProcess.__new__(TrackerProcess)
        argv = [*prefix, sys.executable, "-m", "tracker", "--bind", bind, "--db", db, *extra]
        Process.__init__(t, argv, "tracker", cwd=ROOT)
        t.db = db
        try:
            m = t.wait_for(TRACKER_READY, 60)
        except BaseException:
            t.kill()
            raise
        t.endpoint, t.key = m.group(1), m.group(2)
        return t

    @staticmethod
    def shell(prefix: list[str], tracker: str, home: str, key: str, name: str, *extra: str) -> ShellProcess:
        p = ShellProcess.__new__(ShellProcess)
        argv = [*prefix, sys.executable, "-m", "peer", "--tracker", tracker, "--home", home, *extra]
        Process.__init__(p, [*argv, f"--tracker-key={key}"], name, stdin=True, cwd=ROOT)
        p.home, p._marks = home, 0
        return p


def pieces_per_holder(line: str) -> dict[str, int]:
    """``h0:12 h1:30`` from the shell's "download complete: ... pieces from h0:12 h1:30" line."""
    m = re.search(r"pieces from ([^;)]*)", line)
    pairs = (item.rsplit(":", 1) for item in (m.group(1).split() if m else []) if ":" in item)
    return {user: int(n) for user, n in pairs if n.isdigit()}


class DownloadBench:
    """A swarm of K holders sharing ``src`` in one group, and downloads from it.

    ``plain``: the holders serve pieces unencrypted (``--plain-pieces``). ``netns`` (a
    ``bench_netns.ShapedLinks`` already entered): holder i runs in link i's namespace and listens
    on its address there; the tracker and the downloader run in the downloader namespace, the
    tracker on every address of it, so each holder reaches it across its own link (its control
    traffic shares the shaped link; it is a few hundred bytes a second).
    """

    def __init__(
        self,
        workdir: str,
        src: str,
        holders: int,
        piece_size: str,
        peer_args: list[str],
        *,
        plain: bool = False,
        netns: ShapedLinks | None = None,
    ) -> None:
        self.workdir, self.src, self.name = workdir, src, os.path.basename(src)
        self.peer_args, self.netns = peer_args, netns
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        self.procs: list[Process] = []
        self.holders: list[ShellProcess] = []
        self.user_ready = False
        try:
            self._start(holders, piece_size, plain)
        except BaseException:
            self.close()
            raise

    def _prefix(self, holder: int | None) -> list[str]:
        """``ip netns exec NS`` for holder i (None: the downloader side), or nothing on loopback."""
        if self.netns is None:
            return []
        ns = self.netns.downloader_ns if holder is None else self.netns.links[holder].ns
        return self.netns.argv(ns, [])

    def _tracker_for(self, holder: int | None) -> str:
        if self.netns is None or holder is None:
            return self.tracker_ep
        return f"tcp://{self.netns.links[holder].downloader_addr}:{self.tracker_ep.rsplit(':', 1)[1]}"

    def _start(self, holders: int, piece_size: str, plain: bool) -> None:
        bind = "tcp://0.0.0.0:0" if self.netns else "tcp://127.0.0.1:0"
        db, keys = os.path.join(self.workdir, "tracker.db"), os.path.join(self.workdir, "keys")
        self.tracker = _Wrapped.tracker(self._prefix(None), db, bind, "--keys", keys, "--key-bind", "none")
        self.procs.append(self.tracker)
        port = self.tracker.endpoint.rsplit(":", 1)[1]
        self.tracker_ep = f"tcp://127.0.0.1:{port}"
        extra = ["--piece-size", piece_size, *(["--plain-pieces"] if plain else [])]
        for i in range(holders):
            listen = ["--listen", f"tcp://{self.netns.links[i].holder_addr}:0"] if self.netns else []
            h = self._peer(f"h{i}", i, *extra, *listen)
            self._ok(h, f"create_user h{i} pw")
            self._ok(h, f"login h{i} pw")
            self.holders.append(h)
        admin = self.holders[0]
        self._ok(admin, "create_group bench")
        for h in self.holders[1:]:
            self._ok(h, "join_group bench")
            self._ok(admin, f"accept_request bench {h.name}")
        for h in self.holders:
            self._ok(h, f"upload_file {self.src} bench", timeout=600)

    def _peer(self, name: str, holder: int | None, *args: str) -> ShellProcess:
        home = os.path.join(self.workdir, name)
        prefix, tracker = self._prefix(holder), self._tracker_for(holder)
        p = _Wrapped.shell(prefix, tracker, home, self.tracker.key, name, *args)
        self.procs.append(p)
        return p

    @staticmethod
    def _ok(p: ShellProcess, command: str, timeout: float = 60) -> None:
        out = p.run(command, timeout=timeout)
        if out.errors:
            raise RuntimeError(f"{p.name}: {command}: {out.errors[0]}")

    def _login(self, d: ShellProcess) -> None:
        if not self.user_ready:
            self._ok(d, "create_user dl pw")
            self._ok(d, "login dl pw")
            self._ok(d, "join_group bench")
            self._ok(self.holders[0], "accept_request bench dl")
            self.user_ready = True
        else:
            self._ok(d, "login dl pw")

    def run_once(self, index: int, pages: str = "recycled", timeout: float = 900) -> dict[str, Any]:
        """One download by a new downloader process, after ``prepare_pages(pages)``; raises if it
        fails. Seconds, MB/s, CPU, peak RSS and the pieces each holder served."""
        home, out_dir = os.path.join(self.workdir, f"dl{index}"), os.path.join(self.workdir, "out")
        shutil.rmtree(out_dir, ignore_errors=True)
        d = self._peer(f"dl{index}", None, *self.peer_args)
        try:
            self._login(d)
            size = os.path.getsize(self.src)
            prepare_pages(self.workdir, size, pages)
            cpu0, t0 = proc_cpu(d.pid), time.monotonic()
            start = len(d.lines)
            self._ok(d, f"download_file bench {self.name} {out_dir}")
            line = d.wait_for(r"download complete: |error: download of", timeout=timeout, start=start).string
            seconds = time.monotonic() - t0
            if not line.startswith("download complete"):
                raise RuntimeError(f"download failed: {line}")
            cpu = proc_cpu(d.pid) - cpu0
            served = pieces_per_holder(line)
            return {
                "seconds": seconds,
                "mb_per_s": size / seconds / 1e6,
                "cpu_s": cpu,
                "cpu_s_per_gb": cpu / (size / 1e9),
                "peak_rss_mib": proc_hwm_mib(d.pid),
                "pieces_per_holder": [served.get(h.name, 0) for h in self.holders],
                "pages": pages,
            }
        finally:
            try:  # log out cleanly, so the next run does not see this session as a holder
                d.finish(timeout=30)
            except Exception:  # noqa: BLE001  (whatever went wrong, it is killed next)
                pass
            d.kill()
            shutil.rmtree(out_dir, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)

    def runs(self, reps: int, pages: str = "recycled") -> dict[str, Any]:
        results = [self.run_once(i, pages) for i in range(reps)]
        return summarize_runs(results)

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.alive():
                p.kill()


SUMMARY_KEYS = ("mb_per_s", "cpu_s_per_gb", "peak_rss_mib", "seconds")


def summarize_runs(results: list[dict[str, Any]], keys: tuple[str, ...] = SUMMARY_KEYS) -> dict[str, Any]:
    """Every run, and the median, min and max of each of ``keys``."""
    out: dict[str, Any] = {"runs": results}
    for key in keys:
        out[key] = summarize([r[key] for r in results])
    return out
