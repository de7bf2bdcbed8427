"""Plain-text renderings of results, shared by the shell and the scripts."""

from __future__ import annotations

from .download import DownloadStatus


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def rate(s: DownloadStatus) -> float:
    """Bytes per second fetched so far (pieces reused from a .part file do not count)."""
    fetched = (s.done - s.reused) * (s.size / s.total if s.total else 0)
    return fetched / s.elapsed if s.elapsed > 0 else 0.0


def holders_text(s: DownloadStatus) -> str:
    return " ".join(f"{u}:{n}" for u, n in sorted(s.from_holders.items())) or "none"


def download_line(s: DownloadStatus) -> str:
    """show_downloads' classic line: [D] running, [C] complete, [F] failed."""
    if s.state == "complete":
        return f"[C] [{s.group}] {s.name}"
    if s.state == "failed":
        return f"[F] [{s.group}] {s.name}: {s.error}"
    pct = 100.0 * s.done / s.total if s.total else 100.0
    return (
        f"[D] [{s.group}] {s.name} {pct:.0f}% ({s.done}/{s.total} pieces, "
        f"{rate(s) / 1e6:.1f} MB/s, {s.holders} holders)"
    )


def finished_line(s: DownloadStatus) -> str:
    if s.state != "complete":
        return f"download of [{s.group}] {s.name} failed: {s.error}"
    extra = f", reused {s.reused}" if s.reused else ""
    note = f"; {s.note}" if s.note else ""
    return (
        f"download complete: [{s.group}] {s.name} -> {s.dest} ({human_size(s.size)} in {s.elapsed:.2f}s, "
        f"{rate(s) / 1e6:.1f} MB/s; pieces from {holders_text(s)}{extra}){note}"
    )
