"""The download's cadence and give-up rules, driven with a fake clock (no sockets, no threads)."""

from __future__ import annotations

from messages import protocol as P
from messages.errors import Code
from peer.schedule import (
    ASSIGNMENT_SLACK,
    HOLDER_REFRESH,
    NO_HOLDER_GRACE,
    PROGRESS_EVERY,
    RETRY_HOLDERS,
    TRACKER_GRACE,
    UNREACHABLE_GRACE,
    Schedule,
)

T0 = 100.0


def test_first_call_is_a_holder_list_then_refreshes_on_cadence() -> None:
    s = Schedule(piece_timeout=8.0, started=T0)
    assert s.next_call(T0) == P.OP_HOLDERS
    assert s.next_call(T0 + 0.1) is None  # nothing to report, refresh not due
    assert s.next_call(T0 + HOLDER_REFRESH) == P.OP_HOLDERS


def test_progress_only_when_pieces_came_and_at_most_every_interval() -> None:
    s = Schedule(piece_timeout=8.0, started=T0)
    s.next_call(T0)
    s.gained_piece(T0)
    assert s.next_call(T0 + 0.1) == P.OP_PROGRESS
    s.gained_piece(T0)
    assert s.next_call(T0 + 0.2) is None  # batched: not before PROGRESS_EVERY
    assert s.next_call(T0 + 0.1 + PROGRESS_EVERY) == P.OP_PROGRESS
    assert s.next_call(T0 + 0.2 + PROGRESS_EVERY) is None  # nothing new since


def test_holder_list_wins_over_progress_when_both_are_due() -> None:
    s = Schedule(piece_timeout=8.0, started=T0)
    s.gained_piece(T0)
    assert s.next_call(T0) == P.OP_HOLDERS
    assert s.next_call(T0) == P.OP_PROGRESS


def test_fatal_answers_to_holder_lists_end_the_download() -> None:
    s = Schedule(piece_timeout=8.0, started=T0)
    for code in (Code.NOT_MEMBER, Code.NO_SUCH_FILE, Code.NO_SUCH_GROUP, Code.UNAUTHORIZED):
        assert s.answered(T0, P.OP_HOLDERS, code) is code
    assert s.answered(T0, P.OP_HOLDERS, Code.INTERNAL) is None  # a busy tracker: try again
    assert s.answered(T0, P.OP_PROGRESS, Code.NOT_MEMBER) is None  # only holder lists decide
    assert s.answered(T0, P.OP_HOLDERS, None) is None


def test_starving_needs_two_answers_and_the_grace_period() -> None:
    s = Schedule(piece_timeout=8.0, started=T0)
    assert s.starving(T0, in_flight=0, unavailable=3) is None  # starts the stall clock
    s.answered(T0 + 1, P.OP_HOLDERS, None)
    assert s.starving(T0 + NO_HOLDER_GRACE + 1, in_flight=0, unavailable=3) is None  # one answer only
    s.answered(T0 + 2, P.OP_HOLDERS, None)
    assert s.starving(T0 + NO_HOLDER_GRACE - 0.5, in_flight=0, unavailable=3) is None  # grace not over
    assert s.starving(T0 + NO_HOLDER_GRACE + 0.5, in_flight=0, unavailable=3) is Code.NO_HOLDERS


def test_work_in_flight_resets_the_stall() -> None:
    s = Schedule(piece_timeout=8.0, started=T0)
    s.starving(T0, in_flight=0, unavailable=3)
    s.answered(T0 + 1, P.OP_HOLDERS, None)
    s.answered(T0 + 2, P.OP_HOLDERS, None)
    assert s.starving(T0 + 3, in_flight=2, unavailable=0) is None
    assert s.starving(T0 + NO_HOLDER_GRACE + 1, in_flight=0, unavailable=3) is None  # a new stall
    assert s.stalled_since == T0 + NO_HOLDER_GRACE + 1


