"""``torrent-tracker``: run the tracker in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

import zmq

from messages.errors import ProtocolError
from messages.schema import check_endpoint

from .server import Tracker
from .store import StoreError

DEFAULT_BIND = "tcp://127.0.0.1:6000"
DEFAULT_DB = "data/tracker.db"


def bind_endpoint(text: str) -> str:
    try:
        return check_endpoint(text, any_port=True)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="torrent-tracker", description="Torrent tracker")
    ap.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        type=bind_endpoint,
        help=f"endpoint to listen on (default {DEFAULT_BIND})",
    )
    ap.add_argument("--db", default=DEFAULT_DB, help=f"SQLite state file (default {DEFAULT_DB})")
    ap.add_argument("--verbose", "-v", action="store_true", help="log to stderr")
    args = ap.parse_args(argv)
    log_path = os.path.join(os.path.dirname(os.path.abspath(args.db)), "tracker.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    handlers: list[logging.Handler] = [logging.FileHandler(log_path)]
    if args.verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers
    )
    try:
        tracker = Tracker(args.bind, args.db)
    except (zmq.ZMQError, StoreError, OSError) as exc:  # bad endpoint, port in use, bad db
        print(f"error: cannot start tracker: {exc}", file=sys.stderr)
        return 1

    def on_signal(signum: int, _frame: object) -> None:
        tracker.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"tracker listening on {tracker.endpoint} (state: {args.db})", flush=True)
    tracker.run()
    print("tracker stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
