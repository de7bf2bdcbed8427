"""Unit tests for peer.picker.Picker: pure piece selection, driven with an explicit clock."""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable

import pytest

from messages.bitfield import Bitfield
from peer.picker import CALM, Picker

SEEDS = range(8)


def make(num: int, holders: dict[str, set[int] | None], seed: int = 0, **kw: object) -> Picker:
    """A picker for ``num`` pieces; each holder is complete (None) or has the given pieces."""
    p = Picker(Bitfield(num), rng=random.Random(seed), **kw)  # type: ignore[arg-type]
    for hid, have in holders.items():
        p.update_holder(hid, None if have is None else Bitfield.from_indices(num, have))
    return p


def drain(p: Picker, now: float = 0.0) -> list[tuple[int, str]]:
    """Assign until the picker says nothing more can be asked now."""
    out = []
    while (choice := p.assign(now)) is not None:
        out.append(choice)
        assert len(out) < 10_000
    return out


# --- rarity and load ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_rarest_piece_first(seed: int) -> None:
    # Piece 3 is held by A only; pieces 0-2 by A, B and C.
    p = make(4, {"A": None, "B": {0, 1, 2}, "C": {0, 1, 2}}, seed=seed)
    assert p.assign(0) == (3, "A")


@pytest.mark.parametrize("seed", SEEDS)
def test_pieces_come_out_in_rarity_order(seed: int) -> None:
    # counts: piece 0 -> 1 holder, 1 -> 2 holders, 2 and 3 -> 3 holders
    holders: dict[str, set[int] | None] = {"A": {0, 1, 2, 3}, "B": {1, 2, 3}, "C": {2, 3}}
    p = make(4, holders, seed=seed, max_per_holder=10)
    order = [piece for piece, _ in drain(p)]
    assert order[:2] == [0, 1]
    assert sorted(order[2:]) == [2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_least_loaded_holder_that_has_the_piece(seed: int) -> None:
    # Pieces 1-3 only A has (rarer), so A takes them first; then piece 0 goes to the idle B.
    p = make(4, {"A": None, "B": {0}}, seed=seed, max_per_holder=4)
    first = [p.assign(0) for _ in range(3)]
    assert sorted(first) == [(1, "A"), (2, "A"), (3, "A")]
    assert p.assign(0) == (0, "B")


@pytest.mark.parametrize("seed", SEEDS)
def test_at_equal_load_a_partial_holder_is_asked_before_a_complete_one(seed: int) -> None:
    # The seeder S and the downloader D hold every piece: D is asked first, S next, and so on
    # while both have room (least loaded first).
    p = make(8, {"S": None, "D": set(range(8))}, seed=seed, max_per_holder=2)
    assert [hid for _, hid in drain(p)] == ["D", "S", "D", "S"]


@pytest.mark.parametrize("seed", SEEDS)
def test_in_flight_load_is_spread_between_equal_holders(seed: int) -> None:
    p = make(20, {"A": None, "B": None, "C": None}, seed=seed, max_per_holder=4)
    load: Counter[str] = Counter()
    while (choice := p.assign(0)) is not None:
        load[choice[1]] += 1
        # Each new request goes to a holder with the fewest in flight.
        assert max(load["A"], load["B"], load["C"]) - min(load["A"], load["B"], load["C"]) <= 1
    assert load == {"A": 4, "B": 4, "C": 4}


@pytest.mark.parametrize("seed", SEEDS)
def test_ties_spread_evenly_over_a_whole_download(seed: int) -> None:
    p = make(30, {"A": None, "B": None, "C": None}, seed=seed)
    served: Counter[str] = Counter()
    pieces = []
    while (choice := p.assign(0)) is not None:
        piece, hid = choice
        assert p.done(piece, hid) is True
        served[hid] += 1
        pieces.append(piece)
    assert p.complete
    assert sorted(pieces) == list(range(30))
    assert set(served) == {"A", "B", "C"}
    assert all(9 <= n <= 11 for n in served.values()), served


@pytest.mark.parametrize("seed", SEEDS)
def test_random_tie_break_differs_between_seeds(seed: int) -> None:
    # Equal-rarity pieces come out in a seed-dependent order, so downloaders spread out.
    orders = set()
    for s in range(seed, seed + 6):
        p = make(16, {"A": None}, seed=s, max_per_holder=16)
        orders.add(tuple(piece for piece, _ in drain(p)))
    assert len(orders) > 1


# --- capacity -------------------------------------------------------------------------------


def test_a_download_asks_for_at_most_max_in_flight_pieces_whatever_its_holders() -> None:
    holders: dict[str, set[int] | None] = {f"H{i}": None for i in range(60)}
    p = make(128, holders, max_per_holder=4, max_in_flight=16)
    first = drain(p)
    assert len(first) == 16 and len({piece for piece, _ in first}) == 16
    assert max(Counter(h for _, h in first).values()) == 1  # spread over the least loaded
    piece, hid = first[0]
    p.done(piece, hid)  # one in, one more may go out
    assert len(drain(p)) == 1
    p.failed(*first[1], now=0.0)  # a failure frees its slot too
    assert len(drain(p)) == 1


def test_max_per_holder_is_respected() -> None:
    p = make(30, {"A": None, "B": None, "C": None}, max_per_holder=2)
    first = drain(p)
    assert len(first) == 6
    assert Counter(h for _, h in first) == {"A": 2, "B": 2, "C": 2}
    assert len({piece for piece, _ in first}) == 6
    assert p.assign(0) is None
    # Completing one frees exactly one slot on that holder.
    piece, hid = first[0]
    p.done(piece, hid)
    nxt = p.assign(0)
    assert nxt is not None
    assert nxt[1] == hid
    assert p.assign(0) is None


def test_no_holders_means_nothing_to_assign() -> None:
    p = make(5, {})
    assert p.assign(0) is None
    assert p.unavailable() == [0, 1, 2, 3, 4]


def test_pieces_we_already_have_are_never_assigned() -> None:
    have = Bitfield.from_indices(10, [0, 2, 4, 6, 8])
    p = Picker(have, rng=random.Random(1), max_per_holder=100)
    p.update_holder("A", None)
    p.update_holder("B", None)
    got = drain(p)
    assigned = [piece for piece, _ in got]
    assert sorted(assigned) == [1, 3, 5, 7, 9]
    assert not p.complete
    # Nothing left to duplicate either: every copy in flight is of a piece we lack.
    assert set(p.in_flight) == set(assigned)


def test_picker_copies_the_callers_bitfield() -> None:
    have = Bitfield(3)
    p = Picker(have, rng=random.Random(0))
    p.update_holder("A", None)
    piece, hid = p.assign(0)  # type: ignore[misc]
    p.done(piece, hid)
    assert len(have) == 0
    assert len(p.have) == 1


# --- failures -------------------------------------------------------------------------------


def test_failed_returns_piece_and_backs_the_holder_off() -> None:
    p = make(1, {"A": None, "B": None}, seed=3)
    piece, first = p.assign(0.0)  # type: ignore[misc]
    other = "B" if first == "A" else "A"
    p.failed(piece, first, now=10.0)
    assert p.in_flight == {}
    # The piece is back in the pool and goes to the other holder.
    assert p.assign(10.0) == (piece, other)


def test_backed_off_holder_is_not_assigned_until_backoff_passes() -> None:
    p = make(3, {"A": None}, seed=0)
    piece, _ = p.assign(10.0)  # type: ignore[misc]
    p.failed(piece, "A", now=10.0)
    until = p.holders["A"].backoff_until
    assert until > 10.0
    assert p.assign(10.0) is None
    assert p.assign((10.0 + until) / 2) is None
    assert p.assign(until) is not None


def test_backoff_grows_with_repeated_failures_and_is_capped() -> None:
    p = make(1, {"A": None}, max_backoff=2.0)
    waits = []
    now = 0.0
    for _ in range(6):
        piece, hid = p.assign(now)  # type: ignore[misc]
        p.failed(piece, hid, now)
        waits.append(p.holders[hid].backoff_until - now)
        now = p.holders[hid].backoff_until
    assert waits[0] < waits[1] < waits[2]
    assert max(waits) == 2.0
    # A success resets the failure count.
    piece, hid = p.assign(now)  # type: ignore[misc]
    p.done(piece, hid)
    assert p.holders["A"].failures == 0


def test_a_holder_that_timed_out_many_times_is_used_again_when_it_answers() -> None:
    """Timeouts cost a backoff, never the holder: an overloaded seeder, or a link that
    came back, serves again (only bad data bans, and the tracker unlists the dead)."""
    p = make(2, {"A": None}, max_backoff=8.0)
    now = 0.0
    for _ in range(20):
        piece, hid = p.assign(now)  # type: ignore[misc]
        p.failed(piece, hid, now)
        assert p.holders[hid].backoff_until - now <= 8.0
        now = p.holders[hid].backoff_until
    assert p.unavailable() == []  # not written off: no "nobody holds these pieces" verdict
    piece, hid = p.assign(now)  # type: ignore[misc]
    assert p.done(piece, hid) and p.holders["A"].failures == 0
    assert p.assign(now) is not None  # and it takes the rest at full speed again


def test_failures_of_one_burst_count_once() -> None:
    p = make(4, {"A": None}, max_per_holder=4)
    flight = [p.assign(0) for _ in range(4)]
    for piece, hid in flight:  # type: ignore[misc]
        p.failed(piece, hid, 0.0)  # a dead link fails all four at once
    assert p.holders["A"].failures == 1
    assert p.assign(p.holders["A"].backoff_until) is not None


def test_ban_survives_a_holder_missing_from_one_refresh() -> None:
    p = make(2, {"A": None, "B": None}, seed=3)
    piece, hid = p.assign(0)  # type: ignore[misc]
    p.failed(piece, hid, 0, ban=True)
    p.remove_holder(hid)
    p.update_holder(hid, None)
    assert hid in p.banned
    assert all(p.assign(0)[1] != hid for _ in range(2))  # type: ignore[index]


def test_banned_holder_is_never_assigned_again() -> None:
    p = make(4, {"A": None, "B": {0, 1}}, seed=2, max_per_holder=10)
    # A is the only holder of 2 and 3, so it is asked first.
    piece, hid = p.assign(0)  # type: ignore[misc]
    assert hid == "A"
    assert piece in (2, 3)
    p.failed(piece, "A", now=0, ban=True)
    later = drain(p, now=1e9)
    assert later
    assert all(h == "B" for _, h in later)
    assert sorted(pc for pc, _ in later) == [0, 1]
    assert p.unavailable() == [2, 3]


def test_unavailable_ignores_holders_in_backoff_but_not_banned_ones() -> None:
    p = make(3, {"A": None, "B": {0}})
    assert p.unavailable() == []
    piece, hid = p.assign(0)  # type: ignore[misc]
    p.failed(piece, hid, now=0)  # backoff only: still a usable holder later
    assert p.unavailable() == []


def test_remove_holder_returns_in_flight_pieces_which_go_to_others() -> None:
    p = make(10, {"A": None, "B": None}, seed=4, max_per_holder=3)
    first = drain(p)
    a_pieces = sorted(pc for pc, h in first if h == "A")
    assert len(a_pieces) == 3
    assert p.remove_holder("A") == a_pieces
    assert "A" not in p.holders
    assert p.remove_holder("A") == []
    assert all(pc not in p.in_flight for pc in a_pieces)
    assert p.pending_count() == 7
    for pc, h in first:
        if h == "B":
            p.done(pc, h)
    p.update_holder("C", None)
    # Run the rest of the download: A's lost pieces are fetched from B and C.
    later = []
    while (choice := p.assign(0)) is not None:
        later.append(choice)
        p.done(*choice)
    assert p.complete
    assert {h for _, h in later} == {"B", "C"}
    assert set(a_pieces) <= {pc for pc, _ in later}
    assert len(later) == 7


def test_holder_appearing_later_gets_assignments() -> None:
    p = make(6, {"A": None}, max_per_holder=2)
    assert len(drain(p)) == 2
    p.update_holder("B", None)
    later = drain(p)
    assert [h for _, h in later] == ["B", "B"]


def test_partial_holder_is_asked_only_for_its_pieces_then_for_new_ones() -> None:
    p = make(6, {"B": {1, 4}}, max_per_holder=10)
    first = drain(p)
    assert sorted(first) == [(1, "B"), (4, "B")]
    p.update_holder("B", Bitfield.from_indices(6, {1, 2, 4, 5}))
    second = drain(p)
    assert sorted(second) == [(2, "B"), (5, "B")]
    assert p.unavailable() == [0, 3]


def test_update_holder_keeps_its_own_copy_of_the_bitfield() -> None:
    have = Bitfield.from_indices(4, {0})
    p = Picker(Bitfield(4), rng=random.Random(0), max_per_holder=10)
    p.update_holder("B", have)
    have.add(1)
    have.add(2)
    assert drain(p) == [(0, "B")]


# --- endgame --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_endgame_duplicates_in_flight_piece_to_idle_holder(seed: int) -> None:
    p = make(2, {"A": None, "B": None, "C": None}, seed=seed, max_per_holder=1)
    a = p.assign(0)
    b = p.assign(0)
    assert a is not None
    assert b is not None
    assert {a[0], b[0]} == {0, 1}
    # Every missing piece is in flight; the idle holder gets a duplicate.
    dup = p.assign(0)
    assert dup is not None
    busy = {a[1], b[1]}
    assert dup[1] not in busy
    original = a if a[0] == dup[0] else b
    assert original[1] != dup[1]
    assert p.in_flight[dup[0]] == {original[1], dup[1]}
    assert p.assign(0) is None  # everyone busy
    assert p.done(dup[0], dup[1]) is True
    assert p.done(*original) is False  # the copy that came second is a duplicate
    other = b if original is a else a
    assert not p.complete
    assert p.done(*other) is True
    assert p.complete


@pytest.mark.parametrize("seed", SEEDS)
def test_endgame_at_most_one_duplicate_per_piece(seed: int) -> None:
    p = make(1, {"A": None, "B": None, "C": None, "D": None}, seed=seed, max_per_holder=1)
    first = p.assign(0)
    second = p.assign(0)
    assert first is not None
    assert second is not None
    assert first[0] == second[0] == 0
    assert first[1] != second[1]
    assert p.assign(0) is None  # C and D stay idle
    assert len(p.in_flight[0]) == 2


@pytest.mark.parametrize("seed", SEEDS)
def test_no_endgame_while_pieces_are_still_pending(seed: int) -> None:
    # Pieces 1 and 2 only A has; piece 0 B and C have too.
    p = make(3, {"A": None, "B": {0}, "C": {0}}, seed=seed, max_per_holder=1)
    first = p.assign(0)
    second = p.assign(0)
    assert first is not None
    assert first[0] in (1, 2)
    assert first[1] == "A"
    assert second is not None
    assert second[0] == 0
    assert second[1] in ("B", "C")
    # The third piece is still pending (its only holder is busy): the idle one of B/C must
    # not take a duplicate of piece 0 yet.
    assert p.pending_count() == 1
    assert p.assign(0) is None


def test_endgame_never_duplicates_a_piece_we_already_have() -> None:
    p = make(2, {"A": None, "B": None, "C": None}, seed=1, max_per_holder=1)
    a, b, dup = p.assign(0), p.assign(0), p.assign(0)
    assert a is not None
    assert b is not None
    assert dup is not None
    original = a if a[0] == dup[0] else b
    # The first copy of the duplicated piece arrives; the other copy is still in flight.
    assert p.done(*original) is True
    nxt = p.assign(0)
    assert nxt is None or nxt[0] not in p.have, f"re-assigned piece {nxt} we already have"


def test_complete_after_all_pieces_done() -> None:
    p = make(5, {"A": None}, max_per_holder=5)
    got = drain(p)
    assert len(got) == 5
    for i, (piece, hid) in enumerate(got):
        assert not p.complete
        assert p.done(piece, hid) is True
        assert len(p.have) == i + 1
    assert p.complete
    assert p.assign(0) is None
    assert p.pending_count() == 0


def test_empty_picker_is_complete_immediately() -> None:
    p = Picker(Bitfield(0))
    assert p.complete
    p.update_holder("A", None)
    assert p.assign(0) is None
    assert p.unavailable() == []
    assert p.pending_count() == 0


# --- BUSY answers -----------------------------------------------------------------------------


def test_a_holder_busy_while_serving_us_is_asked_fewer_at_once_not_left_idle() -> None:
    """A seeder's send budget is in bytes, so with large (or encrypted) pieces it takes fewer
    than max_per_holder at once. Backing off on every BUSY left it idle a quarter of a second
    each time (4 MiB encrypted pieces: 104 MB/s instead of 600); it keeps serving what it
    took, and is asked that many at once."""
    p = make(20, {"A": None}, max_per_holder=4)
    asked = drain(p)
    assert len(asked) == 4
    p.busy(asked[3][0], "A", 0.0)
    p.busy(asked[2][0], "A", 0.0)
    assert p.assign(0.0) is None  # two in flight: its window now
    p.done(asked[0][0], "A")
    nxt = p.assign(0.0)  # no rest: the holder is asked again at once, within its window
    assert nxt is not None and nxt[1] == "A"
    assert p.assign(0.0) is None
    for piece, _ in [asked[1], nxt]:
        p.done(piece, "A")
    for _ in range(10):  # the window grows back as pieces arrive
        for piece, hid in drain(p):
            p.done(piece, hid)
    assert len(drain(p)) == 4 or p.pending_count() < 4


def test_a_holder_busy_with_nothing_of_ours_rests_briefly() -> None:
    p = make(20, {"A": None, "B": None}, max_per_holder=2)
    piece, hid = p.assign(0.0) or (0, "")
    p.busy(piece, hid, 0.0)
    assert all(h == ({"A", "B"} - {hid}).pop() for _, h in drain(p, 0.0))
    later = drain(p, 1.0)
    assert any(h == hid for _, h in later)


def _pieces_from_a_capped_holder(rate: float, seconds: float = 120.0, timeout: float = 8.0) -> int:
    """A holder whose uplink gives ``rate`` pieces a second serves requests one after another;
    two workers each drop their connection, failing every request on it, once one is
    ``timeout`` late (fetcher._expire). Pieces delivered in ``seconds`` (a simulated clock)."""
    p = make(1000, {"S": None}, seed=1, max_per_holder=4, max_in_flight=12)
    queue: list[list] = []  # the holder's FIFO: [piece, worker, connection, work left]
    conn = [0, 0]
    pending: dict[int, list[tuple[int, float]]] = {0: [], 1: []}
    t, dt, got, turn = 0.0, 0.01, 0, 0
    while t < seconds:
        while (choice := p.assign(t)) is not None:
            turn ^= 1
            pending[turn].append((choice[0], t + timeout))
            queue.append([choice[0], turn, conn[turn], 1.0])
        if queue:
            queue[0][3] -= rate * dt
            if queue[0][3] <= 0:
                piece, w, c, _ = queue.pop(0)
                if c == conn[w] and any(x[0] == piece for x in pending[w]):
                    pending[w] = [x for x in pending[w] if x[0] != piece]
                    p.done(piece, "S")
                    got += 1
        for w in (0, 1):
            if any(deadline <= t for _, deadline in pending[w]):
                for piece, _ in pending[w]:
                    p.failed(piece, "S", t, timeout=True)
                pending[w] = []
                conn[w] += 1
        t += dt
    return got


@pytest.mark.parametrize(("rate", "least"), [(0.4, 36), (0.2, 10)])
def test_a_holder_on_a_slow_uplink_is_asked_fewer_at_once_after_timing_out(rate: float, least: int) -> None:
    # Asked 4 at once, a holder capped at 0.4 MiB/s (1 MiB pieces) takes 10 s for the last:
    # the requests time out, and asked 4 again after the backoff it gave 6 pieces in two
    # minutes instead of 48. Halving on a timeout, and not going back to the level that timed
    # out until it has delivered a while, keeps it busy.
    assert _pieces_from_a_capped_holder(rate) >= least


def test_a_timeout_halves_the_holders_window_and_caps_it_below_what_timed_out() -> None:
    p = make(100, {"S": None}, max_per_holder=4)
    asked = drain(p)
    assert len(asked) == 4
    for piece, hid in asked:  # one burst: every request on the dropped connection
        p.failed(piece, hid, 10.0, timeout=True)
    assert drain(p, 100.0) and p.holders["S"].load == 2  # half of 4
    delivered = 0

    def deliver_all_in_flight() -> None:
        nonlocal delivered
        for piece in sorted(p.holders["S"].flight):
            p.done(piece, "S")
            delivered += 1

    deliver_all_in_flight()
    while delivered < 3 * CALM - 4:  # it grows back, but not to the 4 that timed out
        drain(p, 100.0)
        deliver_all_in_flight()
    assert p._limit(p.holders["S"]) == 3
    while delivered < 3 * CALM + 4:  # after CALM pieces per piece of ceiling it may try 4 again
        drain(p, 100.0)
        deliver_all_in_flight()
    assert p._limit(p.holders["S"]) == 4


def test_one_stall_cuts_a_holders_window_once_whichever_worker_sees_it() -> None:
    # Two workers each drop their connection when a request is late: a healthy holder that
    # stalls once is seen timing out twice, a second apart (after the backoff). The second
    # burst is the same stall: it must not cut the ceiling again (to 1, 72 pieces to recover).
    p = make(100, {"S": None}, max_per_holder=4)
    asked = drain(p, 0.0)
    first, second = asked[:2], asked[2:]
    for piece, hid in first:
        p.failed(piece, hid, 8.0, timeout=True)
    for piece, hid in second:
        p.failed(piece, hid, 9.0, timeout=True)
    assert p.holders["S"].ceiling == 3 and p.holders["S"].window == 2


def _a_minute(p: Picker, took: Callable[[str, Counter[str], list], float]) -> Counter[str]:
    """Pieces each holder delivered in a simulated minute, at most 12 in flight; ``took``: how
    long a piece asked of a holder takes (given what was delivered and what is in flight)."""
    p.max_in_flight = 12
    events: list[tuple[float, int, str]] = []
    t, by = 0.0, Counter[str]()
    while t < 60.0:
        while (choice := p.assign(t)) is not None:
            piece, hid = choice
            heapq.heappush(events, (t + took(hid, by, events), piece, hid))
        t, piece, hid = heapq.heappop(events)
        if t < 60.0:
            p.done(piece, hid, t)
            by[hid] += 1
    return by


def test_a_holder_measured_slow_once_is_measured_again() -> None:
    # 16 equal holders, 12 pieces in flight, so ties decide who is asked. One slow first piece
    # (a cold disk: 2 s) left H0 losing every tie: 12 pieces in a minute against 448 each.
    def took(hid: str, by: Counter[str], events: list) -> float:
        cold = hid == "H0" and not by["H0"] and not any(e[2] == "H0" for e in events)
        return 2.0 if cold else 0.1

    by = _a_minute(make(100_000, {f"H{k}": None for k in range(16)}, seed=3), took)
    assert by["H0"] >= 0.8 * sum(by.values()) / 16, by


def _pieces_in_a_minute(slow_holders: int) -> Counter[str]:
    """One fast holder (0.1 s a piece) and ``slow_holders`` slow but healthy ones (6 s a piece):
    pieces each kind delivered in a simulated minute."""
    p = make(100_000, {"F": None, **{f"S{k}": None for k in range(slow_holders)}}, seed=2)
    by = _a_minute(p, lambda hid, by, events: 0.1 if hid == "F" else 6.0)
    return Counter({kind: sum(n for hid, n in by.items() if hid[0] == kind) for kind in "FS"})


def test_a_fast_holder_among_many_slow_ones_gets_the_ties() -> None:
    # At equal load the slow holders had always served less, so the fast one lost every tie
    # and got 48 pieces in a minute (15 slow holders); it now wins ties on its measured speed.
    assert _pieces_in_a_minute(15)["F"] >= 400
    by = _pieces_in_a_minute(3)
    assert by["F"] >= 1500 and by["S"] > 0  # the slow ones still serve their share
