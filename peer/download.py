"""One download: a coordinator thread that is both ventilator and sink, and its workers.

    tracker <-> coordinator --PUSH assignments--> workers <-> holders (DEALER)
                coordinator <--PULL results------ workers

The coordinator asks the tracker which online peers hold which pieces (and refreshes that as
the download runs), lets the picker choose rarest-first / least-loaded as workers free up,
writes each verified piece at its offset in ``<dest>/<file>.part`` with pwrite, publishes it to
our own seeder at once and tells the tracker in batches. When every piece is in and the
whole-file hash matches, the .part file is renamed and becomes a share like any upload.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import zmq

from broker.client import AsyncControl, ControlClient
from broker.publish import EventBus
from messages import protocol as P
from messages.bitfield import Bitfield
from messages.errors import Code, LocalError, ProtocolError, TorrentError
from messages.events import EVENT_INTERVAL, ProgressEvent
from messages.pipeline import READY, Assignment, Result
from messages.records import FileMeta, Holder

from .fetcher import Fetcher
from .hashing import root_hash, verify_existing
from .library import Library
from .picker import Picker

log = logging.getLogger(__name__)
_ids = itertools.count(1)

# Holder-list answers that end a download; anything else (a busy or restarting tracker) is retried.
FATAL = {Code.NOT_MEMBER, Code.NO_SUCH_FILE, Code.NO_SUCH_GROUP, Code.UNAUTHORIZED}
HOLDER_REFRESH = 1.0  # seconds between holder lists from the tracker
PROGRESS_EVERY = 0.5  # seconds between batched progress reports to the tracker
NO_HOLDER_GRACE = 4.0  # how long a piece may have no holder before the download gives up
TRACKER_GRACE = 60.0  # how long we wait on an unreachable tracker with nobody to fetch from


def write_all(fd: int, data: memoryview, offset: int) -> None:
    """pwrite until every byte is down: a short write (disk nearly full) must not pass as done."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(28, "short write")
        view, offset = view[n:], offset + n


@dataclass(slots=True)
class DownloadStatus:
    group: str
    name: str
    dest: str
    size: int
    total: int
    done: int = 0
    reused: int = 0  # pieces found valid in an existing .part file
    state: str = "running"  # running, complete, failed
    error: str = ""
    note: str = ""
    started: float = field(default_factory=time.monotonic)
    finished: float = 0.0
    from_holders: dict[str, int] = field(default_factory=dict)  # user -> pieces received
    failures: dict[str, int] = field(default_factory=dict)  # user -> failed requests
    in_flight: int = 0
    holders: int = 0

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started


@dataclass(slots=True)
class Settings:
    workers: int = 4
    max_per_holder: int = 4
    piece_timeout: float = 8.0


