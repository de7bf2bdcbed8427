"""Command-line value types: each checks its value at start, so a bad option stops the peer with
a clear message and exit status 2 (argparse's), never a hang or a crash later in a thread."""

from __future__ import annotations

import argparse

from broker.keys import check_key
from messages.endpoints import check_endpoint
from messages.errors import LocalError, ProtocolError
from messages.protocol import MAX_PIECE_SIZE, MIN_PIECE_SIZE


def parse_size(text: str) -> int:
    """'512K', '4M', '1G' or plain bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 512K, 4M, 1G)") from None


def piece_size(text: str) -> int:
    n = parse_size(text)
    if not MIN_PIECE_SIZE <= n <= MAX_PIECE_SIZE or n & (n - 1):
        raise argparse.ArgumentTypeError(
            f"must be a power of two from {MIN_PIECE_SIZE // 1024}K to {MAX_PIECE_SIZE >> 20}M"
        )
    return n


def rate(text: str) -> int:
    n = parse_size(text)
    if n <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of bytes per second")
    return n


def at_least_one(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError("must be a whole number from 1 to 256")
    return n


def seconds(text: str) -> float:
    try:
        n = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.1 <= n <= 3600:
        raise argparse.ArgumentTypeError("must be from 0.1 to 3600 seconds")
    return n


def endpoint(text: str) -> str:
    try:
        return check_endpoint(text)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def tracker_list(text: str) -> list[str]:
    """One tracker endpoint, or several separated by commas (tried in order, on failure)."""
    return [endpoint(part.strip()) for part in text.split(",") if part.strip()] or [endpoint(text)]


def tracker_key(text: str) -> str:
    try:
        return check_key(text, "--tracker-key")
    except LocalError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def listen_endpoint(text: str) -> str:
    try:
        return check_endpoint(text, any_port=True)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
