"""A throwaway PostgreSQL cluster in a temporary directory, for tests and demos.

Trackers that share their state keep it in PostgreSQL; tests and demos need a server nobody
has to install and configure by hand. ``PgCluster`` runs ``initdb`` and ``pg_ctl`` from the
installed server binaries (Debian keeps them off PATH, so they are found through
``pg_config --bindir``) on a free port of 127.0.0.1 plus a unix socket inside its own directory,
with trust authentication: anyone on this host may connect, which is fine for a cluster that
lives as long as a test run or a demo and never for real data.

``fast=True`` turns off fsync, synchronous_commit and full_page_writes: a crash of the server
then loses the commits of its last ~0.6 s and a crash of the host may corrupt the cluster, so it
is for tests only; demos keep PostgreSQL's durable defaults.
initdb and the server refuse to run as root, so as root they run as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

FAST_SETTINGS = ("fsync = off", "synchronous_commit = off", "full_page_writes = off")
INSTALL_HINT = "install it with: scripts/setup --postgres"


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl) on this machine."""


class ClusterError(RuntimeError):
    """initdb or pg_ctl failed; the message carries their output or the server log's tail."""


def find_bindir() -> str:
    """The directory of initdb and pg_ctl: ``pg_config --bindir``, else the newest Debian one."""
    candidates = []
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        candidates.append(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    # libpq-dev's pg_config may name another major version than the installed server.
    by_version = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    candidates += by_version
    for folder in candidates:
        if all(os.access(os.path.join(folder, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise PostgresMissing(f"PostgreSQL server binaries (initdb, pg_ctl) not found; {INSTALL_HINT}")


def _version(bindir: str) -> int:
    name = os.path.basename(os.path.dirname(bindir))
    return int(name) if name.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """initdb + pg_ctl start on construction; ``stop()`` (or leaving ``with``) removes it all."""

    def __init__(self, *, fast: bool = False, user: str = "postgres", parent: str | None = None) -> None:
        """``parent``: where its directory goes (default: the system's temporary folder); a
        cluster made for background use (scripts/swarm) outlives this object: stop it later
        with ``stop_cluster(dir)``."""
        self.bindir = find_bindir()
        self.fast = fast
        self.user = user
        if parent is not None:
            os.makedirs(parent, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="pgcluster-", dir=parent)
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "server.log")
        self.port = 0
        self._running = False
        try:
            if os.geteuid() == 0:
                shutil.chown(self.dir, "postgres", "postgres")
            self._initdb()
            self._start_on_a_free_port()
        except BaseException:
            self.stop()
            raise

    # --- life cycle -----------------------------------------------------------------------
    def _initdb(self) -> None:
        argv = [f"{self.bindir}/initdb", "-D", self.data, "-A", "trust", "-U", self.user]
        argv += ["-E", "UTF8", "--no-locale", "--no-instructions"]
        if self.fast:
            argv.append("--no-sync")
        self._as_postgres(argv)

    def _start_on_a_free_port(self, attempts: int = 3) -> None:
        """Start on a port that was free a moment ago; another process may take it first."""
        for attempt in range(1, attempts + 1):
            self.port = _free_port()
            self._write_settings()
            try:
                self._pg_ctl("start")
                self._running = True
                return
            except ClusterError:
                if attempt == attempts:
                    raise
                log.warning("postgres did not start on port %d; trying another", self.port)

    def _write_settings(self) -> None:
        settings = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.dir}'",
            *(FAST_SETTINGS if self.fast else ()),
        ]
        # An include file, rewritten per attempt, so restarts and manual starts use it too.
        conf = os.path.join(self.data, "postgresql.conf")
        with open(conf) as f:
            if "include_if_exists = 'cluster.conf'" not in f.read():
                with open(conf, "a") as out:
                    out.write("\ninclude_if_exists = 'cluster.conf'\n")
        with open(os.path.join(self.data, "cluster.conf"), "w") as f:
            f.write("\n".join(settings) + "\n")

    def restart(self, mode: str = "fast") -> None:
        """Restart the server: every open connection breaks.

        ``mode="immediate"`` is a crash: the server recovers from its WAL, and UNLOGGED tables
        come back empty.
        """
        self._pg_ctl("restart", "-m", mode)

    def stop(self) -> None:
        """Stop the server and remove its directory; safe to call twice."""
        if self._running:
            try:
                self._pg_ctl("stop", "-m", "fast")
            except ClusterError:
                log.exception("pg_ctl stop -m fast failed; stopping immediately")
                self._pg_ctl("stop", "-m", "immediate")
            self._running = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @classmethod
    def stop_cluster(cls, folder: str) -> None:
        """Stop a cluster another process started in ``folder`` and remove it."""
        data = os.path.join(folder, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            argv = [f"{find_bindir()}/pg_ctl", "stop", "-D", data, "-m", "fast", "-w"]
            if os.geteuid() == 0:
                argv = ["runuser", "-u", "postgres", "--", *argv]
            subprocess.run(argv, check=False, capture_output=True, stdin=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)

    # --- databases ------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str, *, icu_locale: str | None = None) -> str:
        """Create an empty database; its libpq URL.

        ``icu_locale`` (e.g. ``"en-US"``) sorts its text the way people expect instead of in
        byte order (the cluster's locale is C): tests use it to show a schema does not depend
        on the database's locale.
        """
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if icu_locale is not None:
            query += sql.SQL(" TEMPLATE template0 LOCALE 'C' LOCALE_PROVIDER icu ICU_LOCALE {}").format(
                sql.Literal(icu_locale)
            )
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(query)
        return self.dsn(name)

    # --- running the binaries -------------------------------------------------------------
    def _pg_ctl(self, action: str, *extra: str) -> None:
        # Always -l: without it the server inherits our stdout pipe and run() never returns.
        argv = [f"{self.bindir}/pg_ctl", action, "-D", self.data, "-l", self.logfile, "-w", *extra]
        started = time.monotonic()
        self._as_postgres(argv)
        log.info("pg_ctl %s took %.2f s (port %d)", action, time.monotonic() - started, self.port)

    def _as_postgres(self, argv: list[str]) -> None:
        name = " ".join([os.path.basename(argv[0]), *argv[1:2]])
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise ClusterError(f"{name} failed: {self._why(done)}")

    def _why(self, done: subprocess.CompletedProcess[str]) -> str:
        text = (done.stderr or done.stdout).strip()
        try:
            with open(self.logfile) as f:
                text += "\nserver log: " + "".join(f.readlines()[-10:])
        except OSError:
            pass
        return text
