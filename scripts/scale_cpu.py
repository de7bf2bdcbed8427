"""Where the CPU went in each phase of ``scripts/bench --scale``: the tracker, the load
processes, the real peers, and everything else on the machine (on a shared machine, other
people's work), so a latency figure can be read beside how contended the cores were.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system seconds of a process (all its threads); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_cpu() -> float:
    """Busy seconds of all cores together since boot."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK  # minus idle and iowait


class CpuMeter:
    """``mark(phase)`` ends the phase under way and starts ``phase``; ``phases`` holds, for
    each ended phase, percent of one core used by each group of processes and by the rest."""

    def __init__(self, groups: Callable[[], dict[str, list[int]]]) -> None:
        self.groups = groups  # group name -> pids, asked afresh at every mark
        self.phases: dict[str, dict[str, Any]] = {}
        self.current: str | None = None
        self._start: dict[str, float] = {}
        self._pids: dict[int, float] = {}
        self._machine = 0.0
        self._t = 0.0

    def mark(self, phase: str | None) -> None:
        now, machine = time.monotonic(), machine_cpu()
        pids = {pid: process_cpu(pid) for pids in self.groups().values() for pid in pids}
        if self.current is not None:
            seconds = max(now - self._t, 1e-6)
            row: dict[str, Any] = {"seconds": seconds}
            ours = 0.0
            for name, group in self.groups().items():
                used = sum(max(0.0, pids.get(p, 0.0) - self._pids.get(p, 0.0)) for p in group)
                row[f"{name}_pct"] = 100 * used / seconds
                ours += used
            row["machine_pct"] = 100 * (machine - self._machine) / seconds
            row["others_pct"] = max(0.0, row["machine_pct"] - 100 * ours / seconds)
            row["cores"] = os.cpu_count()
            self.phases[self.current] = row
        self.current, self._t, self._machine = phase, now, machine
        self._pids = pids
