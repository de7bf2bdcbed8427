"""How big things are on the wire, and lists cut to fit a message.

Every list that travels (an announce's shares, a push's holders) is cut into chunks whose
entries take at most a budget of encoded bytes, so no count of entries, and no entry length the
validators allow, makes a message larger than the socket that reads it accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import orjson

T = TypeVar("T")


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` as JSON, plus one for the comma that separates it in a list."""
    return len(orjson.dumps(value)) + 1


def chunks(items: Iterable[T], budget: int, max_items: int | None = None) -> Iterator[list[T]]:
    """Consecutive runs of ``items`` of at most ``budget`` encoded bytes (and ``max_items``);
    an item larger than the budget alone is a run of its own (validators bound entry sizes)."""
    run: list[T] = []
    size = 0
    for item in items:
        n = encoded_size(item)
        if run and (size + n > budget or (max_items is not None and len(run) == max_items)):
            yield run
            run, size = [], 0
        run.append(item)
        size += n
    if run:
        yield run
