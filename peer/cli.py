"""``torrent-peer``: a peer process with its command shell."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

import zmq
from rich.console import Console

from messages.errors import Code, LocalError
from messages.protocol import DEFAULT_PIECE_SIZE

from .api import Peer, PeerOptions
from .argtypes import (
    at_least_one,
    endpoint,
    listen_endpoint,
    piece_size,
    rate,
    seconds,
    tracker_key,
    tracker_list,
)
from .download import Settings
from .heap import keep_piece_buffers
from .shell import Shell

DEFAULT_HOME = os.path.join("~", ".torrent", "peer")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="torrent-peer", description="Torrent peer: shell and seeder")
    _network_options(ap)
    _transfer_options(ap)
    ap.add_argument(
        "-c", "--command", action="append", dest="commands", help="run this command (repeatable), then exit"
    )
    ap.add_argument("--publish", help="also send progress events to this endpoint (a SUB bound there)")
    ap.add_argument(
        "--stay", action="store_true", help="after the commands, keep serving until SIGINT/SIGTERM"
    )
    ap.add_argument(
        "--password-file",
        help="read the password for login/create_user without one from this file (first line); "
        f"or set {PASSWORD_ENV}; on a terminal you are asked",
    )
    ap.add_argument("--verbose", "-v", action="store_true", help="log to the console too")
    return ap


def _network_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--tracker",
        required=True,
        type=tracker_list,
        help="tracker endpoint, e.g. tcp://127.0.0.1:6000; several, comma-separated, for a cluster",
    )
    ap.add_argument(
        "--tracker-key",
        type=tracker_key,
        help="the trackers' public key (scripts/tracker --show-key); without it the key is learned on "
        "first use and pinned in the home",
    )
    ap.add_argument(
        "--plain-pieces",
        action="store_true",
        help="serve pieces without encryption (a trusted LAN; control traffic stays encrypted)",
    )
    ap.add_argument(
        "--listen",
        default="tcp://127.0.0.1:0",
        type=listen_endpoint,
        help="where the seeder listens (port 0: any free)",
    )
    ap.add_argument(
        "--advertise", type=endpoint, help="endpoint to tell the tracker, when --listen is a wildcard address"
    )
    ap.add_argument("--home", default=DEFAULT_HOME, help=f"this peer's state folder (default {DEFAULT_HOME})")


def _transfer_options(ap: argparse.ArgumentParser) -> None:
    d = Settings()
    ap.add_argument(
        "--piece-size",
        type=piece_size,
        default=DEFAULT_PIECE_SIZE,
        help="piece size for uploads (power of two)",
    )
    ap.add_argument(
        "--workers", type=at_least_one, default=d.workers, help="download worker threads per download"
    )
    ap.add_argument(
        "--per-holder", type=at_least_one, default=d.max_per_holder, help="pieces in flight per holder"
    )
    ap.add_argument("--in-flight", type=at_least_one, default=d.max_in_flight, help="pieces in flight in all")
    ap.add_argument(
        "--page-cache-writes",
        action="store_true",
        help="write downloads through the page cache (default: past it, where the file system allows)",
    )
    ap.add_argument(
        "--piece-timeout",
        type=seconds,
        default=d.piece_timeout,
        help="seconds before a piece request is given up",
    )
    ap.add_argument("--upload-limit", type=rate, help="cap on bytes/s served to others")


PASSWORD_ENV = "TORRENT_PASSWORD"


def password_source(path: str | None) -> Callable[[str], str]:
    """Where a password comes from when a command does not carry it: never the command line
    of the process, which every local user can read in the process list."""

    def ask(user: str) -> str:
        if path is not None:
            try:
                with open(path, encoding="utf-8") as f:
                    return f.readline().rstrip("\n")
            except OSError as exc:
                raise LocalError(
                    Code.BAD_PATH, f"cannot read --password-file {path}: {exc.strerror}"
                ) from None
        if os.environ.get(PASSWORD_ENV):
            return os.environ[PASSWORD_ENV]
        if sys.stdin.isatty():
            return getpass.getpass(f"password for {user}: ")
        raise LocalError(
            Code.BAD_ARGS,
            f"no password: give it after the user name, set {PASSWORD_ENV} or use --password-file",
        )

    return ask


def setup_logging(home: str, verbose: bool) -> None:
    logging.raiseExceptions = False  # a full disk under the log must not print tracebacks at users
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
    keep_piece_buffers()
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    home = os.path.abspath(os.path.expanduser(args.home))
    os.makedirs(home, exist_ok=True)
    setup_logging(home, args.verbose)
    settings = Settings(
        workers=args.workers,
        max_per_holder=args.per_holder,
        max_in_flight=args.in_flight,
        piece_timeout=args.piece_timeout,
        direct_writes=not args.page_cache_writes,
    )
    try:
        options = PeerOptions(
            tracker_key=args.tracker_key,
            listen=args.listen,
            advertise=args.advertise,
            piece_size=args.piece_size,
            settings=settings,
            upload_limit=args.upload_limit,
            plain_pieces=args.plain_pieces,
            publish_to=args.publish,
        )
        peer = Peer(args.tracker, home, options)
    except (zmq.ZMQError, LocalError) as exc:
        err.print(f"error: cannot start peer: {exc}")
        return 1
    if peer.trust_note:
        err.print(f"note: {peer.trust_note}")
    signal.signal(signal.SIGTERM, _terminate)
    interactive = args.commands is None and sys.stdin.isatty()
    out = Console(highlight=False, soft_wrap=True)
    shell = Shell(peer, out, err, interactive, password_source(args.password_file))
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
