"""Plain-text renderings of downloads and sizes, shared by the shell and the live view."""

from __future__ import annotations

from messages.events import DownloadState, ProgressEvent


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def holders_text(s: ProgressEvent) -> str:
    return " ".join(f"{u}:{n}" for u, n in sorted(s.holders.items())) or "none"


def download_line(s: ProgressEvent) -> str:
    """show_downloads' classic line: [D] running, [C] complete, [F] failed."""
    if s.state is DownloadState.COMPLETE:
        return f"[C] [{s.group}] {s.name}"
    if s.state is DownloadState.FAILED:
        return f"[F] [{s.group}] {s.name}: {s.error}"
    pct = 100.0 * s.done / s.total if s.total else 100.0
    return (
        f"[D] [{s.group}] {s.name} {pct:.0f}% ({s.done}/{s.total} pieces, "
        f"{s.rate / 1e6:.1f} MB/s, {s.sources} holders)"
    )


def finished_line(s: ProgressEvent) -> str:
    if s.state is not DownloadState.COMPLETE:
        return f"download of [{s.group}] {s.name} failed: {s.error}"
    extra = f", reused {s.reused}" if s.reused else ""
    note = f"; {s.note}" if s.note else ""
    return (
        f"download complete: [{s.group}] {s.name} -> {s.dest} ({human_size(s.size)} in {s.elapsed:.2f}s, "
        f"{s.rate / 1e6:.1f} MB/s; pieces from {holders_text(s)}{extra}){note}"
    )
