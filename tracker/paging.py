"""Pages of a listing: at most ``limit`` entries and PAGE_BYTES of them, and where the next starts.

Every list the tracker returns is paged, so no group, file count or name length can make a reply
larger than the socket that reads it accepts. Rows come sorted by their cursor (a name), one more
than the limit, so the page knows whether another follows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from messages.protocol import DEFAULT_PAGE, PAGE_BYTES
from messages.sizes import encoded_size


def page_args(args: dict[str, Any]) -> tuple[str, int]:
    """(after, limit) of a listing request, with the defaults of a first page."""
    return str(args.get("after", "")), int(args.get("limit", DEFAULT_PAGE))


def page(rows: Iterable[tuple[str, dict[str, Any]]], limit: int, budget: int = PAGE_BYTES) -> dict[str, Any]:
    """``{"items": [...], "next": cursor or None}`` from (cursor, wire entry) rows in order."""
    items: list[dict[str, Any]] = []
    size, last = 0, ""
    for cursor, entry in rows:
        n = encoded_size(entry)
        if len(items) == limit or (items and size + n > budget):
            return {"items": items, "next": last}
        items.append(entry)
        size, last = size + n, cursor
    return {"items": items, "next": None}
