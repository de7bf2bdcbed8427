"""The peer's Python API: what the shell, the tests and the demos all drive.

A ``Peer`` owns a seeder thread, a presence thread and the running downloads; each method here
is one user action, raising a TorrentError (code + message) when it cannot be done. The API is
meant for one thread (the shell's): its DEALER to the tracker belongs to that thread, and the
other threads (presence, downloads) make and close their own (one socket, one thread).
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import zmq

from broker.client import ControlClient
from broker.eventbus import EventBus
from broker.keys import load_or_create, start_authenticator
from broker.sockets import new_context, term_context
from broker.trackers import TrackerSet
from messages import protocol as P
from messages.control import Push, Reply
from messages.errors import Code, LocalError, ProtocolError, RemoteError, TorrentError
from messages.events import ProgressEvent
from messages.grants import GrantChecker
from messages.names import check_file_name, check_name
from messages.records import FileEntry, FileMeta, GroupEntry, JoinRequest, LeaveResult, Refusal, Revocation
from messages.sizes import chunks

from .download import Download, Settings
from .format import human_size
from .hashing import Progress, hash_file
from .library import Library, Share
from .pinning import explain_refusal, trusted_key
from .presence import PresenceKeeper
from .pushes import PushHandler
from .revocations import Revocations
from .seeder import Seeder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeerOptions:
    tracker_key: str | None = None  # None: pinned in the home, or learned on first use
    listen: str = "tcp://127.0.0.1:0"  # where the seeder listens (port 0: any free port)
    advertise: str | None = None  # the endpoint to tell the tracker, if not the one we listen on
    piece_size: int = P.DEFAULT_PIECE_SIZE  # for uploads
    settings: Settings = field(default_factory=Settings)  # for downloads
    upload_limit: float | None = None  # bytes/s served to others
    plain_pieces: bool = False  # serve pieces without encryption
    heartbeat: float = P.HEARTBEAT_INTERVAL
    publish_to: str | None = None  # also send progress events there


class Peer:
    def __init__(self, trackers: list[str], home: str, options: PeerOptions | None = None) -> None:
        """Raises LocalError(BAD_KEY) when the trackers' key is neither given, pinned nor
        learnable, and zmq.ZMQError when the seeder cannot listen where asked."""
        o = self.options = options or PeerOptions()
        self.home = os.path.abspath(home)
        os.makedirs(self.home, exist_ok=True)
        self.piece_size, self.settings, self.plain_pieces = o.piece_size, o.settings, o.plain_pieces
        self.ctx = new_context()
        self.keys = load_or_create(self.home, "peer")
        try:
            key, self.trust_note = trusted_key(self.ctx, self.home, trackers, o.tracker_key)
            self.trackers = TrackerSet(trackers, key, self.keys)
            self.auth = start_authenticator(self.ctx)
        except BaseException:
            term_context(self.ctx)
            raise
        self.library = Library()
        self.revoked = Revocations()
        self.distrusted: set[tuple[str, str, str]] = set()  # (holder key, group, file) that sent bad data
        self.events = EventBus(self.ctx, o.publish_to)
        keys = None if o.plain_pieces else self.keys
        self.seeder = Seeder(self.ctx, o.listen, self.library, keys, self.revoked, o.upload_limit)
        # A wildcard listener is announced as such: the tracker fills in the address our
        # requests come from (``advertised`` once it did).
        self.endpoint = o.advertise or self.seeder.endpoint
        self.advertised = self.endpoint
        self.on_note: Callable[[str], None] = lambda note: log.warning("%s", note)
        self.on_download_end: Callable[[ProgressEvent], None] | None = None
        self.user: str | None = None
        self._token: str | None = None
        self._state_lock = threading.Lock()  # guards _downloads and _finished
        self._sync = threading.Lock()  # one change of our share list at a time, announces included
        self._control: ControlClient | None = None  # the API thread's own
        self._downloads: dict[tuple[str, str], Download] = {}
        self._finished: list[Download] = []
        self.pushes = PushHandler(self)
        self.presence = PresenceKeeper(
            self.ctx,
            self.trackers,
            self._current_token,
            self._announce,
            self._session_lost,
            self.pushes.handle,
            o.heartbeat,
        )
        self.presence.pending = self.pushes.run_pending

    # --- life cycle -------------------------------------------------------------------------
    def start(self) -> Peer:
        self.events.start()
        self.seeder.start()
        self.presence.start()
        return self

    def close(self) -> None:
        """Log out (taking shares offline), stop every thread, close every socket."""
        if self._token:
            try:
                self.logout(quick=True)
            except (RemoteError, LocalError) as exc:
                log.info("logout on close failed: %s", exc)
        for d in self.running():
            d.cancel()
            d.join(timeout=5)
        self.presence.stop()
        self.seeder.stop()
        self.events.stop()
        if self._control is not None:
            self._control.close()
        self.auth.stop()
        if not term_context(self.ctx):
            log.warning("some sockets were still open at exit")

    def __enter__(self) -> Peer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ---------------------------------------------------------------------------
    def _call(
        self,
        op: str,
        args: dict[str, Any] | None = None,
        *,
        auth: bool = True,
        retries: int | None = None,
    ) -> Reply:
        token = None
        if auth:
            token = self._token
            if not token:
                raise LocalError(Code.NOT_LOGGED_IN, "log in first")
        client = self._client()
        try:
            return client.call(op, args or {}, token=token, retries=retries)
        except LocalError as exc:
            if exc.code != Code.BAD_KEY:
                raise
            raise explain_refusal(
                self.ctx, self.home, client.endpoint or self.trackers.current(), self.trackers.server_key
            ) from None

    def _client(self) -> ControlClient:
        """The API thread's own DEALER to the tracker (made on first use)."""
        if self._control is None:
            control: ControlClient | None = None

            def on_push(push: Push) -> None:
                if control is not None:
                    self.pushes.handle(push, control)

            control = self._control = ControlClient(self.ctx, self.trackers, on_push=on_push)
        return self._control

    @property
    def tracker(self) -> str:
        """The tracker in use now."""
        return self.trackers.current()

    def _current_token(self) -> str | None:
        return self._token

    def _announce(self, client: ControlClient, token: str) -> list[str]:
        """Tell the tracker where we listen and everything we serve, in batches that each fit
        a message; notes on what it refused.

        Runs under the sync lock (see ``_share``): the list sent is the list as it is.
        """
        with self._sync:
            refs = self.library.announce_refs()
            batches = list(chunks(refs, P.PAGE_BYTES, P.MAX_SHARES)) or [[]]
            notes = []
            for i, batch in enumerate(batches):
                args: dict[str, Any] = {
                    "endpoint": self.endpoint,
                    "plain": self.plain_pieces,
                    "shares": batch,
                }
                if i:
                    args["more"] = True
                reply = client.call(P.OP_ANNOUNCE, args, token=token).unwrap()
                self._trust_grants(reply.get("grant_key"))
                if isinstance(reply.get("endpoint"), str):
                    self.advertised = reply["endpoint"]
                for item in reply.get("refused", []):
                    r = Refusal.from_wire(item)
                    self.library.remove((r.group, r.file))
                    notes.append(f"not serving [{r.group}] {r.file}: {r.message}")
            return notes

    def _trust_grants(self, public: object) -> None:
        """The tracker's grant key, learned over the pinned CURVE channel: seeders need it."""
        if not isinstance(public, str):
            raise ProtocolError(Code.BAD_KEY, "the tracker sent no grant key")
        if self.seeder.server.grants is None or self.seeder.server.grants.public != public:
            self.seeder.server.grants = GrantChecker(public)

    def _session_lost(self) -> None:
        self._token = None

    @property
    def logged_in(self) -> bool:
        return self._token is not None

    # --- accounts ---------------------------------------------------------------------------
    def create_user(self, user: str, password: str) -> None:
        self._call(P.OP_CREATE_USER, {"user": user, "password": password}, auth=False).unwrap()

    def login(self, user: str, password: str) -> list[str]:
        """Log in and bring back this user's shares; returns notes on shares not served."""
        if self._token:
            raise LocalError(Code.ALREADY_LOGGED_IN, f"already logged in as {self.user}; log out first")
        result = self._call(P.OP_LOGIN, {"user": user, "password": password}, auth=False).unwrap()
        if isinstance(result.get("at"), (int, float)):
            # Revocations pushed while we were offline never reached us: refuse every grant
            # issued before this session (downloaders get fresh ones with every holder list).
            self.revoked.add(Revocation(at=float(result["at"])))
        notes = self.library.load(os.path.join(self.home, "users", user))
        self.user, self._token = user, result["token"]
        try:
            notes += self._announce(self._client(), result["token"])
        except TorrentError as exc:  # not online: not logged in either, and the shell says so
            self._abandon_session()
            raise LocalError(exc.code, f"could not go online ({exc.message}); not logged in") from None
        self.presence.nudge()
        return notes

    def _abandon_session(self) -> None:
        try:
            self._call(P.OP_LOGOUT, retries=0).unwrap()
        except TorrentError:
            pass  # the session ends with its lease anyway
        finally:
            self._token = None
            self.library.unload()

    def logout(self, *, quick: bool = False) -> None:
        """End the session; ``quick`` (on shutdown) tries the tracker once instead of retrying."""
        if not self._token:
            raise LocalError(Code.NOT_LOGGED_IN, "not logged in")
        running = self.running()
        for d in running:
            d.cancel()
        for d in running:
            d.join(timeout=10)
        try:
            self._call(P.OP_LOGOUT, retries=0 if quick else None).unwrap()
        finally:
            self._token = None
            self.library.unload()

    # --- groups -----------------------------------------------------------------------------
    def create_group(self, group: str) -> None:
        self._call(P.OP_CREATE_GROUP, {"group": group}).unwrap()

    def join_group(self, group: str) -> None:
        self._call(P.OP_JOIN_GROUP, {"group": group}).unwrap()

    def leave_group(self, group: str) -> LeaveResult:
        result = LeaveResult.from_wire(self._call(P.OP_LEAVE_GROUP, {"group": group}).unwrap())
        for d in self.running():
            if d.key[0] == group:
                d.cancel(f"you left {group}")
        self.library.remove_group(group)
        return result

    def remove_member(self, group: str, user: str) -> LeaveResult:
        return LeaveResult.from_wire(self._call(P.OP_REMOVE_MEMBER, {"group": group, "user": user}).unwrap())

    def _pages(self, op: str, args: dict[str, Any]) -> Iterator[Any]:
        """Every entry of a paged listing, page after page (cursor: the last name seen)."""
        after = ""
        while True:
            result = self._call(op, {**args, "after": after}).unwrap()
            items, nxt = result.get("items"), result.get("next")
            if not isinstance(items, list) or not (nxt is None or (isinstance(nxt, str) and nxt > after)):
                raise ProtocolError(Code.BAD_JSON, f"tracker sent a malformed page of {op}")
            yield from items
            if nxt is None:
                return
            after = nxt

    def list_groups(self) -> list[GroupEntry]:
        return [GroupEntry.from_wire(g) for g in self._pages(P.OP_LIST_GROUPS, {})]

    def list_requests(self, group: str) -> list[str]:
        return [JoinRequest.from_wire(r).user for r in self._pages(P.OP_LIST_REQUESTS, {"group": group})]

    def accept_request(self, group: str, user: str) -> None:
        self._call(P.OP_ACCEPT_REQUEST, {"group": group, "user": user}).unwrap()

    def reject_request(self, group: str, user: str) -> None:
        self._call(P.OP_REJECT_REQUEST, {"group": group, "user": user}).unwrap()

    # --- files ------------------------------------------------------------------------------
    def list_files(self, group: str) -> list[FileEntry]:
        return [FileEntry.from_wire(f) for f in self._pages(P.OP_LIST_FILES, {"group": group})]

    def file_info(self, group: str, name: str) -> FileMeta:
        meta = FileMeta.from_wire(self._call(P.OP_FILE_INFO, {"group": group, "file": name}).unwrap())
        if meta.group != group or meta.name != name:
            raise ProtocolError(Code.BAD_FRAME, "tracker sent information about another file")
        return meta

    def upload_file(self, path: str, group: str, progress: Progress | None = None) -> tuple[FileMeta, bool]:
        """Hash a file into pieces and share it from where it is; True when new to the group."""
        if not self._token:
            raise LocalError(Code.NOT_LOGGED_IN, "log in first")
        check_name(group, "group name")
        path = os.path.abspath(os.path.expanduser(path))
        try:
            st = os.stat(path)
        except OSError as exc:
            raise LocalError(Code.BAD_PATH, f"{path}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise LocalError(Code.BAD_PATH, f"{path} is not a regular file")
        name = _local_name(os.path.basename(path))
        piece_size = piece_size_for(st.st_size, self.piece_size)
        if st.st_size > MAX_SHARED_SIZE:
            raise LocalError(Code.BAD_PATH, f"{path} is larger than {human_size(MAX_SHARED_SIZE)}")
        try:  # Same name already shared: hash with its piece size so equal content matches.
            piece_size = self.file_info(group, name).piece_size
        except RemoteError as exc:
            if exc.code != Code.NO_SUCH_FILE:
                raise
        try:
            size, root, digests = hash_file(path, piece_size, progress)
        except OSError as exc:
            raise LocalError(Code.IO_ERROR, f"cannot read {path}: {exc.strerror}") from None
        meta = FileMeta(group=group, name=name, size=size, piece_size=piece_size, root=root)
        return meta, self._share(self._call, meta, path, digests)

    def _share(self, call: Callable[..., Reply], meta: FileMeta, path: str, digests: bytes) -> bool:
        """Record a share on our disk, then tell the tracker; True when new to its group.

        Recording first means a full home disk refuses the share before the tracker lists it.
        Holding the sync lock means an announce of our share list (the presence thread's) goes
        out either before this share or after it is in the list, never with a list read before
        it that would wipe it.
        """
        known = self.library.get(meta.key)
        with self._sync:
            self.library.add_complete(meta, path, digests)
            try:
                return bool(call(P.OP_SHARE_FILE, meta.share_args()).unwrap()["new"])
            except TorrentError:
                if known is None or not known.complete:
                    self.library.remove(meta.key)
                raise

    def remove_file(self, group: str, name: str) -> None:
        """Admin only: the file leaves the group for everyone (holders stop, downloads end)."""
        self._call(P.OP_REMOVE_FILE, {"group": group, "file": name}).unwrap()
        self.library.remove((group, name))

    def stop_share(self, group: str, name: str) -> bool:
        """Stop sharing; True when the file left the group (we were its last sharer)."""
        key = (group, name)
        if any(d.key == key for d in self.running()):
            raise LocalError(Code.BAD_ARGS, f"[{group}] {name} is still downloading; wait for it first")
        try:
            removed = self._call(P.OP_STOP_SHARE, {"group": group, "file": name}).unwrap()["file_removed"]
        except RemoteError as exc:
            if exc.code == Code.NOT_SHARING:  # the tracker already agrees we do not share it
                self.library.remove(key)
            raise
        self.library.remove(key)
        return removed

    # --- downloads --------------------------------------------------------------------------
    def download_file(self, group: str, name: str, dest_dir: str) -> Download:
        """Start a download in the background; the returned Download reports its progress."""
        if not self._token:
            raise LocalError(Code.NOT_LOGGED_IN, "log in first")
        check_name(group, "group name")
        name = _local_name(name)
        key = (group, name)
        served = self.library.get(key)
        if served is not None and served.complete:
            raise LocalError(Code.BAD_ARGS, f"you already share [{group}] {name} from {served.path}")
        dest_dir = os.path.abspath(os.path.expanduser(dest_dir))
        final = os.path.join(dest_dir, name)
        if os.path.dirname(final) != dest_dir:
            raise LocalError(Code.BAD_PATH, f"{name!r} would land outside {dest_dir}")
        if os.path.exists(final):
            raise LocalError(Code.BAD_PATH, f"{final} already exists")
        meta = self.file_info(group, name)
        d = Download(
            self.ctx,
            self.trackers,
            self._current_token,
            self.library,
            meta,
            self.library.known_digests(meta),
            dest_dir,
            self.settings,
            events=self.events,
            peer_name=self.user or "",
            on_complete=self._reshare,
            on_end=self._download_ended,
            distrusted=self.distrusted,
        )
        with self._state_lock:  # check and insert in one step: two starts cannot both pass
            if key in self._downloads:
                raise LocalError(Code.BAD_ARGS, f"already downloading [{group}] {name}")
            self._downloads[key] = d
        d.start()
        return d

    def _reshare(self, d: Download) -> str:
        """Runs on the download's thread once the file is in place: share it like an upload.

        Returns a note for the user when the file could not be shared (it is downloaded all
        the same). The tracker call uses a client of this thread's own, closed here.
        """
        token = self._token
        if not token:
            return "downloaded, but not shared: logged out meanwhile"
        client = ControlClient(self.ctx, self.trackers)
        try:
            self._share(lambda op, args: client.call(op, args, token=token), d.meta, d.final, d.digests)
        except TorrentError as exc:
            return f"downloaded, but not shared: {exc.message}"
        finally:
            client.close()
        return ""

    def _download_ended(self, d: Download) -> None:
        with self._state_lock:
            self._downloads.pop(d.key, None)
            self._finished.append(d)
        if self.on_download_end is not None:
            self.on_download_end(d.status())

    def running(self) -> list[Download]:
        with self._state_lock:
            return list(self._downloads.values())

    def download_statuses(self) -> list[ProgressEvent]:
        with self._state_lock:
            items = list(self._downloads.values()) + list(self._finished)
        return [d.status() for d in items]

    def wait(self, timeout: float | None = None) -> list[ProgressEvent]:
        """Block until every running download ends; their final statuses."""
        running = self.running()
        for d in running:
            d.join(timeout)
        return [d.status() for d in running]

    def shares(self) -> list[Share]:
        return self.library.shares()

    def subscribe_progress(self) -> zmq.Socket:
        """A SUB socket receiving every download's ProgressEvents (the caller closes it)."""
        return self.events.subscriber()


MAX_SHARED_SIZE = P.MAX_PIECES * P.MAX_PIECE_SIZE  # 4 TiB


def piece_size_for(size: int, preferred: int) -> int:
    """``preferred``, doubled until the file has at most MAX_PIECES pieces (as BitTorrent
    clients pick larger pieces for larger files): bitfields then always fit a message."""
    piece = preferred
    while piece < P.MAX_PIECE_SIZE and (size + piece - 1) // piece > P.MAX_PIECES:
        piece *= 2
    return piece


def _local_name(name: str) -> str:
    try:
        return check_file_name(name)
    except ProtocolError as exc:
        raise LocalError(exc.code, exc.message) from None
