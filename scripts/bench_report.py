"""The tables ``scripts/bench`` prints, one function per section, from the results dictionary.

Kept apart from the measuring code so that a section can be re-run alone (``--only``) and still
print the same table, and so the JSON file holds everything a table shows.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def fmt(stat: dict[str, float], digits: int = 0) -> str:
    """median [min-max]"""
    return f"{stat['median']:.{digits}f} [{stat['min']:.{digits}f}-{stat['max']:.{digits}f}]"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    return table


def baselines(console: Console, results: dict[str, Any]) -> None:
    if "tcp" not in results:
        return
    title = f"Machine limits: {results['size'] >> 20} MiB, median \\[min-max]"
    table = _table(title, "row", "MB/s", "CPU s/GB", "sender CPU s/GB")
    for key, label in (
        ("write", "page-cache write alone (pwrite 512 KiB from memory)"),
        ("tcp", "plain TCP stream (sendfile -> recv_into+pwrite)"),
        ("zmq", "bare pyzmq DEALER->ROUTER, 512 KiB frames + pwrite"),
        ("curve", "... the same over CURVE (as our piece sockets by default)"),
        ("direct", "O_DIRECT write alone (1 MiB pieces, copied to an aligned buffer)"),
        ("sha256", "SHA-256 alone (1 MiB pieces, hashlib)"),
        ("aesgcm", "AES-256-GCM decryption alone (1 MiB pieces; not used by peers)"),
    ):
        if key in results:
            row = results[key]
            sender = fmt(row["sender_cpu_s_per_gb"], 2) if "sender_cpu_s_per_gb" in row else ""
            table.add_row(label, fmt(row["mb_per_s"]), fmt(row["cpu_s_per_gb"], 2), sender)
    console.print(table)


_NAMES = {
    "ours": "ours (pieces encrypted)",
    "ours_plain": "ours --plain-pieces",
    "libtorrent": "libtorrent (default policy)",
}


def downloads(console: Console, results: dict[str, Any]) -> None:
    """Ours and libtorrent per page condition, with same-run ratios."""
    rows = results.get("compare", {})
    if not rows:
        return
    title = (
        f"Downloads: {results['size'] >> 20} MiB from local holders, median \\[min-max] of {results['reps']}"
    )
    table = _table(title, "row", "MB/s", "CPU s/GB", "peak RSS MiB", "x libtorrent", "x lt transfer")
    for key, row in rows.items():
        k, piece, pages = key.split("-")
        for name in ("ours", "ours_plain", "libtorrent"):
            if name not in row:
                continue
            r = row[name]
            ratio = row["ratio"].get(f"{name}_vs_lt")
            transfer = row["ratio"].get(f"{name}_vs_lt_transfer")
            table.add_row(
                f"{pages} pages, {k[1:]} holders, {piece}: {_NAMES[name]}",
                fmt(r["mb_per_s"]),
                fmt(r["cpu_s_per_gb"], 2),
                fmt(r["peak_rss_mib"]),
                f"{ratio:.2f}" if ratio else "",
                f"{transfer:.2f}" if transfer else "",
            )
    for key, row in results.get("download", {}).items():  # sweep and memory rows: ours alone
        table.add_row(
            f"recycled pages, {key}: ours",
            fmt(row["mb_per_s"]),
            fmt(row["cpu_s_per_gb"], 2),
            fmt(row["peak_rss_mib"]),
            "",
            "",
        )
    console.print(table)
    console.print(
        "x libtorrent: ours / libtorrent's MB/s from add_torrent; x lt transfer: against libtorrent's rate "
        "after its first connection (it waits for an internal 0.5 s tick before connecting)"
    )


def shaped(console: Console, results: dict[str, Any]) -> None:
    s = results.get("shaped")
    if not s:
        return
    if "skipped" in s:
        console.print(f"shaped links skipped: {s['skipped']}")
        return
    rates = "/".join(f"{r:g}" for r in s["rates_mbit"])
    ideal = s["ideal_payload_mbit"]
    title = f"Shaped links {rates} Mbit/s (payload ideal {ideal:.0f} Mbit/s), median \\[min-max]"
    table = _table(title, "row", "Mbit/s", "of ideal", "of rate sum", "pieces per holder (median)")
    for name in ("ours", "libtorrent"):
        if name in s:
            r = s[name]
            table.add_row(
                _NAMES[name],
                fmt(r["mbit_per_s"]),
                fmt({k: 100 * v for k, v in r["of_ideal"].items()}) + "%",
                fmt({k: 100 * v for k, v in r["of_rate_sum"].items()}) + "%",
                " ".join(f"{p:.0f}" for p in r["pieces_per_holder"]),
            )
    console.print(table)
    if "ours_vs_lt" in s:
        console.print(f"ours / libtorrent on shaped links: {s['ours_vs_lt']:.2f}")


def control(console: Console, results: dict[str, Any]) -> None:
    c = results.get("control")
    if not c:
        return
    rows = c["rows"]
    title = f"Tracker control plane: {results['control_clients']} closed-loop clients, requests/s"
    table = _table(title, "row", *rows)
    for key, label in (
        ("read_list_files_rps", "read: list_files"),
        ("read_holders_rps", "read: holders of a file"),
        ("write_create_group_rps", "durable write: create_group"),
        ("write_join_group_rps", "durable write: join_group"),
    ):
        table.add_row(label, *(f"{r[key]:.0f}" for r in rows.values()))
    table.add_row(
        "bare echo ceiling, same server count",
        *(f"{c['echo'][str(r['trackers'])]['rps']:.0f}" for r in rows.values()),
    )
    cpu = ("list_files", "create_group")
    for phase in cpu:
        table.add_row(
            f"CPU % of one core in {phase}: trackers / store / load",
            *(_cpu(r["detail"][phase]) for r in rows.values()),
        )
    table.add_row(
        "acknowledged writes / found after SIGKILL",
        *(f"{r['writes_acknowledged']} / {r['writes_found_after_sigkill']}" for r in rows.values()),
    )
    console.print(table)
    for name, ratio in c.get("reads_2_over_1", {}).items():
        console.print(f"{name}: postgres 2 trackers / 1 tracker = {ratio:.2f}")
    for name, r in rows.items():
        if r["errors"]:
            console.print(f"{name} errors: {r['errors']}")


def _cpu(d: dict[str, Any]) -> str:
    each = "+".join(f"{x:.0f}" for x in d["per_server"])
    return f"{each} / {d['store']:.0f} / {d['client']:.0f}"


def push(console: Console, results: dict[str, Any]) -> None:
    p = results.get("push")
    if not p:
        return
    table = _table("Pushes seen by a running download, seconds, median \\[min-max]", "row", *p)
    table.add_row(
        "dead holder (SIGKILL) -> dropped", *(fmt(r["dead_holder_dropped_s"], 2) for r in p.values())
    )
    table.add_row(
        "new holder's upload_file acked -> first piece from it",
        *(fmt(r["new_holder_first_piece_s"], 2) for r in p.values()),
    )
    table.add_row("repetitions", *(str(len(r["runs"])) for r in p.values()))
    console.print(table)
    console.print("resolution: progress events come at most every 0.1 s, so each figure is read 0-0.1 s late")
