"""``torrent-tracker``: run the tracker in the foreground until SIGINT or SIGTERM.

Also the operator's tools: ``--show-key`` (the tracker's public key alone, for peers'
``--tracker-key``), ``--check`` (a full integrity check of its database) and ``--backup FILE``
(SQLite's online backup of a running tracker's database).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

import zmq

from broker.addresses import usable_endpoints
from broker.keys import KeyPair, load_or_create
from messages.endpoints import check_endpoint, key_endpoint
from messages.errors import LocalError, ProtocolError

from .server import Tracker, is_postgres
from .sqlite_store import backup, check
from .store import StoreError

DEFAULT_BIND = "tcp://127.0.0.1:6000"
DEFAULT_DB = "data/tracker.db"


def bind_endpoint(text: str) -> str:
    try:
        return check_endpoint(text, any_port=True)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def key_bind_endpoint(text: str) -> str:
    return text if text == "none" else bind_endpoint(text)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="torrent-tracker", description="Torrent tracker")
    ap.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        type=bind_endpoint,
        help=f"endpoint to listen on (default {DEFAULT_BIND})",
    )
    ap.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"state: a SQLite file (default {DEFAULT_DB}) or a PostgreSQL URL "
        "(postgresql://user@host:port/db), which several trackers may share",
    )
    ap.add_argument(
        "--keys",
        help="folder of the tracker's key pair (default: beside the database); trackers of one "
        "cluster use the same pair",
    )
    ap.add_argument("--show-key", action="store_true", help="print the tracker's public key, then exit")
    ap.add_argument(
        "--key-bind",
        type=key_bind_endpoint,
        help="where peers fetch the public key on first use (default: the "
        "--bind port plus one; 'none' to turn it off)",
    )
    ap.add_argument("--check", action="store_true", help="check the database's integrity, then exit")
    ap.add_argument(
        "--backup", metavar="FILE", help="write a consistent copy of the database to FILE, then exit"
    )
    ap.add_argument("--verbose", "-v", action="store_true", help="log to stderr")
    return ap


def setup_logging(args: argparse.Namespace) -> None:
    log_path = os.path.join(key_folder(args), "tracker.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    handlers: list[logging.Handler] = [logging.FileHandler(log_path)]
    if args.verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", handlers=handlers
    )


def run_check(db: str) -> int:
    problems = check(db)
    if problems:
        print(f"error: {db} is damaged:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print(f"{db}: ok")
    return 0


def run_backup(db: str, dest: str) -> int:
    try:
        backup(db, dest)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {db} to {dest}")
    return 0


def key_folder(args: argparse.Namespace) -> str:
    """Where the key pair (and the log) live: --keys, else beside a SQLite file, else data/."""
    if args.keys:
        return str(args.keys)
    return os.path.dirname(DEFAULT_DB) if is_postgres(args.db) else os.path.dirname(os.path.abspath(args.db))


def key_service_bind(args: argparse.Namespace) -> str | None:
    if args.key_bind == "none":
        return None
    if args.key_bind:
        return str(args.key_bind)
    try:
        return key_endpoint(args.bind)
    except ValueError:  # port 0: any free port for the key service too
        return args.bind.rsplit(":", 1)[0] + ":0"


def serve(args: argparse.Namespace, keys: KeyPair) -> int:
    setup_logging(args)
    try:
        tracker = Tracker(args.bind, args.db, keys, key_bind=key_service_bind(args))
    except (zmq.ZMQError, StoreError, OSError) as exc:  # bad endpoint, port in use, bad db
        print(f"error: cannot start tracker: {exc}", file=sys.stderr)
        return 1

    def on_signal(signum: int, _frame: object) -> None:
        tracker.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    state = "PostgreSQL" if is_postgres(args.db) else args.db  # a URL may carry a password
    print(f"tracker listening on {tracker.endpoint} key {keys.public} (state: {state})", flush=True)
    reach = usable_endpoints(tracker.endpoint)
    if reach != [tracker.endpoint]:
        print(f"peers elsewhere reach it at: {', '.join(reach) or 'no address found'}", flush=True)
    if tracker.key_endpoint:
        print(f"tracker key on first use from {tracker.key_endpoint}", flush=True)
    try:
        tracker.run()
    except StoreError as exc:
        print(f"error: tracker stopped: {exc}", file=sys.stderr, flush=True)
        return 1
    print("tracker stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.check or args.backup) and is_postgres(args.db):
        print(
            "error: --check and --backup are for a SQLite file; use pg_dump or a standby for PostgreSQL",
            file=sys.stderr,
        )
        return 2
    if args.check:
        return run_check(args.db)
    if args.backup:
        return run_backup(args.db, args.backup)
    try:
        keys = load_or_create(key_folder(args), "tracker")
    except (LocalError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.show_key:
        print(keys.public)
        return 0
    return serve(args, keys)


if __name__ == "__main__":
    sys.exit(main())
