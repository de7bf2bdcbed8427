"""The figures of ``scripts/bench --scale`` as tables, and the issue's targets checked.

Checks are of two kinds: ``correct`` (every download verified, listings complete, every login
answered: the run fails without them) and ``target`` (latency, peers dropped, the seeder's
copies: reported as met or not).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from messages import protocol as P

P99_TARGET_MS = 50.0
SEEDER_COPIES = 4.0
OPS = (P.OP_HEARTBEAT, P.OP_LIST_FILES, P.OP_HOLDERS)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def burst_rounds(r: dict[str, Any], op: str, prefix: str = "burst") -> dict[str, Any]:
    """An operation's latency in each burst (or each window after one): p50 and p99 per round,
    and their medians."""
    rows = [r["load"]["latency"].get(f"{prefix}{b}/{op}", {}) for b in range(1, r["sizes"]["bursts"] + 1)]
    p50 = [row.get("p50_ms") for row in rows]
    p99 = [row.get("p99_ms") for row in rows]
    return {
        "p50_ms": p50,
        "p99_ms": p99,
        "p50_median_ms": _median(p50),
        "p99_median_ms": _median(p99),
        "requests": sum(row.get("count", 0) for row in rows),
    }


def _median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return statistics.median(known) if known else None


def checks(r: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(kind: str, what: str, figure: str, target: str, met: bool) -> None:
        out.append({"kind": kind, "what": what, "figure": figure, "target": target, "met": bool(met)})

    for op in OPS:
        b = burst_rounds(r, op)
        p99 = b["p99_median_ms"]
        rounds = ", ".join(_ms(v) for v in b["p99_ms"])
        add(
            "target",
            f"{op} p99 during a burst of logins (median of {len(b['p99_ms'])})",
            f"{_ms(p99)} ms ({rounds})",
            f"< {P99_TARGET_MS:.0f} ms",
            p99 is not None and p99 < P99_TARGET_MS,
        )
    _presence_checks(r, add)
    _result_checks(r, add)
    return out


Add = Callable[[str, str, str, str, bool], None]


def _presence_checks(r: dict[str, Any], add: Add) -> None:
    load = r["load"]
    offline, dropped = sum(load["offline_answers"].values()), r["tracker_log"]["dropped_peers"]
    lost = load["sessions"] - load["online_at_end"]
    add(
        "target",
        "peers dropped (online=false answers, tracker drops, not online at the end)",
        f"{offline}, {dropped}, {lost} of {load['sessions']}",
        "0, 0, 0",
        offline == 0 and dropped == 0 and lost == 0,
    )
    rounds = r["logins"]
    ok, count = sum(x["ok"] for x in rounds), sum(x["count"] for x in rounds)
    took = ", ".join(f"{x['seconds']:.1f}" for x in rounds)
    add("correct", "logins answered", f"{ok}/{count} (bursts of {took} s)", "all", ok == count)


def _result_checks(r: dict[str, Any], add: Add) -> None:
    s = r["sizes"]
    lf, gr = r["listings"][P.OP_LIST_FILES], r["listings"][P.OP_LIST_GROUPS]
    figure = f"{lf['distinct']} files, {lf['pages']} pages, {lf['seconds']:.2f}s"
    add(
        "correct",
        "list_files of the large group",
        figure,
        f"{s['big_files']}",
        lf["distinct"] == s["big_files"],
    )
    figure = f"{gr['distinct']} groups, {gr['pages']} pages, {gr['seconds']:.2f}s"
    add("correct", "list_groups", figure, f"{s['all_groups']}", gr["distinct"] == s["all_groups"])
    pop = r["popular"]
    add(
        "correct",
        "download of the file with many holders",
        f"{pop['holders_total']} holders, verified={pop['verified']}",
        f">= {s['holders']} holders, verified",
        pop["verified"] and pop["holders_total"] >= s["holders"],
    )
    sw = r["swarm"]
    figure = f"{sw['verified']}/{sw['downloaders']}"
    add("correct", "swarm downloads verified", figure, "all", sw["verified"] == sw["downloaders"])
    figure = f"{sw['seeder_copies']:.2f}"
    add("target", "copies the swarm's seeder served", figure, "< 4", sw["seeder_copies"] < SEEDER_COPIES)


def print_tables(console: Console, r: dict[str, Any]) -> None:
    s = r["sizes"]
    t = Table(title=f"Tracker under {s['peers']} online peers: latency by phase (ms)")
    for col in ("phase", "op", "requests", "p50", "p99", "max"):
        t.add_column(col, justify="left" if col in ("phase", "op") else "right")
    for key, row in r["load"]["latency"].items():
        phase, op = key.split("/", 1)
        if op in OPS or op == "login_total":
            t.add_row(
                phase, op, str(row["count"]), _ms(row["p50_ms"]), _ms(row["p99_ms"]), _ms(row["max_ms"])
            )
    console.print(t)
    _cpu(console, r)
    _costs(console, r)
    c = Table(title="Issue 11 targets")
    for col in ("check", "figure", "target", "met"):
        c.add_column(col)
    for row in r["checks"]:
        c.add_row(row["what"], row["figure"], row["target"], "[green]yes[/]" if row["met"] else "[red]NO[/]")
    console.print(c)


def _costs(console: Console, r: dict[str, Any]) -> None:
    t = Table(title="Costs that must not grow with size")
    for col in ("row", "figure"):
        t.add_column(col)
    acc = r["accept"]
    for group, row in acc.items():
        t.add_row(
            f"accept_request, {group} ({r['sizes'][_members_key(group)]} members)", f"{row['per_s']:.0f} /s"
        )
    for n, row in r["sharestore"].items():
        t.add_row(
            f"share store: one upload at {n} shares", f"{row['median_ms']:.2f} ms (p90 {row['p90_ms']:.2f})"
        )
    a = r["announce"]
    t.add_row(f"announce {a['sessions']} peers (first contact)", f"{a['per_s']:.0f} /s")
    sw = r["swarm"]
    t.add_row(
        f"swarm: 1 seeder, {sw['downloaders']} downloaders leaving as they finish",
        f"{sw['seconds']:.1f}s; seeder served {sw['seeder_copies']:.2f} copies "
        f"({sw['seeder_read_copies']:.2f} by bytes it read)",
    )
    ce = r["crowd_expiry"]
    ping = ce["ping"]
    t.add_row(
        f"{ce['dropped_peers']} sessions go silent at once: all dropped after",
        f"{ce['seconds']:.1f}s; ping meanwhile {_ping(ping)}",
    )
    t.add_row("tracker ping during the swarm", _ping(sw["ping"]))
    pop = r["popular"]
    t.add_row(
        f"download of the file with {pop['holders_total']} holders",
        f"{pop['seconds']:.1f}s, {pop['mb_per_s']:.0f} MB/s",
    )
    console.print(t)


def _cpu(console: Console, r: dict[str, Any]) -> None:
    t = Table(
        title=f"CPU by phase, % of one core ({r['cpu'].get('before', {}).get('cores', '?')} cores in all)"
    )
    for col in ("phase", "seconds", "tracker", "load processes", "real peers", "everything else", "machine"):
        t.add_column(col, justify="left" if col == "phase" else "right")
    for phase, row in r["cpu"].items():
        t.add_row(
            phase,
            f"{row['seconds']:.1f}",
            f"{row['tracker_pct']:.0f}",
            f"{row['loads_pct']:.0f}",
            f"{row['peers_pct']:.0f}",
            f"{row['others_pct']:.0f}",
            f"{row['machine_pct']:.0f}",
        )
    console.print(t)


def _ping(p: dict[str, Any]) -> str:
    if not p.get("count"):
        return "no ping answered"
    return f"p50 {p['p50_ms']:.0f} ms, p99 {p['p99_ms']:.0f} ms, max {p['max_ms']:.0f} ms"


def _members_key(group: str) -> str:
    return "accept_small" if group == "acc-small" else "accept_big"
