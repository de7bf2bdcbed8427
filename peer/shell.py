"""The peer's command shell: a thin layer of parsing and printing over the Peer API.

On a terminal it is interactive (readline line editing, history). Otherwise it reads one
command per line, prints results on stdout and each failure as one ``error: <reason>`` line on
stderr, waits at the end for running downloads, and its exit status says whether everything
(commands and downloads) succeeded.
"""

from __future__ import annotations

import shlex
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from messages.errors import Code, LocalError, ProtocolError, TorrentError
from messages.events import DownloadState, ProgressEvent

from .api import Peer
from .format import download_line, finished_line, human_size
from .view import LiveView


@dataclass(frozen=True)
class Command:
    args: tuple[str, ...]  # "[word]" marks an optional last argument
    help: str
    run: Callable[[Shell, list[str]], None]

    def takes(self, count: int) -> bool:
        optional = sum(1 for a in self.args if a.startswith("["))
        return len(self.args) - optional <= count <= len(self.args)


Passwords = Callable[[str], str]  # user -> password, when the command line has none


class Shell:
    def __init__(
        self, peer: Peer, out: Console, err: Console, interactive: bool, passwords: Passwords | None = None
    ) -> None:
        self.peer = peer
        self.passwords = passwords
        self.out = out
        self.err = err
        self.interactive = interactive
        self.failures = 0
        self.quit = False
        self._print_lock = threading.Lock()
        peer.on_download_end = self._download_ended
        peer.on_note = lambda note: self.say(f"note: {note}")

    # --- output -----------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self._emit(self.out, text)

    def fail(self, text: str) -> None:
        with self._print_lock:
            self.failures += 1
        self._emit(self.err, f"error: {text}")

    def _emit(self, console: Console, text: str) -> None:
        # In scripts, lines go out verbatim (tabs kept for cut/awk); on a terminal, via rich.
        with self._print_lock:
            if self.interactive:
                console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                console.file.write(text + "\n")
            console.file.flush()

    def _download_ended(self, s: ProgressEvent) -> None:
        if s.state is DownloadState.COMPLETE:
            self.say(finished_line(s))
        else:
            self.fail(finished_line(s))

    # --- input ------------------------------------------------------------------------------
    def execute(self, line: str) -> bool:
        """Run one command line; False when it failed."""
        before = self.failures
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            self.fail(f"cannot parse line: {exc}")
            return False
        if not words:
            return True
        name, args = words[0], words[1:]
        cmd = COMMANDS.get(name)
        if cmd is None:
            self.fail(f"unknown command {name!r}; type help")
            return False
        if name != "echo" and not cmd.takes(len(args)):
            self.fail(f"usage: {name} {' '.join(cmd.args)}".rstrip())
            return False
        try:
            cmd.run(self, args)
        except TorrentError as exc:
            self.fail(exc.message)
        return self.failures == before

    # --- commands ---------------------------------------------------------------------------
    def _password(self, a: list[str]) -> str:
        """The password on the command line, else from the configured source (a prompt without
        echo on a terminal, or TORRENT_PASSWORD / --password-file for scripts)."""
        if len(a) > 1:
            return a[1]
        if self.passwords is None:
            raise LocalError(Code.BAD_ARGS, "no password given")
        return self.passwords(a[0])

    def create_user(self, a: list[str]) -> None:
        self.peer.create_user(a[0], self._password(a))
        self.say(f"user {a[0]} created")

    def login(self, a: list[str]) -> None:
        notes = self.peer.login(a[0], self._password(a))
        self.say(f"logged in as {a[0]}")
        for note in notes:
            self.say(f"note: {note}")

    def logout(self, _a: list[str]) -> None:
        self.peer.logout()
        self.say("logged out")

    def create_group(self, a: list[str]) -> None:
        self.peer.create_group(a[0])
        self.say(f"group {a[0]} created; you are its admin")

    def join_group(self, a: list[str]) -> None:
        self.peer.join_group(a[0])
        self.say(f"asked to join {a[0]}; the admin must accept")

    def leave_group(self, a: list[str]) -> None:
        r = self.peer.leave_group(a[0])
        extra = ""
        if r.group_deleted:
            extra = f"; {a[0]} deleted (you were its last member)"
        elif r.new_admin:
            extra = f"; {r.new_admin} is now its admin"
        self.say(f"left {a[0]}{extra}")

    def list_groups(self, _a: list[str]) -> None:
        groups = self.peer.list_groups()
        if not groups:
            self.say("no groups")
        elif self.interactive:
            t = Table("group", "admin", "members", "you")
            for g in groups:
                t.add_row(g.name, g.admin, str(g.members), g.role or "-")
            self.out.print(t)
        else:
            for g in groups:
                self.say(f"{g.name}\tadmin={g.admin}\tmembers={g.members}\t{g.role or '-'}")

    def list_requests(self, a: list[str]) -> None:
        users = self.peer.list_requests(a[0])
        if not users:
            self.say(f"no pending requests for {a[0]}")
        for u in users:
            self.say(u)

    def accept_request(self, a: list[str]) -> None:
        self.peer.accept_request(a[0], a[1])
        self.say(f"{a[1]} is now a member of {a[0]}")

    def reject_request(self, a: list[str]) -> None:
        self.peer.reject_request(a[0], a[1])
        self.say(f"rejected {a[1]}'s request to join {a[0]}")

    def list_files(self, a: list[str]) -> None:
        files = self.peer.list_files(a[0])
        if not files:
            self.say(f"no files in {a[0]}")
        elif self.interactive:
            t = Table("file", "size", "online peers")
            for f in files:
                t.add_row(f.name, human_size(f.size), str(f.online))
            self.out.print(t)
        else:
            for f in files:
                self.say(f"{f.name}\t{f.size} bytes ({human_size(f.size)})\t{f.online} online")

    def upload_file(self, a: list[str]) -> None:
        if self.interactive:
            with Progress(
                TextColumn("hashing"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=self.out,
                transient=True,
            ) as bar:
                task = bar.add_task("hash", total=None)
                meta, new = self.peer.upload_file(
                    a[0], a[1], lambda done, total: bar.update(task, completed=done, total=total)
                )
        else:
            meta, new = self.peer.upload_file(a[0], a[1])
        how = "shared" if new else "shared (one more holder)"
        self.say(f"{how} [{meta.group}] {meta.name}: {human_size(meta.size)}, {meta.num_pieces} pieces")

    def remove_file(self, a: list[str]) -> None:
        self.peer.remove_file(a[0], a[1])
        self.say(f"removed {a[1]} from {a[0]} for everyone")

    def remove_member(self, a: list[str]) -> None:
        self.peer.remove_member(a[0], a[1])
        self.say(f"{a[1]} is no longer a member of {a[0]}")

    def stop_share(self, a: list[str]) -> None:
        removed = self.peer.stop_share(a[0], a[1])
        self.say(f"stopped sharing [{a[0]}] {a[1]}" + ("; no one shares it any more" if removed else ""))

    def download_file(self, a: list[str]) -> None:
        d = self.peer.download_file(a[0], a[1], a[2])
        self.say(f"downloading [{a[0]}] {a[1]} to {d.final} in the background")

    def show_downloads(self, _a: list[str]) -> None:
        statuses = self.peer.download_statuses()
        if not statuses:
            self.say("no downloads")
        for s in statuses:
            self.say(download_line(s))

    def watch(self, _a: list[str]) -> None:
        """Live view of running downloads until they end; Ctrl-C leaves the view, not the downloads."""
        if not self.peer.running():
            self.say("no downloads running")
            return
        sub = self.peer.subscribe_progress()
        view = LiveView()
        try:
            if self.interactive:
                with Live(view.render(), console=self.out, refresh_per_second=8, transient=False) as live:
                    while self._watch_step(sub, view):
                        live.update(view.render())
                    live.update(view.render())
            else:
                next_print = time.monotonic() + 1.0
                while self._watch_step(sub, view):
                    if time.monotonic() >= next_print:
                        for line in view.plain_lines():
                            self.say(line)
                        next_print += 1.0
        except KeyboardInterrupt:
            self.say("left the view; downloads go on (show_downloads, watch)")
        finally:
            sub.close()

    def _watch_step(self, sub: zmq.Socket, view: LiveView) -> bool:
        """Take the events that arrived in the last moment; False once no download runs."""
        if sub.poll(125):
            while sub.poll(0):
                try:
                    view.apply(ProgressEvent.decode(sub.recv_multipart()))
                except ProtocolError:
                    continue
        return bool(self.peer.running())

    def wait(self, _a: list[str]) -> None:
        ended = self.peer.wait()
        self.say("no downloads running" if not ended else f"{len(ended)} download(s) ended")

    def status(self, _a: list[str]) -> None:
        who = self.peer.user if self.peer.logged_in else "nobody (not logged in)"
        shares = sum(1 for share in self.peer.shares() if share.complete)
        pieces = "unencrypted" if self.peer.plain_pieces else "encrypted"
        where = self.peer.seeder.endpoint
        if self.peer.advertised != where:
            where += f" (others reach it at {self.peer.advertised})"
        self.say(
            f"user {who}; serving on {where} ({pieces}); tracker {self.peer.tracker}; "
            f"{shares} shares; our key {self.peer.keys.public}"
        )

    def help(self, _a: list[str]) -> None:
        width = max(len(n) for n in COMMANDS)
        for name, cmd in COMMANDS.items():
            self.say(f"{name:<{width}}  {' '.join(cmd.args):<28} {cmd.help}")

    def do_quit(self, _a: list[str]) -> None:
        self.quit = True

    def echo(self, a: list[str]) -> None:
        self.say(" ".join(a))

    # --- loops ------------------------------------------------------------------------------
    def run_script(self, lines: list[str] | None = None) -> int:
        """Non-interactive: commands from ``lines`` (or stdin); exit status 0 only if all succeeded."""
        source = lines if lines is not None else sys.stdin
        for line in source:
            self.execute(line)
            if self.quit:
                break
        self.peer.wait()
        return 0 if self.failures == 0 else 1

    def run_interactive(self) -> int:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        self.say("torrent peer: type help for commands, quit to leave")
        while not self.quit:
            who = self.peer.user if self.peer.logged_in else ""
            try:
                line = input(f"{who}> ")
            except EOFError:
                break
            except KeyboardInterrupt:
                print()
                continue
            self.execute(line)
        running = self.peer.download_statuses()
        if any(s.state is DownloadState.RUNNING for s in running):
            self.say("waiting for running downloads (Ctrl-C to leave them for later)")
            try:
                self.peer.wait()
            except KeyboardInterrupt:
                pass
        return 0


COMMANDS: dict[str, Command] = {
    "create_user": Command(
        ("<user>", "[password]"), "create an account (no password: asked for)", Shell.create_user
    ),
    "login": Command(
        ("<user>", "[password]"), "log in, bringing your shares back (no password: asked)", Shell.login
    ),
    "logout": Command((), "log out (takes your shares offline)", Shell.logout),
    "create_group": Command(("<group>",), "create a group; you become its admin", Shell.create_group),
    "join_group": Command(("<group>",), "ask to join a group", Shell.join_group),
    "leave_group": Command(("<group>",), "leave a group (stops sharing there)", Shell.leave_group),
    "list_groups": Command((), "all groups and your role in each", Shell.list_groups),
    "list_requests": Command(("<group>",), "pending join requests (admin)", Shell.list_requests),
    "accept_request": Command(("<group>", "<user>"), "admit a user (admin)", Shell.accept_request),
    "reject_request": Command(("<group>", "<user>"), "refuse a user (admin)", Shell.reject_request),
    "list_files": Command(("<group>",), "files shared in a group (members)", Shell.list_files),
    "upload_file": Command(("<path>", "<group>"), "share a file into a group", Shell.upload_file),
    "download_file": Command(
        ("<group>", "<file>", "<dest_dir>"), "download in the background", Shell.download_file
    ),
    "show_downloads": Command((), "[D] running, [C] complete, [F] failed", Shell.show_downloads),
    "stop_share": Command(("<group>", "<file>"), "stop sharing a file", Shell.stop_share),
    "remove_file": Command(
        ("<group>", "<file>"), "remove a file from the group for everyone (admin)", Shell.remove_file
    ),
    "remove_member": Command(
        ("<group>", "<user>"), "remove a member from the group (admin)", Shell.remove_member
    ),
    "watch": Command((), "live view of running downloads (Ctrl-C leaves it)", Shell.watch),
    "wait": Command((), "block until running downloads end", Shell.wait),
    "status": Command((), "who you are, where you serve, what you share", Shell.status),
    "echo": Command(("[text]",), "print text (handy in scripts)", Shell.echo),
    "help": Command((), "this list", Shell.help),
    "quit": Command((), "leave (logs out)", Shell.do_quit),
}
