"""The live progress view: per download a bar, rate, ETA, holders and a compact piece map.

``LiveView`` is fed ProgressEvents (from the event bus) and renders rich renderables; it never
reads files or asks the downloader, so watching costs the data path nothing. Rates are
smoothed (exponential moving average) so the figure does not jitter with each event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from messages.bitfield import Bitfield
from messages.events import DownloadState, ProgressEvent

from .format import holders_text, human_size

MAP_WIDTH = 64  # cells in the piece map, whatever the number of pieces
SMOOTHING = 0.3  # weight of the newest rate sample


@dataclass
class Tracked:
    event: ProgressEvent
    rate: float = 0.0  # bytes/s, smoothed
    last_bytes: float = 0.0
    last_time: float = 0.0


def piece_map(total: int, have: Bitfield, flight: Bitfield, width: int = MAP_WIDTH) -> Text:
    """One character per cell: '█' done, '▓' some in flight, '▒' partly done, '·' missing."""
    text = Text()
    if total == 0:
        return text
    cells = min(width, total)
    for c in range(cells):
        lo, hi = c * total // cells, (c + 1) * total // cells
        span = range(lo, hi)
        done = sum(1 for i in span if i in have)
        if done == len(span):
            text.append("█", style="green")
        elif any(i in flight for i in span):
            text.append("▓", style="yellow")
        elif done:
            text.append("▒", style="green")
        else:
            text.append("·", style="dim")
    return text


class LiveView:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], Tracked] = {}

    def apply(self, event: ProgressEvent, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        done_bytes = event.done_bytes
        t = self.items.get(event.key)
        if t is None:
            self.items[event.key] = Tracked(event, event.rate, done_bytes, now)
            return
        dt = now - t.last_time
        if dt >= 0.05:
            sample = (done_bytes - t.last_bytes) / dt
            t.rate = sample if t.rate == 0 else SMOOTHING * sample + (1 - SMOOTHING) * t.rate
            t.last_bytes, t.last_time = done_bytes, now
        t.event = event

    @property
    def running(self) -> bool:
        return any(t.event.state is DownloadState.RUNNING for t in self.items.values())

    def render(self) -> RenderableType:
        if not self.items:
            return Text("no downloads", style="dim")
        return Group(*(self._render_one(t) for t in self.items.values()))

    def _render_one(self, t: Tracked) -> RenderableType:
        e = t.event
        done_bytes = e.done_bytes
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        who = f" ({e.peer})" if e.peer else ""
        state = "" if e.state is DownloadState.RUNNING else f" [{e.state}]"
        grid.add_row(Text(f"[{e.group}] {e.name}{who}{state}", style="bold"), "")
        bar = ProgressBar(total=max(e.total, 1), completed=e.done if e.total else 1, width=40)
        if e.state is DownloadState.RUNNING and t.rate > 0:
            eta = f"ETA {(e.size - done_bytes) / t.rate:5.1f}s"
        else:
            eta = f"in {e.elapsed:.1f}s" if e.state is DownloadState.COMPLETE else ""
        figures = (
            f"{human_size(done_bytes)} / {human_size(e.size)}  {t.rate / 1e6:6.1f} MB/s  {eta}  "
            f"pieces {e.done}/{e.total}  in flight {e.in_flight}"
        )
        grid.add_row(bar, figures)
        received = sum(e.holders.values()) or 1
        shares = "  ".join(f"{u} {100 * n / received:.0f}% ({n})" for u, n in sorted(e.holders.items()))
        grid.add_row(Text("holders", style="dim"), f"{len(e.holders)} in use: {shares or '-'}")
        pm = piece_map(e.total, Bitfield.decode(e.total, e.have), Bitfield.decode(e.total, e.flight))
        grid.add_row(Text("pieces", style="dim"), pm)
        if e.error or e.note:
            grid.add_row(
                Text("note", style="dim"), Text(e.error or e.note, style="red" if e.error else "yellow")
            )
        return grid

    def plain_lines(self) -> list[str]:
        """One line per download, for logs and pipes (no terminal)."""
        out = []
        for t in self.items.values():
            e = t.event
            pct = 100 * e.done / e.total if e.total else 100
            holders = holders_text(e) if e.holders else "-"
            out.append(
                f"{e.peer} [{e.group}] {e.name} {e.state} {pct:5.1f}% {e.done}/{e.total} pieces "
                f"{t.rate / 1e6:.1f} MB/s holders {holders}"
            )
        return out
