"""Download runs for the benchmark: one tracker, K holder processes, a fresh downloader per run.

Timing is from sending ``download_file`` to the downloader's shell printing that the file is
verified and renamed. CPU seconds and peak RSS are the downloader process's own (from /proc),
and each run uses a new downloader process so its peak RSS is that run's.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time

from launch.processes import ShellProcess, TrackerProcess

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
    path = os.path.join(folder, f"bench-{size}.bin")
    if not (os.path.exists(path) and os.path.getsize(path) == size):
        os.makedirs(folder, exist_ok=True)
        with open(path + ".tmp", "wb") as f:
            left = size
            while left:
                n = min(left, 1 << 24)
                f.write(os.urandom(n))
                left -= n
        os.replace(path + ".tmp", path)
    with open(path, "rb") as f:  # into the page cache, as the benchmark promises
        while f.read(1 << 24):
            pass
    return path


def summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


class DownloadBench:
    """A swarm of K holders sharing ``src`` in one group, and downloads from it."""

    def __init__(self, workdir: str, src: str, holders: int, piece_size: str, peer_args: list[str]) -> None:
        self.workdir = workdir
        self.src = src
        self.name = os.path.basename(src)
        self.peer_args = peer_args
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        self.procs: list = []
        self.tracker = TrackerProcess(os.path.join(workdir, "tracker.db"), cwd=ROOT)
        self.procs.append(self.tracker)
        self.holders = []
        for i in range(holders):
            h = self._peer(f"h{i}", "--piece-size", piece_size)
            self._ok(h, f"create_user h{i} pw")
            self._ok(h, f"login h{i} pw")
            self.holders.append(h)
        admin = self.holders[0]
        self._ok(admin, "create_group bench")
        for h in self.holders[1:]:
            self._ok(h, "join_group bench")
            self._ok(admin, f"accept_request bench {h.name}")
        for h in self.holders:
            self._ok(h, f"upload_file {src} bench", timeout=600)
        self.user_ready = False

    def _peer(self, name: str, *args: str) -> ShellProcess:
        home = os.path.join(self.workdir, name)
        p = ShellProcess(self.tracker.endpoint, home, *args, key=self.tracker.key, name=name, cwd=ROOT)
        self.procs.append(p)
        return p

    @staticmethod
    def _ok(p: ShellProcess, command: str, timeout: float = 60) -> None:
        out = p.run(command, timeout=timeout)
        if out.errors:
            raise RuntimeError(f"{p.name}: {command}: {out.errors[0]}")

    def run_once(self, index: int, timeout: float = 900) -> dict[str, float]:
        home = os.path.join(self.workdir, f"dl{index}")
        out_dir = os.path.join(self.workdir, "out")
        shutil.rmtree(out_dir, ignore_errors=True)
        d = self._peer(f"dl{index}", *self.peer_args)
        try:
            if not self.user_ready:
                self._ok(d, "create_user dl pw")
                self._ok(d, "login dl pw")
                self._ok(d, "join_group bench")
                self._ok(self.holders[0], "accept_request bench dl")
                self.user_ready = True
            else:
                self._ok(d, "login dl pw")
            size = os.path.getsize(self.src)
            recycle_page_cache(self.workdir, size)
            cpu0, t0 = proc_cpu(d.pid), time.monotonic()
            start = len(d.lines)
            self._ok(d, f"download_file bench {self.name} {out_dir}")
            line = d.wait_for(r"download complete: |error: download of", timeout=timeout, start=start).string
            seconds = time.monotonic() - t0
            if not line.startswith("download complete"):
                raise RuntimeError(f"download failed: {line}")
            cpu = proc_cpu(d.pid) - cpu0
            return {
                "seconds": seconds,
                "mb_per_s": size / seconds / 1e6,
                "cpu_s": cpu,
                "cpu_s_per_gb": cpu / (size / 1e9),
                "peak_rss_mib": proc_hwm_mib(d.pid),
            }
        finally:
            try:  # log out cleanly, so the next run does not see this session as a holder
                d.finish(timeout=30)
            except Exception:  # noqa: BLE001  (whatever went wrong, it is killed next)
                pass
            d.kill()
            shutil.rmtree(out_dir, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)

    def runs(self, reps: int) -> dict:
        results = [self.run_once(i) for i in range(reps)]
        out: dict = {"runs": results}
        for key in ("mb_per_s", "cpu_s_per_gb", "peak_rss_mib", "seconds"):
            out[key] = summarize([r[key] for r in results])
        return out

    def close(self) -> None:
        for p in self.procs:
            if p.alive():
                p.kill()
