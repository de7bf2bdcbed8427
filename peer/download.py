"""One download: a coordinator thread that is both ventilator and sink, and its workers.

    tracker <-> coordinator --PUSH assignments--> workers <-> holders (DEALER)
                coordinator <--PULL results------ workers (verified, written)

The coordinator's loop is a few named steps, like the Majordomo broker's: talk to the
tracker, ventilate assignments as capacity frees (the picker chooses rarest-first,
least-loaded), drain the sink, reclaim overdue assignments, check for starvation. When to
call the tracker and when to give up is decided by the pure ``Schedule``; the partial file is
``PartFile``'s business. Each piece a worker wrote is published to our own seeder at once and
reported to the tracker in batches. Re-sharing the finished file is the Peer's job
(``on_complete``), which builds the share arguments in the one place it shares files.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from broker.client import AsyncControl
from broker.eventbus import EventBus
from broker.trackers import TrackerSet
from messages import protocol as P
from messages.bitfield import Bitfield
from messages.control import Push
from messages.errors import Code, LocalError, TorrentError
from messages.events import DownloadState, ProgressEvent
from messages.pipeline import READY, Assignment, Outcome, Result
from messages.protocol import DIGEST_SIZE
from messages.records import FileMeta

from .digests import DigestFetch
from .fetcher import Fetcher
from .hashing import root_hash
from .holderbook import HolderBook
from .library import Library
from .partfile import PartFile
from .picker import Picker
from .progress import Reporter
from .schedule import Schedule

log = logging.getLogger(__name__)
_ids = itertools.count(1)
WORKER_START = 5.0  # seconds for the workers to report READY
DIGEST_TIMEOUT = 3.0  # seconds a holder has to send the piece digests
MISSING_EVERY = 0.5  # seconds between counts of the pieces no holder has, while starving
REPORT_FLUSH = 3.0  # seconds an ending download spends telling the tracker of late bad pieces


@dataclass(slots=True)
class Settings:
    # Two workers hash in parallel, each with its writer thread (peer/writer.py); more only add
    # switching on small machines (2 cores, 4 holders, 1 GiB: 2 workers 718/944 MB/s
    # encrypted/plain, 4 workers 616/881; docs/performance.md).
    workers: int = 2
    max_per_holder: int = 4
    max_in_flight: int = 12  # pieces asked for at once: bounds memory (README, Performance)
    piece_timeout: float = 8.0
    direct_writes: bool = True  # past the page cache where possible (peer/piecewriter.py)


class Download:
    def __init__(
        self,
        ctx: zmq.Context,
        trackers: TrackerSet,
        token: Callable[[], str | None],
        library: Library,
        meta: FileMeta,
        digests: bytes | None,
        dest_dir: str,
        settings: Settings,
        *,
        events: EventBus | None = None,
        peer_name: str = "",
        on_complete: Callable[[Download], str] | None = None,
        on_end: Callable[[Download], None] | None = None,
        distrusted: set[tuple[str, str, str]] | None = None,
    ) -> None:
        """``distrusted`` holds (holder key, group, file) that sent this process bad data: such
        holders are never asked, and holders found bad here are added to it."""
        self.ctx, self.trackers, self.token = ctx, trackers, token
        self.library, self.meta = library, meta
        self.digests = digests or b""  # fetched from a holder first when not known
        self.settings, self.events, self.peer_name = settings, events, peer_name
        self.on_complete, self.on_end = on_complete, on_end
        self.part = PartFile(dest_dir, meta, direct=settings.direct_writes)
        self.final = self.part.final
        self.key = meta.key
        self.picker = Picker(
            Bitfield(meta.num_pieces),
            max_per_holder=settings.max_per_holder,
            max_in_flight=settings.max_in_flight,
        )
        self.started = time.monotonic()
        self.schedule = Schedule(settings.piece_timeout, self.started)
        self.book = HolderBook(
            meta, self.picker, distrusted if distrusted is not None else set(), trackers.keys.public
        )
        self.progress = Reporter(peer_name, meta, self.final, self.started)
        self._tally = self.progress.tally
        self._switches = trackers.switches
        self._missing: tuple[float, list[int]] = (float("-inf"), [])  # when last counted, and what
        self._workers: list[Fetcher] = []
        self._cancel = threading.Event()
        self._cancel_reason = ""
        self._workers_stop = threading.Event()
        self._snapshot = self.progress.snapshot(self.picker)
        self._thread = threading.Thread(target=self._run, name=f"download-{meta.name}", daemon=True)
        self.done_event = threading.Event()

    # --- control from other threads ---------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def cancel(self, reason: str = "") -> None:
        """End the download; ``reason`` becomes its error (default: cancelled, kept for a resume)."""
        self._cancel_reason = reason
        self._cancel.set()

    def join(self, timeout: float | None = None) -> bool:
        return self.done_event.wait(timeout)

    def status(self) -> ProgressEvent:
        """The latest snapshot (at most EVENT_INTERVAL old while running, exact once ended)."""
        return self._snapshot

    @property
    def state(self) -> DownloadState:
        return self._snapshot.state

    # --- the coordinator thread -------------------------------------------------------------
    def _run(self) -> None:
        link = AsyncControl(self.ctx, self.trackers, timeout=2.0, on_push=self._on_push)
        self.progress.pub = self.events.publisher() if self.events is not None else None
        try:
            self._download(link)
            self._tally.state = DownloadState.COMPLETE
        except TorrentError as exc:
            self._fail(exc.message, link)
        except OSError as exc:
            self._fail(f"{self.part.path}: {exc.strerror or exc}", link)
        except Exception as exc:  # a bug must fail this download, not the peer
            log.exception("download %s crashed", self.meta.name)
            self._fail(f"internal error: {exc!r}", link)
        finally:
            self._end(link)

    def _download(self, link: AsyncControl) -> None:
        if len(self.digests) != self.meta.num_pieces * DIGEST_SIZE:
            self.digests = self._digests_from_holders(link)
        have = self.part.open(self.digests)
        self.picker.start_with(have)
        self._tally.reused = len(have)
        self.library.add_partial(self.meta, self.part.path, self.digests, have)
        if not have.complete:
            self._fetch(link)
        if root_hash(self.digests) != self.meta.root or not self.picker.complete:
            raise LocalError(Code.DOWNLOAD_FAILED, "piece digests do not match the file's root hash")
        self.part.finish()
        if self.on_complete is not None:
            self._tally.add_note(self.on_complete(self))

    def _digests_from_holders(self, link: AsyncControl) -> bytes:
        """Ask listed holders for digests that match the root; wait for holders if none."""
        if self.meta.num_pieces == 0:
            return b""
        timeout = min(self.settings.piece_timeout, DIGEST_TIMEOUT)
        fetch = DigestFetch(self.ctx, self.meta, self.trackers.keys, timeout)
        try:
            while True:
                self._check_cancel()
                now = time.monotonic()
                self._talk_to_tracker(link, now)
                if self.book.grant is not None:
                    fetch.offer(list(self.book.holders.values()), self.book.grant, now)
                digests = fetch.poll(50)
                if digests is not None:
                    return digests
                if self.schedule.starving(now, in_flight=len(fetch.asking), unavailable=1) is not None:
                    raise fetch.error()
        finally:
            fetch.close()

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise LocalError(
                Code.DOWNLOAD_FAILED, self._cancel_reason or "cancelled; partial file kept for a resume"
            )

    def _fetch(self, link: AsyncControl) -> None:
        tag = f"inproc://download-{next(_ids)}"
        vent, sink = self.ctx.socket(zmq.PUSH), self.ctx.socket(zmq.PULL)
        try:
            vent.bind(f"{tag}-vent")
            sink.bind(f"{tag}-sink")
            self._start_workers((f"{tag}-vent", f"{tag}-sink"), sink)
            self._loop(link, vent, sink)
        finally:
            self._workers_stop.set()
            for w in self._workers:
                w.join(timeout=2)
            vent.close(linger=0)
            sink.close(linger=0)

    def _start_workers(self, pipes: tuple[str, str], sink: zmq.Socket) -> None:
        for i in range(self.settings.workers):
            w = Fetcher(
                self.ctx,
                pipes,
                self.meta,
                self.digests,
                self.part.writer(),
                self.trackers.keys,
                self._workers_stop,
                f"{pipes[0]}-w{i}",
            )
            w.start()
            self._workers.append(w)
        ready = 0
        while ready < len(self._workers):  # workers first: a PUSH to nobody would pile up
            if not sink.poll(int(WORKER_START * 1000)):
                raise LocalError(Code.INTERNAL, "download workers did not start")
            ready += sink.recv_multipart()[0] == READY

    def _loop(self, link: AsyncControl, vent: zmq.Socket, sink: zmq.Socket) -> None:
        while not self.picker.complete:
            self._check_cancel()
            now = time.monotonic()
            self._talk_to_tracker(link, now)
            self._ventilate(vent, now)
            self._drain_sink(sink)
            self._reclaim_overdue(now)
            self._check_starvation(now)
            self._refresh()

    # --- the loop's steps -------------------------------------------------------------------
    def _talk_to_tracker(self, link: AsyncControl, now: float) -> None:
        if self.trackers.switches != self._switches:  # the peer moved to another tracker
            self._switches = self.trackers.switches
            link.follow()
            self.schedule.holders_now()  # subscribe there (a dead tracker pushes nothing)
        outcome = link.poll()
        if outcome is not None and outcome.reply is None:
            self.schedule.unanswered(now, outcome.op)
        if outcome is not None and outcome.reply is not None:
            reply = outcome.reply
            code = reply.error.code if reply.error is not None else None
            if self.schedule.answered(now, outcome.op, code) is not None:
                reply.unwrap()  # not a member any more, file or group gone: the download fails
            if outcome.op == P.OP_HOLDERS and reply.ok:
                self._forget(self.book.apply(reply.result))
        token = self.token()
        if link.busy or not token:
            return
        if self.book.reports:  # bad data first: the sooner the tracker knows, the fewer are hurt
            link.start(P.OP_REPORT, self.book.reports.pop(0), token=token)
            return
        op = self.schedule.next_call(now)
        args: dict[str, object] = {"group": self.meta.group, "file": self.meta.name}
        if op == P.OP_PROGRESS:
            args["have"] = self.picker.have.encode()
        if op == P.OP_HOLDERS:
            args |= {"known": self.book.known(), "want": min(P.HOLDER_SAMPLE, self.book.room)}
        if op is not None:
            link.start(op, args, token=token)

    def _ventilate(self, vent: zmq.Socket, now: float) -> None:
        while (choice := self.picker.assign(now)) is not None:
            piece, hid = choice
            h, grant = self.book.holders[hid], self.book.grant
            assert grant is not None  # holders come with a grant
            a = Assignment(piece, hid, grant, self.settings.piece_timeout, key="" if h.plain else h.key)
            try:
                vent.send_multipart(a.encode(), zmq.NOBLOCK)
            except zmq.Again:  # no worker takes work: give the piece back
                self.picker.release(piece, hid)
                if not any(w.is_alive() for w in self._workers):
                    raise LocalError(Code.INTERNAL, "download workers stopped; partial file kept") from None
                return
            self.schedule.assigned(now, piece, hid)

    def _drain_sink(self, sink: zmq.Socket) -> None:
        if not sink.poll(50):
            return
        while True:
            try:
                frames = sink.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_result(Result.decode(frames))

    def _reclaim_overdue(self, now: float) -> None:
        for piece, hid in self.schedule.overdue(now):
            log.info("piece %d from %s overdue; asking elsewhere", piece, hid)
            self.picker.failed(piece, hid, now, timeout=True)

    def _check_starvation(self, now: float) -> None:
        in_flight = len(self.picker.in_flight)
        missing: list[int] = []
        if not in_flight:  # counted at most every MISSING_EVERY: a scan of every piece and holder
            if now - self._missing[0] >= MISSING_EVERY:
                self._missing = (now, self.picker.unavailable())
            missing = self._missing[1]
        holders = len(self.book.holders)
        verdict = self.schedule.starving(now, in_flight=in_flight, unavailable=len(missing), holders=holders)
        if verdict is Code.NO_HOLDERS:
            missing = self.picker.unavailable()  # counted again: it ends the download
            self._missing = (now, missing)
            if missing:
                raise LocalError(Code.NO_HOLDERS, self.book.unavailable_message(missing, self.part.path))
        if verdict is Code.UNREACHABLE:
            raise LocalError(
                Code.UNREACHABLE, self.book.unreachable_message(now - self.schedule.last_gain, self.part.path)
            )
        if verdict is Code.TIMEOUT:
            raise LocalError(
                Code.TIMEOUT, f"tracker unreachable for a long while; partial file kept at {self.part.path}"
            )

    # --- results and holders ----------------------------------------------------------------
    def _on_result(self, r: Result) -> None:
        self.schedule.settled(r.piece, r.holder)
        user = self.book.user(r.holder)
        if r.outcome is Outcome.LOCAL:
            raise LocalError(Code(r.code), f"cannot write {self.part.path}: {r.message}; partial file kept")
        if r.outcome is Outcome.FAILED and r.code == Code.BUSY:
            now = time.monotonic()
            self.picker.busy(r.piece, r.holder, now)
            self.schedule.heard_busy(now)
            return
        if r.outcome is not Outcome.OK:
            log.info("piece %d from %s failed: %s %s", r.piece, user, r.code, r.message)
            self.book.errors[r.holder] = r.message
            ban, late = r.outcome is Outcome.BAD_DATA, r.code == Code.TIMEOUT
            self.picker.failed(r.piece, r.holder, time.monotonic(), ban=ban, timeout=late)
            self._tally.failed(user)
            if r.outcome is Outcome.BAD_DATA:
                self._tally.add_note(f"{user} sent bad data and was dropped")
                self.book.distrust(r.holder, r.piece, r.code)
            return
        if self.picker.done(r.piece, r.holder, time.monotonic()):  # False: an endgame duplicate
            self.library.mark(self.key, r.piece)
            self.schedule.gained_piece(time.monotonic())
            self._tally.received(user)

    def _on_push(self, push: Push) -> None:
        """The tracker tells us about this file's holders (or that the file was removed)."""
        body = push.body
        if (body.get("group"), body.get("file")) != self.key:
            return
        if push.kind == P.PUSH_REMOVED:
            self.cancel(
                f"[{self.meta.group}] {self.meta.name} was removed from the group by {body.get('by')}"
            )
        elif push.kind == P.PUSH_HOLDERS:
            if body.get("refresh") or self.book.grant is None:
                self.schedule.holders_now()
            else:
                self._forget(self.book.merge(body))

    def _forget(self, gone: list[str]) -> None:
        for hid in gone:
            self.schedule.forget_holder(hid)

    # --- ending -----------------------------------------------------------------------------
    def _fail(self, message: str, link: AsyncControl) -> None:
        self._tally.state, self._tally.error = DownloadState.FAILED, message
        try:
            self.library.remove(self.key)  # partial pieces stay on disk for a resume
        except OSError as exc:
            log.warning("could not update the share list: %s", exc)
        token = self.token()
        if token:  # tell the tracker we no longer serve the partial file (best effort, one try)
            args = {
                "group": self.meta.group,
                "file": self.meta.name,
                "have": Bitfield(self.meta.num_pieces).encode(),
            }
            try:
                link.client.call(P.OP_PROGRESS, args, token=token, timeout=1.0, retries=0)
            except TorrentError as exc:
                log.info("could not withdraw %s: %s", self.meta.name, exc)

    def _end(self, link: AsyncControl) -> None:
        """Never raises: whatever failed, the download ends and its waiters wake up."""
        try:
            self.part.close()
            self._flush_reports(link)
            link.close()
            self._tally.finished = time.monotonic()
            self._refresh(force=True)
            if self.progress.pub is not None:
                self.progress.pub.close()
        except Exception:
            log.exception("cleaning up download %s", self.meta.name)
        try:
            if self.on_end is not None:
                self.on_end(self)
        except Exception:
            log.exception("after download %s", self.meta.name)
        finally:
            self.done_event.set()

    def _flush_reports(self, link: AsyncControl) -> None:
        """Bad pieces seen just before the end, not yet reported: other downloaders are still
        at risk from that holder, so the tracker hears of them now (briefly: we are ending)."""
        token = self.token()
        deadline = time.monotonic() + REPORT_FLUSH
        while self.book.reports and token and time.monotonic() < deadline:
            try:
                link.client.call(P.OP_REPORT, self.book.reports.pop(0), token=token, timeout=1.0, retries=0)
            except TorrentError as exc:
                log.info("could not report a bad piece: %s", exc)
                return

    # --- progress ---------------------------------------------------------------------------
    def _refresh(self, force: bool = False) -> None:
        """A new snapshot for status() and the event bus, at most every EVENT_INTERVAL."""
        event = self.progress.refresh(self.picker, force=force)
        if event is not None:
            self._snapshot = event
