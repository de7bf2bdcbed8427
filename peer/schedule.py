"""When a download talks to the tracker, and when it gives up: pure rules driven by ``now``.

Like the picker, this class has no sockets and no clock of its own, so each rule is tested
with a fake clock:

- the tracker link carries one call at a time: a fresh holder list every HOLDER_REFRESH (a
  safety net: holder changes are pushed), sooner after a call went unanswered or when asked,
  otherwise the pieces we gained (batched, at most every PROGRESS_EVERY);
- a holder-list answer with a FATAL code (no longer a member, file or group gone, session
  ended) ends the download;
- a download starves when nothing is in flight and nothing can be asked: it then asks for
  holders every RETRY_HOLDERS; once the tracker has answered twice since, and NO_HOLDER_GRACE
  has passed, missing pieces nobody holds end it;
  TRACKER_GRACE without any tracker answer ends it too; and neither a verified piece nor a
  BUSY answer for UNREACHABLE_GRACE while holders are listed (none of them can be reached from
  here) ends it with a message naming them, not a silent wait; holders that answer BUSY are
  there, only busy, and are waited for;
- every assignment has a deadline: a worker that died (or a reply that never came) gives its
  piece back after the worker's own timeout plus ASSIGNMENT_SLACK.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from messages import protocol as P
from messages.errors import Code

FATAL = frozenset({Code.NOT_MEMBER, Code.NO_SUCH_FILE, Code.NO_SUCH_GROUP, Code.UNAUTHORIZED})
HOLDER_REFRESH = 15.0  # seconds between holder lists: a safety net, changes are pushed
RETRY_HOLDERS = 1.0  # ... but sooner while the tracker did not answer the last one
PROGRESS_EVERY = 0.5  # seconds between batched progress reports to the tracker
NO_HOLDER_GRACE = 4.0  # how long a piece may have no holder before the download gives up
TRACKER_GRACE = 60.0  # how long we wait on an unreachable tracker with nobody to fetch from
ASSIGNMENT_SLACK = 2.0  # beyond the worker's own piece timeout
UNREACHABLE_GRACE = 60.0  # seconds without a verified piece from any listed holder (at least
# four piece timeouts): holders that are listed but cannot be reached from here


@dataclass(slots=True)
class Schedule:
    piece_timeout: float
    started: float
    next_holders: float = 0.0
    next_progress: float = 0.0
    progress_dirty: bool = False
    last_answer: float = 0.0
    stalled_since: float | None = None
    answers_since_stall: int = 0
    last_gain: float = 0.0
    last_busy: float = 0.0  # when a holder last answered BUSY (it is reachable, only busy)
    deadlines: dict[tuple[int, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.last_answer = self.last_gain = self.started

    # --- the tracker link -----------------------------------------------------------------
    def next_call(self, now: float) -> str | None:
        """Which call to start now on an idle link, if any."""
        if now >= self.next_holders:
            # While starving, ask every RETRY_HOLDERS: the verdict waits on fresh lists.
            self.next_holders = now + (RETRY_HOLDERS if self.stalled_since is not None else HOLDER_REFRESH)
            return P.OP_HOLDERS
        if self.progress_dirty and now >= self.next_progress:
            self.progress_dirty, self.next_progress = False, now + PROGRESS_EVERY
            return P.OP_PROGRESS
        return None

    def gained_piece(self, now: float) -> None:
        self.progress_dirty = True
        self.last_gain = now

    def heard_busy(self, now: float) -> None:
        self.last_busy = now

    def holders_now(self) -> None:
        """Ask for the full holder list at the next chance (a push could not say it all, or
        the tracker changed and our subscription must be made there)."""
        self.next_holders = 0.0

    def unanswered(self, now: float, op: str) -> None:
        """The tracker did not answer ``op`` (the link moved on): try again soon."""
        if op == P.OP_HOLDERS:
            self.next_holders = min(self.next_holders, now + RETRY_HOLDERS)
        elif op == P.OP_PROGRESS:
            self.progress_dirty = True

    def answered(self, now: float, op: str, code: Code | str | None) -> Code | None:
        """The tracker answered ``op`` (``code`` None: success); the reason to stop, if fatal."""
        self.last_answer = now
        if op != P.OP_HOLDERS:
            return None
        if code is None:
            self.answers_since_stall += 1
            return None
        return Code(code) if code in FATAL else None

    # --- starvation -----------------------------------------------------------------------
    def starving(self, now: float, *, in_flight: int, unavailable: int, holders: int = 0) -> Code | None:
        """Why the download cannot go on (NO_HOLDERS, TIMEOUT, UNREACHABLE), or None while it
        may; ``holders``: how many holders are listed."""
        heard = max(self.last_gain, self.last_busy)
        if holders and now - heard > max(UNREACHABLE_GRACE, 4 * self.piece_timeout):
            return Code.UNREACHABLE
        if in_flight:
            self.stalled_since = None
            return None
        if self.stalled_since is None:
            self.stalled_since, self.answers_since_stall = now, 0
            self.next_holders = min(self.next_holders, now + RETRY_HOLDERS)
            return None
        if unavailable and self.answers_since_stall >= 2 and now - self.stalled_since > NO_HOLDER_GRACE:
            return Code.NO_HOLDERS
        if now - self.last_answer > TRACKER_GRACE:
            return Code.TIMEOUT
        return None

    # --- assignment deadlines -------------------------------------------------------------
    def assigned(self, now: float, piece: int, holder: str) -> None:
        self.deadlines[(piece, holder)] = now + self.piece_timeout + ASSIGNMENT_SLACK

    def settled(self, piece: int, holder: str) -> None:
        self.deadlines.pop((piece, holder), None)

    def overdue(self, now: float) -> list[tuple[int, str]]:
        """Assignments past their deadline (now forgotten: the caller gives them back)."""
        late = [key for key, deadline in self.deadlines.items() if deadline <= now]
        for key in late:
            del self.deadlines[key]
        return late

    def forget_holder(self, holder: str) -> None:
        for key in [k for k in self.deadlines if k[1] == holder]:
            del self.deadlines[key]
