"""The DEALER request client against a real CURVE ROUTER in this process: retries, stale
replies, timeouts, pushes, a wrong tracker key, a dead tracker in the list. Real sockets on
127.0.0.1 with pyzmq's authenticator; the ROUTER side is scripted by the test."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import zmq

from broker.client import AsyncControl, ControlClient
from broker.keys import KeyPair
from broker.sockets import LIMITS, bound_endpoint, router
from broker.trackers import TrackerSet
from messages import protocol as P
from messages.control import Push, Reply, Request
from messages.errors import Code, LocalError

Script = Callable[[int, Request], list[Reply | Push]]  # (attempt number, request) -> what to send
TRACKER = KeyPair(*(k.decode() for k in zmq.curve_keypair()))
PEER = KeyPair(*(k.decode() for k in zmq.curve_keypair()))


class ScriptedTracker:
    """A ROUTER that answers each request as the test's script says (possibly not at all)."""

    def __init__(self, ctx: zmq.Context, script: Script) -> None:
        self.sock = router(ctx, "tcp://127.0.0.1:0", LIMITS["tracker"], TRACKER)
        self.endpoint = bound_endpoint(self.sock)
        self.script = script
        self.seen: list[Request] = []
        self.routes: list[bytes] = []  # the routing id each request came from: its connection
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                if not self.sock.poll(50):
                    continue
                ident, *frames = self.sock.recv_multipart()
                req = Request.decode(frames)
                self.seen.append(req)
                self.routes.append(ident)
                for reply in self.script(len(self.seen), req):
                    self.sock.send_multipart([ident, *reply.encode()])
        finally:
            self.sock.close(linger=0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def trackers(*endpoints: str, key: str = TRACKER.public) -> TrackerSet:
    return TrackerSet(list(endpoints), key, PEER)


def test_a_lost_request_is_retried_with_the_same_id(ctx: zmq.Context) -> None:
    tracker = ScriptedTracker(ctx, lambda n, req: [] if n == 1 else [Reply.success(req.id, {"n": n})])
    client = ControlClient(ctx, trackers(tracker.endpoint), timeout=0.3, retries=2)
    try:
        assert client.call(P.OP_PING).unwrap() == {"n": 2}
        assert [r.id for r in tracker.seen] == [1, 1]
        assert tracker.seen[0] == tracker.seen[1]  # the very same request: the tracker can tell
    finally:
        client.close()
        tracker.close()


def test_with_one_tracker_a_retry_goes_on_the_same_connection(ctx: zmq.Context) -> None:
    """A slow tracker is not a dead one: no new socket (and CURVE handshake) per timeout."""
    tracker = ScriptedTracker(ctx, lambda n, req: [] if n == 1 else [Reply.success(req.id, {"n": n})])
    client = ControlClient(ctx, trackers(tracker.endpoint), timeout=0.3, retries=2)
    try:
        assert client.call(P.OP_PING).unwrap() == {"n": 2}
        assert len(tracker.routes) == 2 and tracker.routes[0] == tracker.routes[1]
    finally:
        client.close()
        tracker.close()


def test_with_one_tracker_an_async_call_that_timed_out_keeps_the_connection(ctx: zmq.Context) -> None:
    answered = threading.Event()
    tracker = ScriptedTracker(ctx, lambda n, req: [] if n == 1 else [Reply.success(req.id, {"n": n})])
    link = AsyncControl(ctx, trackers(tracker.endpoint), timeout=0.3)
    try:
        for expected in (None, {"n": 2}):
            link.start(P.OP_PING, {})
            while (outcome := link.poll()) is None:
                answered.wait(0.01)
            assert (outcome.reply.result if outcome.reply else None) == expected
            assert link.client.connected
        assert len(tracker.routes) == 2 and tracker.routes[0] == tracker.routes[1]
    finally:
        link.close()
        tracker.close()


def test_stale_replies_are_dropped(ctx: zmq.Context) -> None:
    def script(n: int, req: Request) -> list[Reply]:
        return [Reply.success(req.id + 100, {"stale": True}), Reply.success(req.id, {"fresh": True})]

    tracker = ScriptedTracker(ctx, script)
    client = ControlClient(ctx, trackers(tracker.endpoint), timeout=1.0, retries=0)
    try:
        assert client.call(P.OP_PING).unwrap() == {"fresh": True}
    finally:
        client.close()
        tracker.close()


def test_no_answer_at_all_is_a_timeout_error(ctx: zmq.Context) -> None:
    tracker = ScriptedTracker(ctx, lambda n, req: [])
    client = ControlClient(ctx, trackers(tracker.endpoint), timeout=0.2, retries=1)
    try:
        with pytest.raises(LocalError) as info:
            client.call(P.OP_PING)
        assert info.value.code is Code.TIMEOUT
        assert len(tracker.seen) == 2
    finally:
        client.close()
        tracker.close()


def test_arguments_the_tracker_would_refuse_never_leave(ctx: zmq.Context) -> None:
    tracker = ScriptedTracker(ctx, lambda n, req: [Reply.success(req.id)])
    client = ControlClient(ctx, trackers(tracker.endpoint), timeout=0.2, retries=0)
    try:
        with pytest.raises(LocalError) as info:
            client.call(P.OP_LOGIN, {"user": "../x", "password": "pw"})
        assert info.value.code is Code.BAD_NAME
        assert tracker.seen == []
    finally:
        client.close()
        tracker.close()


def test_async_call_reports_answer_or_timeout(ctx: zmq.Context) -> None:
    answered = threading.Event()

    def script(n: int, req: Request) -> list[Reply]:
        return [Reply.success(req.id, {"n": n})] if req.op == P.OP_PING else []

    tracker = ScriptedTracker(ctx, script)
    link = AsyncControl(ctx, trackers(tracker.endpoint), timeout=0.3)
    try:
        link.start(P.OP_PING, {})
        assert link.busy
        while (outcome := link.poll()) is None:
            answered.wait(0.01)
        assert outcome.op == P.OP_PING and outcome.reply is not None and outcome.reply.result == {"n": 1}
        link.start(P.OP_HEARTBEAT, {}, token="t")
        while (outcome := link.poll()) is None:
            answered.wait(0.01)
        assert outcome.op == P.OP_HEARTBEAT and outcome.reply is None  # timed out
        assert not link.busy
    finally:
        link.close()
        tracker.close()


def test_pushes_are_handed_over_while_waiting_for_a_reply(ctx: zmq.Context) -> None:
    def script(n: int, req: Request) -> list[Reply | Push]:
        return [Push("revoke", {"at": 1.0, "key": "k"}), Reply.success(req.id, {"n": n})]

    tracker = ScriptedTracker(ctx, script)
    got: list[Push] = []
    client = ControlClient(ctx, trackers(tracker.endpoint), timeout=1.0, retries=0, on_push=got.append)
    try:
        assert client.call(P.OP_PING).unwrap() == {"n": 1}
        assert got == [Push("revoke", {"at": 1.0, "key": "k"})]
    finally:
        client.close()
        tracker.close()


def test_a_tracker_with_another_key_is_refused_with_a_clear_error(ctx: zmq.Context) -> None:
    tracker = ScriptedTracker(ctx, lambda n, req: [Reply.success(req.id)])
    impostor_key = zmq.curve_keypair()[0].decode()
    client = ControlClient(ctx, trackers(tracker.endpoint, key=impostor_key), timeout=0.5, retries=2)
    try:
        with pytest.raises(LocalError) as info:
            client.call(P.OP_PING)
        assert info.value.code is Code.BAD_KEY
        assert "secure handshake" in info.value.message
        assert tracker.seen == []  # nothing we sent was ever readable by it
    finally:
        client.close()
        tracker.close()


def test_a_plain_socket_gets_nothing_from_a_curve_tracker(ctx: zmq.Context) -> None:
    tracker = ScriptedTracker(ctx, lambda n, req: [Reply.success(req.id, {"secret": 1})])
    plain = ctx.socket(zmq.DEALER)
    plain.linger = 0
    try:
        plain.connect(tracker.endpoint)
        plain.send_multipart(Request(1, P.OP_PING, {}).encode())
        assert not plain.poll(500)
        assert tracker.seen == []
    finally:
        plain.close()
        tracker.close()


def test_a_dead_tracker_first_in_the_list_is_skipped(ctx: zmq.Context) -> None:
    dead = "tcp://127.0.0.1:9"  # nothing listens there
    tracker = ScriptedTracker(ctx, lambda n, req: [Reply.success(req.id, {"n": n})])
    both = trackers(dead, tracker.endpoint)
    switched: list[str] = []
    both.on_switch(switched.append)
    client = ControlClient(ctx, both, timeout=0.3, retries=2)
    try:
        assert client.call(P.OP_PING).unwrap() == {"n": 1}
        assert both.current() == tracker.endpoint
        assert switched == [tracker.endpoint]
    finally:
        client.close()
        tracker.close()
