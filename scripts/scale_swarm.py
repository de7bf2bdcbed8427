"""The real peer processes of ``scripts/bench --scale``: seeders behind the popular file's
simulated holders, its downloader, and a swarm of one seeder and many downloaders that leave
as soon as they finish.

Every process is started through ``spawn`` so the bench owns it and stops it on any exit.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable
from typing import Any

from scale_state import PASSWORD, POPULAR, SWARM, State

from launch.processes import ShellProcess

Spawn = Callable[[str], ShellProcess]  # peer name -> a started shell process
DONE_RX = (
    r"download complete: \[{group}\] {name} -> \S+ \(.* in ([\d.]+)s, ([\d.]+) MB/s; pieces from ([^;)]+)"
)


def must(p: ShellProcess, command: str, timeout: float = 60) -> list[str]:
    out = p.run(command, timeout=timeout)
    if out.errors:
        raise RuntimeError(f"{p.name}: {command}: {out.errors[0]}")
    return out.lines


def run_all(procs: list[ShellProcess], command: Callable[[ShellProcess], str], timeout: float) -> None:
    """One command to every process at once (each its own), then wait for all of them."""
    waits = []
    for p in procs:
        marker = f"__all_{id(p)}_{time.monotonic_ns()}__"
        start = len(p.lines)
        assert p.p.stdin is not None
        p.p.stdin.write(f"{command(p)}\necho {marker}\n")
        p.p.stdin.flush()
        waits.append((p, marker, start))
    deadline = time.monotonic() + timeout
    for p, marker, start in waits:
        p.wait_for(re.escape(marker), max(0.1, deadline - time.monotonic()), start)
        errors = [line for line in p.lines[start:] if line.startswith("error: ")]
        if errors:
            raise RuntimeError(f"{p.name}: {command(p)}: {errors[0]}")


def endpoint_of(p: ShellProcess) -> str:
    for line in must(p, "status"):
        m = re.search(r"serving on (\S+)", line)
        if m:
            return m.group(1)
    raise RuntimeError(f"{p.name}: status says no endpoint")


def holder_seeders(spawn: Spawn, state: State, popular: str) -> list[str]:
    """Start the real seeders of the popular file (logged in, sharing it); their endpoints."""
    seeders = [spawn(f"hs{k}") for k in range(state.sizes.holder_seeders)]
    run_all(seeders, lambda p: f"login {p.name} {PASSWORD}", 120)
    run_all(seeders, lambda _p: f"upload_file {popular} {state.popular_group}", 300)
    return [endpoint_of(p) for p in seeders]


def pieces_from(text: str) -> dict[str, int]:
    return {u: int(n) for u, n in (item.rsplit(":", 1) for item in text.split())}


def popular_download(spawn: Spawn, state: State, src: str, dest: str, timeout: float) -> dict[str, Any]:
    """A real downloader fetches the popular file (from its simulated holders, that is from the
    real seeders behind them); the copy is compared byte for byte."""
    p = spawn("pd")
    must(p, f"login pd {PASSWORD}")
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.monotonic()
    must(p, f"download_file {state.popular_group} {POPULAR} {dest}")
    p.run("wait", timeout=timeout)
    seconds = time.monotonic() - t0
    rx = re.compile(DONE_RX.format(group=re.escape(state.popular_group), name=re.escape(POPULAR)))
    line = next((m for m in map(rx.search, p.lines) if m), None)
    copy = os.path.join(dest, POPULAR)
    same = line is not None and os.path.exists(copy) and _digest(copy) == _digest(src)
    errors = [x for x in p.lines if x.startswith("error: ")]
    p.finish(timeout=30)
    shutil.rmtree(dest, ignore_errors=True)
    return {
        "verified": same,
        "seconds": seconds,
        "mb_per_s": os.path.getsize(src) / seconds / 1e6,
        "pieces_from": pieces_from(line.group(3)) if line else {},
        "errors": errors[:3],
    }


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def proc_rchar(pid: int) -> int:
    """Bytes a process read through read-like calls (its seeder reads each piece it sends)."""
    with open(f"/proc/{pid}/io", encoding="ascii") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def swarm(spawn: Spawn, state: State, src: str, outdir: str, timeout: float) -> dict[str, Any]:
    """One seeder, ``downloaders`` real downloaders started together, each quitting as soon as
    its download ends: every copy checked, and how many copies' worth the seeder served."""
    group, size = state.swarm_group, os.path.getsize(src)
    pieces = -(-size // state.sizes.piece_size)
    seed = spawn("seed")
    must(seed, f"login seed {PASSWORD}")
    must(seed, f"upload_file {src} {group}", timeout=300)
    dls = [spawn(f"d{j:02d}") for j in range(state.sizes.downloaders)]
    run_all(dls, lambda p: f"login {p.name} {PASSWORD}", 300)
    shutil.rmtree(outdir, ignore_errors=True)
    rchar0, t0 = proc_rchar(seed.pid), time.monotonic()
    for p in dls:  # all at once: download, wait for it, leave
        assert p.p.stdin is not None
        p.p.stdin.write(f"download_file {group} {SWARM} {os.path.join(outdir, p.name)}\nwait\nquit\n")
        p.p.stdin.close()
    left: dict[str, float] = {}
    timeline: list[tuple[float, float, int]] = []  # (seconds, copies the seeder read, peers left)
    deadline, next_sample = t0 + timeout, t0
    while len(left) < len(dls) and time.monotonic() < deadline:
        for p in dls:
            if p.name not in left and not p.alive():
                left[p.name] = time.monotonic() - t0
        if time.monotonic() >= next_sample:
            next_sample += 1.0
            timeline.append((time.monotonic() - t0, (proc_rchar(seed.pid) - rchar0) / size, len(left)))
        time.sleep(0.05)
    seconds = time.monotonic() - t0
    rchar = proc_rchar(seed.pid) - rchar0
    rows = _swarm_rows(dls, group, src, outdir, left)
    shutil.rmtree(outdir, ignore_errors=True)
    from_seed = sum(r["pieces_from"].get("seed", 0) for r in rows)
    return {
        "downloaders": len(dls),
        "pieces": pieces,
        "seconds": seconds,
        "verified": sum(r["verified"] for r in rows),
        "seeder_pieces": from_seed,
        "seeder_copies": from_seed / pieces,
        "seeder_read_copies": rchar / size,  # every byte its process read: pieces sent, and more
        "seeder_timeline": timeline,
        "rows": rows,
    }


def _swarm_rows(
    dls: list[ShellProcess], group: str, src: str, outdir: str, left: dict[str, float]
) -> list[dict[str, Any]]:
    want = _digest(src)
    rx = re.compile(DONE_RX.format(group=re.escape(group), name=re.escape(SWARM)))
    rows = []
    for p in dls:
        line = next((m for m in map(rx.search, p.lines) if m), None)
        copy = os.path.join(outdir, p.name, SWARM)
        rows.append(
            {
                "peer": p.name,
                "verified": line is not None and os.path.exists(copy) and _digest(copy) == want,
                "seconds": float(line.group(1)) if line else None,
                "left_at": left.get(p.name),
                "exit": p.p.returncode,
                "pieces_from": pieces_from(line.group(3)) if line else {},
                "errors": [x for x in p.lines if x.startswith("error: ")][:3],
            }
        )
    return rows
