"""Piece selection: rarest piece first, from the least-loaded holder that has it.

Pure bookkeeping, no sockets and no clock of its own (callers pass ``now``), so every rule is
unit-tested directly. Assignments are made one at a time as capacity frees up, never all at
the start, so a slow or lost holder only ever holds ``max_per_holder`` pieces hostage (fewer
once it answered BUSY with pieces of ours in flight: ``busy``). A
download also has at most ``max_in_flight`` pieces asked for at once, however many holders it
knows: asking sixty holders for their share each would queue more than the link delivers within
the piece timeout, and every piece that times out was sent for nothing (``scripts/bench
--scale``: a swarm of 60 downloaders on two cores had 13,586 piece timeouts without the bound,
about 400 with it).

Rarity is the number of usable holders that have a piece; ties are broken at random (so
downloaders of the same file spread out). Among holders of the chosen piece the one with the
fewest pieces in flight from us wins; ties go to a partial holder before a complete one, then
to the one that answers fastest (its recent time per piece, in steps of a factor of two, a
holder not yet measured first), then to the one that has served us least, which keeps equal
holders evenly loaded. Without the speed step a fast holder among many slow ones got almost
nothing once ``max_in_flight`` was spread one piece per holder: at equal load the slow ones
had always served less (one fast and 15 slow holders: 48 pieces from the fast one in a minute
where it alone could give 2,400). When every
missing piece is in flight, an idle holder may take a second copy of a piece in flight
elsewhere (endgame), at most one duplicate per piece.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field

from messages.bitfield import Bitfield

BUSY_BACKOFF = 0.25  # seconds a busy holder is left alone
CALM = 6  # pieces per piece of ceiling delivered without a timeout before it is raised by one
SPEED_TTL = 5.0  # seconds a holder's measured speed counts for choosing between equal holders


@dataclass(slots=True)
class HolderState:
    id: str
    have: Bitfield | None  # None: complete
    load: int = 0  # pieces in flight from us
    served: int = 0  # pieces it delivered (verified)
    failures: int = 0
    backoff_until: float = 0.0
    flight: dict[int, float] = field(default_factory=dict)  # piece -> when we asked for it
    window: float = float("inf")  # pieces it takes at once, learnt from its BUSY answers
    ceiling: float = float("inf")  # how many at once last timed out, less one (see ``failed``)
    calm: int = 0  # pieces delivered since its last timeout
    cut_at: float = float("-inf")  # when a timeout last cut its window
    per_piece: float = 0.0  # recent seconds from asking to a verified piece (0: not measured)
    measured_at: float = float("-inf")  # when ``per_piece`` was last updated

    def has(self, piece: int) -> bool:
        return self.have is None or piece in self.have


def _speed_class(h: HolderState, now: float) -> int:
    """0 for a holder not measured lately (so it gets tried: one slow first piece, a cold
    disk, must not shut it out for good), then one step per doubling of its time per piece
    from 1 ms: holders within a factor of two of each other tie."""
    if h.per_piece <= 0 or now - h.measured_at > SPEED_TTL:
        return 0
    return 1 + max(0, int(math.log2(h.per_piece / 0.001)))


def _rank(h: HolderState, now: float) -> tuple[int, bool, int, int]:
    """Fewest pieces in flight first; at equal load a fellow downloader before a complete
    holder (a seeder's upload is the swarm's scarcest: what others can give, they should);
    then the faster one; then the one that has served us least."""
    return h.load, h.have is None, _speed_class(h, now), h.served + h.load


class Picker:
    def __init__(
        self,
        have: Bitfield,
        *,
        max_per_holder: int = 4,
        rng: random.Random | None = None,
        max_backoff: float = 8.0,
        max_in_flight: int | None = None,
    ) -> None:
        """``max_in_flight``: pieces asked for at once from all holders together (None: only
        ``max_per_holder`` from each bounds them)."""
        self.num_pieces = have.size
        self.have = have.copy()
        self.max_per_holder = max_per_holder
        self.max_in_flight = max_in_flight
        self.max_backoff = max_backoff
        self.rng = rng or random.Random()
        self.holders: dict[str, HolderState] = {}
        self.banned: set[str] = set()  # remembered even if a holder drops out of a refresh
        self.in_flight: dict[int, set[str]] = {}  # piece -> holders asked for it
        self._counts: list[int] = [0] * self.num_pieces  # usable holders of each piece
        self._heap: list[tuple[int, float, int]] = []
        self._dirty = True

    def start_with(self, have: Bitfield) -> None:
        """Begin from the pieces already on disk (found when the partial file was opened)."""
        self.have = have.copy()
        self.in_flight.clear()
        for h in self.holders.values():
            h.load, h.flight = 0, {}
        self._dirty = True

    # --- holders --------------------------------------------------------------------------
    def update_holder(self, hid: str, have: Bitfield | None) -> None:
        """A holder appeared or its pieces changed (tracker refresh)."""
        h = self.holders.get(hid)
        if h is None:
            self.holders[hid] = HolderState(hid, have.copy() if have is not None else None)
        else:
            h.have = have.copy() if have is not None else None
        self._dirty = True

    def remove_holder(self, hid: str) -> list[int]:
        """A holder vanished; the pieces it had in flight go back to the pool."""
        h = self.holders.pop(hid, None)
        if h is None:
            return []
        lost = sorted(h.flight)
        for piece in lost:
            self._unflight(piece, hid)
        self._dirty = True
        return lost

    def usable(self, h: HolderState, now: float) -> bool:
        return self.alive(h) and h.backoff_until <= now

    def alive(self, h: HolderState) -> bool:
        """Still worth asking: not banned for bad data. A holder that only timed out is asked
        again after its backoff for as long as the tracker lists it (an overloaded seeder, a
        link that came back); the tracker unlists the dead ones."""
        return h.id not in self.banned

    # --- choosing -------------------------------------------------------------------------
    def assign(self, now: float) -> tuple[int, str] | None:
        """The next (piece, holder) to request, or None when nothing can be asked now."""
        if (
            self.max_in_flight is not None
            and sum(h.load for h in self.holders.values()) >= self.max_in_flight
        ):
            return None
        ready = [h for h in self.holders.values() if self.usable(h, now) and h.load < self._limit(h)]
        if not ready:
            return None
        if self._dirty:
            self._rebuild()
        skipped = []
        choice = None
        while self._heap:
            entry = heapq.heappop(self._heap)
            piece = entry[2]
            if piece in self.have or piece in self.in_flight:
                continue  # stale entry; it is pushed again if it ever becomes pending
            candidates = [h for h in ready if h.has(piece)]
            if candidates:
                choice = (piece, self._least_loaded(candidates, now))
                break
            skipped.append(entry)
        for entry in skipped:
            heapq.heappush(self._heap, entry)
        if choice is None:
            choice = self._endgame(ready, now)
        if choice is not None:
            self._flight(*choice, now)
        return choice

    def _limit(self, h: HolderState) -> int:
        return max(1, int(min(self.max_per_holder, h.window, h.ceiling)))

    def _least_loaded(self, candidates: list[HolderState], now: float) -> str:
        ranks = [_rank(h, now) for h in candidates]
        best = min(ranks)
        return self.rng.choice([h for h, r in zip(candidates, ranks, strict=True) if r == best]).id

    def _endgame(self, ready: list[HolderState], now: float) -> tuple[int, str] | None:
        if self.pending_count():
            return None
        idle = [h for h in ready if h.load == 0]
        for piece, asked in sorted(self.in_flight.items()):
            if len(asked) == 1 and piece not in self.have:
                candidates = [h for h in idle if h.id not in asked and h.has(piece)]
                if candidates:
                    return piece, self._least_loaded(candidates, now)
        return None

    def _rebuild(self) -> None:
        counts = [0] * self.num_pieces
        for h in self.holders.values():
            if h.id in self.banned:
                continue
            if h.have is None:
                counts = [c + 1 for c in counts]
            else:
                for i in h.have:
                    counts[i] += 1
        self._counts = counts
        self._heap = [
            (counts[i], self.rng.random(), i)
            for i in range(self.num_pieces)
            if i not in self.have and i not in self.in_flight
        ]
        heapq.heapify(self._heap)
        self._dirty = False

    # --- outcomes -------------------------------------------------------------------------
    def done(self, piece: int, hid: str, now: float | None = None) -> bool:
        """A verified piece arrived (at ``now``, which times the holder); False when we
        already had it (endgame duplicate)."""
        h = self.holders.get(hid)
        asked = h.flight.get(piece) if h is not None else None
        self._unflight(piece, hid, requeue=False)
        if h is not None and now is not None and asked is not None:
            took = max(0.0, now - asked)
            fresh = h.per_piece <= 0 or now - h.measured_at > SPEED_TTL  # an old figure is dropped
            h.per_piece = took if fresh else 0.75 * h.per_piece + 0.25 * took
            h.measured_at = now
        if h is not None:
            h.failures = 0
            if h.window < min(self.max_per_holder, h.ceiling):  # one more per window's worth
                h.window += 1 / h.window
            h.calm += 1
            if h.calm >= CALM * h.ceiling and h.ceiling < self.max_per_holder:  # try one more again
                h.ceiling, h.calm = h.ceiling + 1, 0
        if piece in self.have:
            return False
        self.have.add(piece)
        if h is not None:
            h.served += 1
        # Other requests for this piece (endgame) are now pointless but harmless.
        return True

    def failed(self, piece: int, hid: str, now: float, *, ban: bool = False, timeout: bool = False) -> None:
        """A request failed: an error reply, ``timeout`` (no answer in time), or (ban=True) a
        piece with the wrong hash.

        A holder that timed out with N pieces asked at once (a slow uplink, an upload limit:
        it serves them one after another and the last ones wait too long) is asked half as
        many from then on, and never N again until it has delivered CALM pieces in time per
        piece it may take; otherwise it would be asked N again after its backoff and time out
        for ever (a holder capped at 0.4 MiB/s gave 6 pieces in two minutes instead of 48; now
        42). Timeouts of pieces asked before the last cut are the same stall seen by another
        worker, and do not cut again."""
        h = self.holders.get(hid)
        was = h is not None and piece in h.flight
        level = h.load if h is not None else 0  # in flight when it failed, this one included
        asked = h.flight.get(piece) if h is not None else None
        self._unflight(piece, hid)
        if h is None:
            return
        if ban:
            self.banned.add(hid)
            self._dirty = True
            return
        if timeout and (not was or (asked is not None and asked < h.cut_at)):
            return  # a late word on a piece given back already, or the stall we already cut for
        if now >= h.backoff_until:  # one burst (every request on a dead link) counts once
            h.failures += 1
            h.backoff_until = now + min(self.max_backoff, 0.25 * 2**h.failures)
            if timeout:
                h.window = max(1.0, min(h.window, level / 2))
                h.ceiling, h.calm, h.cut_at = max(1, min(h.ceiling, level - 1)), 0, now

    def busy(self, piece: int, hid: str, now: float) -> None:
        """The holder is at capacity: the piece goes elsewhere, no blame. One still serving us
        other pieces takes that many at once from now on (its send budget is in bytes: large
        or encrypted pieces fit fewer; the window grows back as pieces arrive); one serving us
        nothing rests briefly."""
        self._unflight(piece, hid)
        h = self.holders.get(hid)
        if h is None:
            return
        if h.load:
            h.window = min(h.window, h.load)
        else:
            h.window = min(h.window, 1)
            h.backoff_until = max(h.backoff_until, now + BUSY_BACKOFF)

    def release(self, piece: int, hid: str) -> None:
        """An assignment that never reached a worker: back to the pool, no blame on the holder."""
        self._unflight(piece, hid)

    def _flight(self, piece: int, hid: str, now: float) -> None:
        self.in_flight.setdefault(piece, set()).add(hid)
        h = self.holders[hid]
        h.load += 1
        h.flight[piece] = now

    def _unflight(self, piece: int, hid: str, requeue: bool = True) -> None:
        h = self.holders.get(hid)
        if h is not None and piece in h.flight:
            del h.flight[piece]
            h.load -= 1
        asked = self.in_flight.get(piece)
        if asked is not None:
            asked.discard(hid)
            if not asked:
                del self.in_flight[piece]
                if requeue and piece not in self.have and not self._dirty:
                    heapq.heappush(self._heap, (self._counts[piece], self.rng.random(), piece))

    # --- questions ------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return len(self.have) == self.num_pieces

    def pending_count(self) -> int:
        return self.num_pieces - len(self.have) - sum(1 for p in self.in_flight if p not in self.have)

    def unavailable(self) -> list[int]:
        """Missing pieces that no holder we may still ask has."""
        live = [h for h in self.holders.values() if self.alive(h)]
        return [i for i in self.have.missing() if not any(h.has(i) for h in live)]
