"""The live view, rendered into a recording console: what a user would read on screen."""

from __future__ import annotations

from rich.console import Console

from messages.bitfield import Bitfield
from messages.events import DownloadState, ProgressEvent
from peer.view import LiveView, piece_map

MiB = 1 << 20


def event(done: int, elapsed: float, state: str = "running", flight: tuple[int, ...] = ()) -> ProgressEvent:
    total = 100
    return ProgressEvent(
        peer="dana",
        group="films",
        name="talk.mkv",
        dest="/tmp/out/talk.mkv",
        size=total * MiB,
        total=total,
        done=done,
        reused=0,
        state=DownloadState(state),
        elapsed=elapsed,
        holders={"alice": done // 2, "bob": done - done // 2},
        sources=2,
        in_flight=len(flight),
        have=Bitfield.from_indices(total, range(done)).encode(),
        flight=Bitfield.from_indices(total, flight).encode(),
        error="",
        note="",
    )


def render(view: LiveView) -> str:
    console = Console(record=True, width=140, color_system=None)
    console.print(view.render())
    return console.export_text()


def test_running_download_shows_bar_rate_eta_and_holders() -> None:
    view = LiveView()
    view.apply(event(20, 1.0), now=10.0)
    view.apply(event(40, 2.0, flight=(40, 41, 42, 43)), now=11.0)  # 20 MiB in 1 s
    text = render(view)
    assert "[films] talk.mkv (dana)" in text
    assert "━" in text  # the bar
    assert "40.0 MiB / 100.0 MiB" in text
    rate = float(text.split(" MB/s")[0].split()[-1])
    assert 15 < rate < 25, text  # about 21 MB/s (20 MiB/s)
    assert "ETA" in text and "pieces 40/100" in text and "in flight 4" in text
    assert "2 in use: alice 50% (20)  bob 50% (20)" in text


def test_complete_download_says_so() -> None:
    view = LiveView()
    view.apply(event(100, 4.2, state="complete"), now=1.0)
    text = render(view)
    assert "[complete]" in text and "in 4.2s" in text and "ETA" not in text
    assert not view.running


def test_piece_map_is_compact_whatever_the_size() -> None:
    total = 10_000
    have = Bitfield.from_indices(total, range(5_000))
    flight = Bitfield.from_indices(total, range(5_000, 5_200))
    cells = piece_map(total, have, flight).plain
    assert len(cells) == 64
    assert cells[:32] == "█" * 32 and cells[32] == "▓" and cells[-1] == "·"
    small = piece_map(5, Bitfield.from_indices(5, [0, 2]), Bitfield.from_indices(5, [1])).plain
    assert small == "█▓█··"


def test_plain_lines_for_pipes() -> None:
    view = LiveView()
    view.apply(event(50, 1.0), now=0.0)
    (line,) = view.plain_lines()
    assert line.startswith("dana [films] talk.mkv running  50.0% 50/100 pieces")
    assert "holders alice:25 bob:25" in line
