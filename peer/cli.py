"""``torrent-peer``: a peer process with its command shell."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

import zmq
from rich.console import Console

from messages.protocol import DEFAULT_PIECE_SIZE, MAX_PIECE_SIZE, MIN_PIECE_SIZE

from .api import Peer
from .download import Settings
from .shell import Shell

DEFAULT_HOME = os.path.join("~", ".torrent", "peer")


def parse_size(text: str) -> int:
    """'512K', '4M', '1G' or plain bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="torrent-peer", description="Torrent peer: shell and seeder")
    ap.add_argument("--tracker", required=True, help="tracker endpoint, e.g. tcp://127.0.0.1:6000")
    ap.add_argument(
        "--listen", default="tcp://127.0.0.1:0", help="where the seeder listens (port 0: any free)"
    )
    ap.add_argument("--advertise", help="endpoint to tell the tracker, when --listen is a wildcard address")
    ap.add_argument("--home", default=DEFAULT_HOME, help=f"this peer's state folder (default {DEFAULT_HOME})")
    ap.add_argument(
        "--piece-size", type=parse_size, default=DEFAULT_PIECE_SIZE, help="piece size for uploads"
    )
    ap.add_argument("--workers", type=int, default=4, help="download worker threads per download")
    ap.add_argument("--per-holder", type=int, default=4, help="pieces in flight per holder")
    ap.add_argument(
        "--piece-timeout", type=float, default=8.0, help="seconds before a piece request is given up"
    )
    ap.add_argument("--upload-limit", type=parse_size, help="cap on bytes/s served to others")
    ap.add_argument(
        "-c", "--command", action="append", dest="commands", help="run this command (repeatable), then exit"
    )
    ap.add_argument("--publish", help="also send progress events to this endpoint (a SUB bound there)")
    ap.add_argument(
        "--stay", action="store_true", help="after the commands, keep serving until SIGINT/SIGTERM"
    )
    ap.add_argument("--verbose", "-v", action="store_true", help="log to the console too")
    return ap


def setup_logging(home: str, verbose: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
    file_handler = logging.FileHandler(os.path.join(home, "peer.log"))
    file_handler.setFormatter(fmt)
    root.addHandler(file_handler)
    if verbose:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(fmt)
        root.addHandler(console)


def _terminate(_signum: int, _frame: object) -> None:
    """SIGTERM ends the peer like Ctrl-C: log out and close cleanly."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if not MIN_PIECE_SIZE <= args.piece_size <= MAX_PIECE_SIZE:
        err.print(f"error: --piece-size must be from {MIN_PIECE_SIZE} to {MAX_PIECE_SIZE} bytes")
        return 2
    home = os.path.abspath(os.path.expanduser(args.home))
    os.makedirs(home, exist_ok=True)
    setup_logging(home, args.verbose)
    settings = Settings(
        workers=args.workers, max_per_holder=args.per_holder, piece_timeout=args.piece_timeout
    )
    try:
        peer = Peer(
            args.tracker,
            home=home,
            listen=args.listen,
            advertise=args.advertise,
            piece_size=args.piece_size,
            settings=settings,
            upload_limit=args.upload_limit,
            publish_to=args.publish,
        )
    except zmq.ZMQError as exc:
        err.print(f"error: cannot start peer: {exc}")
        return 1
    signal.signal(signal.SIGTERM, _terminate)
    interactive = args.commands is None and sys.stdin.isatty()
    out = Console(highlight=False, soft_wrap=True)
    shell = Shell(peer, out, err, interactive)
    peer.start()
    code = 130
    try:
        code = shell.run_interactive() if interactive else shell.run_script(args.commands)
        if args.stay:
            threading.Event().wait()  # serve until SIGINT/SIGTERM raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    finally:
        peer.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
