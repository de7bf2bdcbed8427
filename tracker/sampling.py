"""Which holders of a file a downloader is told about: a bounded sample, not all of them.

A file may have thousands of holders; a downloader needs a few dozen, and a list of all would
outgrow any message. Like a BitTorrent tracker's bounded peer set, the sample is chosen here:
first holders that add pieces the sample does not have yet (so the holders of the rarest pieces
are in it, and one complete holder covers everything), then the least handed-out ones, so the
load spreads over every holder instead of falling on the first in some order. Pure: rows in,
rows out, no database.
"""

from __future__ import annotations

from collections.abc import Sequence

from .presence import HolderRow

_EVERYTHING = -1  # every bit set: a complete holder


def pieces_of(row: HolderRow) -> int:
    return _EVERYTHING if row.have is None else int.from_bytes(row.have, "big")


def choose(candidates: Sequence[HolderRow], want: int) -> list[HolderRow]:
    """Up to ``want`` of ``candidates`` (given least handed-out first): coverage, then load."""
    chosen: list[HolderRow] = []
    rest: list[HolderRow] = []
    covered = 0
    for row in candidates:
        bits = pieces_of(row)
        if len(chosen) < want and bits & ~covered:
            chosen.append(row)
            covered |= bits
        else:
            rest.append(row)
    return chosen + rest[: max(0, want - len(chosen))]
