"""Our downloader beside libtorrent, in one run: on loopback and over shaped links.

Why alternate: this machine is shared and noisy, and its page cache behaves differently on pages
it recently used ("recycled") and pages it has handed back to the host ("fresh", see
``bench_download.prepare_pages``). So every contender's swarm is started once, and then each
repetition runs every contender once per page condition, in a rotating order, so that whatever
noise there is hits all of them alike. Only same-run ratios of medians are reported.

Contenders on loopback, all with the same file, K local holder processes, a fresh downloader
process per run:
  ours        our default (pieces CURVE-encrypted);
  ours_plain  holders started with ``--plain-pieces`` (pieces unencrypted; control stays CURVE);
  libtorrent  libtorrent 2.x with its default encryption policy (an MSE handshake, then the
              payload in plaintext where both sides allow it, which they do here), a v2 torrent.
Ratios are ours/libtorrent per page condition, against libtorrent's end-to-end rate
(``mb_per_s``, from add_torrent) and against its rate after its first connection
(``transfer_mb_per_s``: libtorrent waits for an internal 0.5 s tick before connecting).

Shaped links (``bench_netns.ShapedLinks``): holder i in its own namespace behind a tbf-limited
veth; ours and libtorrent alternate on the same namespaces; each row says the rate against the
ideal (sum of the links' payload rates) and the pieces each holder served.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

from bench_download import PAGE_CONDITIONS, DownloadBench, summarize, summarize_runs
from bench_libtorrent import SUMMARY_KEYS, LibtorrentBench, libtorrent_missing
from bench_netns import RATES_MBIT, ShapedLinks, Skip

from peer.argtypes import parse_size

LT_ENCRYPTION = "enabled"  # libtorrent's default policy


class _Contender(Protocol):
    def run_once(self, index: int, pages: str = ...) -> dict[str, Any]: ...

    def close(self) -> None: ...


def _alternate(contenders: dict[str, _Contender], reps: int, pages: Sequence[str]) -> dict[str, dict]:
    """contender -> page condition -> list of runs; the order rotates every repetition."""
    names = list(contenders)
    runs: dict[str, dict[str, list]] = {n: {p: [] for p in pages} for n in names}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for cond in pages:
            for name in order:
                r = contenders[name].run_once(rep, cond)
                runs[name][cond].append(r)
                print(f"  run {rep + 1}/{reps} {cond}: {name} {r['mb_per_s']:.0f} MB/s", flush=True)
    return runs


def _start(contenders: dict[str, _Contender], name: str, make: Any) -> None:
    """Start one contender's swarm, or note why it cannot run (libtorrent missing)."""
    try:
        contenders[name] = make()
    except Skip as e:
        print(f"skip {name}: {e}", flush=True)


def compare_rows(
    workdir: str,
    src: str,
    holders: int,
    piece_size: str,
    reps: int,
    pages: Sequence[str] = PAGE_CONDITIONS,
    peer_args: Sequence[str] = (),
    *,
    ours: bool = True,
    libtorrent: bool = True,
) -> dict[str, Any]:
    """Rows ``k{K}-{piece}-{pages}``: each contender's runs and medians, and the ratios
    ours/libtorrent (``ours`` False: libtorrent alone; ``libtorrent`` False: ours alone)."""
    contenders: dict[str, _Contender] = {}
    try:
        folder = os.path.join(workdir, f"cmp-k{holders}-{piece_size}")
        if ours:
            contenders["ours"] = DownloadBench(f"{folder}-ours", src, holders, piece_size, list(peer_args))
            contenders["ours_plain"] = DownloadBench(
                f"{folder}-plain", src, holders, piece_size, list(peer_args), plain=True
            )
        if libtorrent:
            lt_dir = os.path.join(workdir, "libtorrent")
            _start(contenders, "libtorrent", lambda: _lt(lt_dir, src, holders, piece_size))
        runs = _alternate(contenders, reps, pages)
    finally:
        for c in contenders.values():
            c.close()
    rows: dict[str, Any] = {}
    for cond in pages:
        row: dict[str, Any] = {}
        for name, by_cond in runs.items():
            keys = (
                SUMMARY_KEYS
                if name == "libtorrent"
                else ("mb_per_s", "cpu_s_per_gb", "peak_rss_mib", "seconds")
            )
            row[name] = summarize_runs(by_cond[cond], keys)
        row["ratio"] = _ratios(row)
        rows[f"k{holders}-{piece_size}-{cond}"] = row
    return rows


def _lt(workdir: str, src: str, holders: int, piece_size: str) -> LibtorrentBench:
    if libtorrent_missing():
        raise Skip(libtorrent_missing())
    return LibtorrentBench(workdir, src, holders, parse_size(piece_size), encryption=LT_ENCRYPTION)


def _ratios(row: dict[str, Any]) -> dict[str, float]:
    """ours/libtorrent and ours_plain/libtorrent, against both of libtorrent's rates."""
    lt = row.get("libtorrent")
    if lt is None:
        return {}
    out = {}
    for name in [n for n in ("ours", "ours_plain") if n in row]:
        med = row[name]["mb_per_s"]["median"]
        out[f"{name}_vs_lt"] = med / lt["mb_per_s"]["median"]
        out[f"{name}_vs_lt_transfer"] = med / lt["transfer_mb_per_s"]["median"]
    return out


def shaped_rows(
    workdir: str, src: str, reps: int, rates: Sequence[float] = RATES_MBIT, prefix: str = "tbench-"
) -> dict[str, Any]:
    """Ours and libtorrent, alternating, over shaped links (raises ``Skip`` where impossible)."""
    with ShapedLinks(rates, prefix=prefix) as net:
        contenders: dict[str, _Contender] = {}
        try:
            contenders["ours"] = DownloadBench(
                os.path.join(workdir, "shaped-ours"), src, len(rates), "1M", [], netns=net
            )
            lt_dir = os.path.join(workdir, "shaped-libtorrent")
            _start(
                contenders,
                "libtorrent",
                lambda: LibtorrentBench(
                    lt_dir, src, len(rates), parse_size("1M"), netns=net, encryption=LT_ENCRYPTION
                ),
            )
            runs = _alternate(contenders, reps, ["recycled"])
        finally:
            for c in contenders.values():
                c.close()
        return _shaped_summary(net, runs)


def _shaped_summary(net: ShapedLinks, runs: dict[str, dict]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rates_mbit": [link.rate_mbit for link in net.links],
        "ideal_payload_mbit": net.ideal_mbit,
    }
    rate_sum = sum(link.rate_mbit for link in net.links)
    for name, by_cond in runs.items():
        rs = by_cond["recycled"]
        for r in rs:
            r["mbit_per_s"] = r["mb_per_s"] * 8
            r["of_ideal"] = r["mbit_per_s"] / net.ideal_mbit
            r["of_rate_sum"] = r["mbit_per_s"] / rate_sum
            r.setdefault("pieces_per_holder", r.get("pieces_per_seeder"))
        out[name] = summarize_runs(rs, ("mb_per_s", "mbit_per_s", "of_ideal", "of_rate_sum", "seconds"))
        out[name]["pieces_per_holder"] = [
            summarize([float(r["pieces_per_holder"][i]) for r in rs])["median"] for i in range(len(net.links))
        ]
    if "libtorrent" in out and "ours" in out:
        out["ours_vs_lt"] = out["ours"]["mb_per_s"]["median"] / out["libtorrent"]["mb_per_s"]["median"]
    return out