def test_no_tracker_answer_for_the_grace_period_times_out() -> None:
    s = Schedule(piece_timeout=8.0, started=T0)
    s.starving(T0, in_flight=0, unavailable=0)
    assert s.starving(T0 + TRACKER_GRACE - 1, in_flight=0, unavailable=0) is None
    assert s.starving(T0 + TRACKER_GRACE + 1, in_flight=0, unavailable=0) is Code.TIMEOUT
    s.answered(T0 + TRACKER_GRACE + 1, P.OP_PROGRESS, None)
    assert s.starving(T0 + TRACKER_GRACE + 2, in_flight=0, unavailable=0) is None


def test_assignments_come_back_after_their_deadline() -> None:
    s = Schedule(piece_timeout=8.0, started=T0)
    s.assigned(T0, 1, "h1")
    s.assigned(T0 + 1, 2, "h2")
    s.assigned(T0 + 1, 3, "h1")
    s.settled(2, "h2")  # answered in time
    assert s.overdue(T0 + 8.0 + ASSIGNMENT_SLACK - 0.1) == []
    assert s.overdue(T0 + 8.0 + ASSIGNMENT_SLACK) == [(1, "h1")]
    assert s.overdue(T0 + 8.0 + ASSIGNMENT_SLACK) == []  # reported once
    s.forget_holder("h1")  # the holder left: its deadlines go with it
    assert s.overdue(T0 + 100) == []


def test_holder_lists_are_a_slow_safety_net_but_quick_while_starving() -> None:
    s = Schedule(piece_timeout=8.0, started=T0)
    assert s.next_call(T0) == P.OP_HOLDERS
    assert s.next_call(T0 + HOLDER_REFRESH - 1) is None  # changes come as pushes meanwhile
    s.starving(T0 + 1, in_flight=0, unavailable=1)  # nothing to do: look again soon
    assert s.next_call(T0 + 1 + RETRY_HOLDERS) == P.OP_HOLDERS
    assert s.next_call(T0 + 1 + 2 * RETRY_HOLDERS) == P.OP_HOLDERS


def test_unanswered_calls_are_retried_soon_and_asked_lists_come_at_once() -> None:
    s = Schedule(piece_timeout=8.0, started=T0)
    s.next_call(T0)
    s.unanswered(T0 + 2, P.OP_HOLDERS)
    assert s.next_call(T0 + 2 + RETRY_HOLDERS) == P.OP_HOLDERS
    s.holders_now()
    assert s.next_call(T0 + 3.1) == P.OP_HOLDERS
    s.unanswered(T0 + 4, P.OP_PROGRESS)  # the pieces we gained are reported again
    assert s.progress_dirty


def test_listed_holders_that_deliver_nothing_for_a_minute_end_the_download() -> None:
    """Holders the tracker lists but nobody here can reach (a wrong advertised address): the
    download ends with its own reason instead of waiting forever behind backoffs."""
    s = Schedule(piece_timeout=8.0, started=T0)
    assert s.starving(T0 + UNREACHABLE_GRACE - 1, in_flight=2, unavailable=0, holders=2) is None
    s.gained_piece(T0 + UNREACHABLE_GRACE - 1)  # a piece arrived: the clock starts again
    assert s.starving(T0 + UNREACHABLE_GRACE + 5, in_flight=2, unavailable=0, holders=2) is None
    later = T0 + 2 * UNREACHABLE_GRACE
    assert s.starving(later, in_flight=2, unavailable=0, holders=2) is Code.UNREACHABLE
    assert s.starving(later, in_flight=0, unavailable=0, holders=0) is not Code.UNREACHABLE


def test_holders_that_answer_busy_are_waited_for_not_called_unreachable() -> None:
    """A popular seeder serving others answers BUSY for a while: it is there, and the download
    waits for it; only silence counts toward 'unreachable'."""
    s = Schedule(piece_timeout=8.0, started=T0)
    t = T0
    while t < T0 + 3 * UNREACHABLE_GRACE:
        s.heard_busy(t)
        assert s.starving(t, in_flight=1, unavailable=0, holders=2) is None, t - T0
        t += 5
    assert s.starving(t + UNREACHABLE_GRACE + 1, in_flight=1, unavailable=0, holders=2) is Code.UNREACHABLE
