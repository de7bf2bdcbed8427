"""Fail when a function in the packages grows past MAX_LINES (house rule: short functions).

Counts a function's lines from its ``def`` to its last line, docstring included.
"""

from __future__ import annotations

import ast
import pathlib
import sys

MAX_LINES = 50
PACKAGES = ("broker", "messages", "tracker", "peer", "launch")


def long_functions(root: pathlib.Path) -> list[str]:
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_LINES:
                        out.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {lines} lines")
    return out


if __name__ == "__main__":
    found = long_functions(pathlib.Path(__file__).resolve().parent.parent)
    for line in found:
        print(f"function over {MAX_LINES} lines: {line}")
    sys.exit(1 if found else 0)