class Download:
    def __init__(
        self,
        ctx: zmq.Context,
        tracker: str,
        token: Callable[[], str | None],
        library: Library,
        meta: FileMeta,
        digests: bytes,
        dest_dir: str,
        settings: Settings,
        on_finish: Callable[[Download], None] | None = None,
        events: EventBus | None = None,
        peer_name: str = "",
    ) -> None:
        self.ctx = ctx
        self.tracker = tracker
        self.token = token
        self.library = library
        self.meta = meta
        self.digests = digests
        self.settings = settings
        self.on_finish = on_finish
        self.events = events
        self.peer_name = peer_name
        self._pub: zmq.Socket | None = None
        self._last_event = 0.0
        self._picker: Picker | None = None
        self._have = Bitfield(meta.num_pieces)  # verified pieces before fetching starts
        self.final = os.path.join(dest_dir, meta.name)
        self.part = self.final + ".part"
        self.key = (meta.group, meta.name)
        self._status = DownloadStatus(meta.group, meta.name, self.final, meta.size, meta.num_pieces)
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._workers_stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"download-{meta.name}", daemon=True)
        self.done_event = threading.Event()

    # --- control from other threads ---------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> bool:
        return self.done_event.wait(timeout)

    def status(self) -> DownloadStatus:
        with self._lock:
            s = self._status
            return replace(s, from_holders=dict(s.from_holders), failures=dict(s.failures))

    # --- the coordinator thread -------------------------------------------------------------
    def _run(self) -> None:
        fd = -1
        if self.events is not None:
            self._pub = self.events.publisher()
        try:
            fd = self._open_part()
            if self._status.done != self.meta.num_pieces:
                self._fetch(fd)
            self._finish(fd)
            self._set(state="complete")
        except TorrentError as exc:
            self._set(state="failed", error=exc.message)
        except OSError as exc:
            self._set(state="failed", error=f"{self.part}: {exc.strerror or exc}")
        except Exception as exc:  # a bug must fail this download, not the peer
            log.exception("download %s crashed", self.meta.name)
            self._set(state="failed", error=f"internal error: {exc!r}")
        finally:
            if fd >= 0:
                os.close(fd)
            self._set(finished=time.monotonic())
            if self._status.state != "complete":
                self.library.remove(self.key)  # partial pieces stay in .part for a resume
                self._withdraw()
            self._publish(force=True)
            if self._pub is not None:
                self._pub.close()
            self.done_event.set()
            if self.on_finish is not None:
                self.on_finish(self)

    def _withdraw(self) -> None:
        """Tell the tracker we no longer serve the partial file (best effort, one try)."""
        token = self.token()
        if not token or self._picker is None:
            return
        client = ControlClient(self.ctx, self.tracker, timeout=1.0, retries=0)
        try:
            empty = Bitfield(self.meta.num_pieces).encode()
            args = {"group": self.meta.group, "file": self.meta.name, "have": empty}
            client.call(P.OP_PROGRESS, args, token=token)
        except TorrentError as exc:
            log.info("could not withdraw %s: %s", self.meta.name, exc)
        finally:
            client.close()

    def _publish(self, force: bool = False) -> None:
        """A progress event for views, at most every EVENT_INTERVAL (always when ``force``)."""
        now = time.monotonic()
        if self._pub is None or (not force and now - self._last_event < EVENT_INTERVAL):
            return
        self._last_event = now
        s = self.status()
        picker = self._picker
        have = picker.have if picker is not None else self._have
        flight = Bitfield(self.meta.num_pieces)
        if picker is not None and s.state == "running":
            for piece in picker.in_flight:
                flight.add(piece)
        event = ProgressEvent(
            peer=self.peer_name,
            group=s.group,
            name=s.name,
            size=s.size,
            total=s.total,
            done=s.done,
            reused=s.reused,
            state=s.state,
            elapsed=s.elapsed,
            holders=s.from_holders,
            in_flight=s.in_flight,
            have=(have or Bitfield(self.meta.num_pieces)).encode(),
            flight=flight.encode(),
            error=s.error,
            note=s.note,
        )
        try:
            self._pub.send_multipart(event.encode(), zmq.NOBLOCK)
        except zmq.Again:
            pass

    def _set(self, **changes: object) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self._status, k, v)

    def _open_part(self) -> int:
        os.makedirs(os.path.dirname(self.final) or ".", exist_ok=True)
        fd = os.open(self.part, os.O_RDWR | os.O_CREAT, 0o644)
        have = Bitfield(self.meta.num_pieces)
        if os.fstat(fd).st_size:
            have = verify_existing(fd, self.meta.size, self.meta.piece_size, self.digests)
        os.ftruncate(fd, self.meta.size)
        self._set(done=len(have), reused=len(have))
        self.library.add_partial(self.meta, self.part, self.digests, have)
        self._have = have
        return fd

    def _fetch(self, fd: int) -> None:
        tag = f"inproc://download-{next(_ids)}"
        vent = self.ctx.socket(zmq.PUSH)
        sink = self.ctx.socket(zmq.PULL)
        link = AsyncControl(self.ctx, self.tracker, timeout=2.0)
        workers: list[Fetcher] = []
        try:
            vent.bind(f"{tag}-vent")
            sink.bind(f"{tag}-sink")
            for i in range(self.settings.workers):
                w = Fetcher(
                    self.ctx,
                    f"{tag}-vent",
                    f"{tag}-sink",
                    self.meta,
                    self.digests,
                    self._workers_stop,
                    f"{tag}-w{i}",
                )
                w.start()
                workers.append(w)
            ready = 0
            while ready < len(workers):  # workers first: a PUSH to nobody would pile up
                if not sink.poll(5000):
                    raise LocalError(Code.INTERNAL, "download workers did not start")
                ready += sink.recv_multipart()[0] == READY
            self._loop(fd, vent, sink, link)
        finally:
            self._workers_stop.set()
            for w in workers:
                w.join(timeout=2)
            vent.close(linger=0)
            sink.close(linger=0)
            link.close()

    def _loop(self, fd: int, vent: zmq.Socket, sink: zmq.Socket, link: AsyncControl) -> None:
        picker = self._picker = Picker(self._have, max_per_holder=self.settings.max_per_holder)
        users: dict[str, str] = {}  # holder id (endpoint) -> user
        grants: dict[str, dict] = {}
        next_refresh = next_progress = 0.0
        progress_dirty = False
        stalled_since: float | None = None
        answered_since_stall = 0
        last_answer = time.monotonic()
        while not picker.complete:
            if self._cancel.is_set():
                raise LocalError(Code.DOWNLOAD_FAILED, "cancelled; partial file kept for a resume")
            now = time.monotonic()
            outcome = link.poll()
            if outcome is not None and outcome[1] is not None:
                op, reply = outcome
                last_answer = now
                if op == P.OP_HOLDERS and not reply.ok and reply.error.code in FATAL:
                    reply.unwrap()  # not a member any more, file or group gone: the download fails
                if op == P.OP_HOLDERS and reply.ok:
                    result = reply.result
                    answered_since_stall += 1
                    self._apply_holders(picker, result.get("holders", []), users, grants)
            if not link.busy and self.token():
                if now >= next_refresh:
                    link.start(
                        P.OP_HOLDERS, {"group": self.meta.group, "file": self.meta.name}, token=self.token()
                    )
                    next_refresh = now + HOLDER_REFRESH
                elif progress_dirty and now >= next_progress:
                    have = picker.have.encode()
                    link.start(
                        P.OP_PROGRESS,
                        {"group": self.meta.group, "file": self.meta.name, "have": have},
                        token=self.token(),
                    )
                    progress_dirty, next_progress = False, now + PROGRESS_EVERY
            while (choice := picker.assign(now)) is not None:
                piece, hid = choice
                vent.send_multipart(
                    Assignment(piece, hid, hid, grants[hid], self.settings.piece_timeout).encode()
                )
            if sink.poll(50):
                while True:
                    try:
                        frames = sink.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    progress_dirty |= self._on_result(fd, picker, Result.decode(frames), users)
            self._set(
                in_flight=len(picker.in_flight),
                holders=sum(1 for h in picker.holders.values() if not h.banned),
            )
            self._publish()
            # Starvation: nothing in flight and nothing we may ask for.
            if picker.in_flight or picker.complete:
                stalled_since = None
                continue
            if stalled_since is None:
                stalled_since, answered_since_stall = now, 0
                continue
            missing = picker.unavailable()
            if missing and answered_since_stall >= 2 and now - stalled_since > NO_HOLDER_GRACE:
                raise LocalError(Code.NO_HOLDERS, self._unavailable_message(picker, missing, users))
            if now - last_answer > TRACKER_GRACE:
                raise LocalError(
                    Code.TIMEOUT, f"tracker unreachable for {TRACKER_GRACE:.0f}s; partial file kept"
                )

    def _unavailable_message(self, picker: Picker, missing: list[int], users: dict[str, str]) -> str:
        shown = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
        banned = sorted(users.get(h.id, h.id) for h in picker.holders.values() if h.banned)
        why = f"; dropped for bad data: {', '.join(banned)}" if banned else ""
        return (
            f"no online peer holds {len(missing)} of {self.meta.num_pieces} pieces ({shown}){why}; "
            f"partial file kept at {self.part}"
        )

    def _apply_holders(
        self, picker: Picker, wire: list, users: dict[str, str], grants: dict[str, dict]
    ) -> None:
        seen = set()
        for item in wire:
            try:
                h = Holder.from_wire(item)
                have = None if h.have is None else Bitfield.decode(self.meta.num_pieces, h.have)
            except ProtocolError as exc:
                log.warning("ignoring malformed holder: %s", exc)
                continue
            seen.add(h.endpoint)
            users[h.endpoint], grants[h.endpoint] = h.user, h.grant
            picker.update_holder(h.endpoint, have)
        for hid in [hid for hid in picker.holders if hid not in seen]:
            picker.remove_holder(hid)

    def _on_result(self, fd: int, picker: Picker, r: Result, users: dict[str, str]) -> bool:
        user = users.get(r.holder, r.holder)
        if not r.ok:
            log.info("piece %d from %s failed: %s %s", r.piece, user, r.code, r.message)
            picker.failed(r.piece, r.holder, time.monotonic(), ban=r.bad_data)
            with self._lock:
                self._status.failures[user] = self._status.failures.get(user, 0) + 1
                if r.bad_data:
                    self._status.note = f"{user} sent bad data and was dropped"
            return False
        if not picker.done(r.piece, r.holder):
            return False  # an endgame duplicate
        write_all(fd, r.payload.buffer, r.piece * self.meta.piece_size)
        self.library.mark(self.key, r.piece)
        with self._lock:
            self._status.done += 1
            self._status.from_holders[user] = self._status.from_holders.get(user, 0) + 1
        return True

    def _all_verified(self) -> bool:
        return (self._picker.have if self._picker is not None else self._have).complete

    def _finish(self, fd: int) -> None:
        os.fsync(fd)
        # Every piece matched its digest; the digests match the root the uploader registered.
        if root_hash(self.digests) != self.meta.root or not self._all_verified():
            raise LocalError(Code.DOWNLOAD_FAILED, "piece digests do not match the file's root hash")
        try:  # link + unlink: never replaces a file that appeared at the destination meanwhile
            os.link(self.part, self.final)
        except FileExistsError:
            raise LocalError(
                Code.BAD_PATH, f"{self.final} appeared meanwhile; the download is in {self.part}"
            ) from None
        except OSError:  # a file system without hard links: check, then rename
            if os.path.exists(self.final):
                raise LocalError(Code.BAD_PATH, f"{self.final} appeared meanwhile") from None
            os.rename(self.part, self.final)
        else:
            os.unlink(self.part)
        self.library.add_complete(self.meta, self.final, self.digests)
        token = self.token()
        if not token:
            return
        client = ControlClient(self.ctx, self.tracker)
        try:
            args = {
                "group": self.meta.group,
                "file": self.meta.name,
                "size": self.meta.size,
                "piece_size": self.meta.piece_size,
                "root": self.meta.root,
            }
            client.call(P.OP_SHARE_FILE, args, token=token, blob=self.digests).unwrap()
        except TorrentError as exc:
            self._set(note=f"downloaded, but not shared: {exc.message}")
        finally:
            client.close()
