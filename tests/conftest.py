from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import Swarm


@pytest.fixture
def swarm(tmp_path) -> Iterator[Swarm]:
    """A running tracker; peers are added by the test. Every process is killed at the end."""
    s = Swarm(str(tmp_path))
    s.start_tracker()
    try:
        yield s
    finally:
        s.close()
