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

from messages.errors import Code, LocalError, ProtocolError
from messages.protocol import DEFAULT_PIECE_SIZE, MAX_PIECE_SIZE, MIN_PIECE_SIZE
from messages.schema import check_endpoint

from .api import Peer
from .download import Settings
from .shell import Shell

DEFAULT_HOME = os.path.join("~", ".torrent", "peer")


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


def listen_endpoint(text: str) -> str:
    try:
        return check_endpoint(text, any_port=True)
    except ProtocolError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    ap = argparse.ArgumentParser(prog="torrent-peer", description="Torrent peer: shell and seeder")
    ap.add_argument(
        "--tracker", required=True, type=endpoint, help="tracker endpoint, e.g. tcp://127.0.0.1:6000"
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
    ap.add_argument(
        "--piece-timeout",
        type=seconds,
        default=d.piece_timeout,
        help="seconds before a piece request is given up",
    )
    ap.add_argument("--upload-limit", type=rate, help="cap on bytes/s served to others")
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
    err = Console(stderr=True, highlight=False, soft_wrap=True)
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
