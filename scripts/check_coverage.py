"""Fail unless the sans-I/O cores are covered by the fast tests alone (see README, Testing).

Reads the JSON report that ``pytest -m 'not slow' --cov ... --cov-report=json:PATH`` wrote.
"""

from __future__ import annotations

import sys

import orjson

TARGETS = {  # file -> minimum line coverage (percent) from the fast tests alone
    "tracker/handlers.py": 90.0,
    "tracker/presence_ops.py": 90.0,
    "tracker/core.py": 90.0,
    "peer/pieceserver.py": 90.0,
}


def main(path: str) -> int:
    with open(path, "rb") as f:
        files = orjson.loads(f.read())["files"]
    failed = False
    for name, minimum in TARGETS.items():
        got = files.get(name, {}).get("summary", {}).get("percent_covered", 0.0)
        ok = got >= minimum
        failed |= not ok
        print(f"coverage {name}: {got:.1f}% (target {minimum:.0f}%){'' if ok else '  <-- below target'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
