"""The DEALER request client against a real ROUTER in this process: retries, stale replies,
timeouts. Real sockets on 127.0.0.1; the ROUTER side is scripted by the test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import zmq

from broker.client import AsyncControl, ControlClient
from broker.sockets import LIMITS, bound_endpoint, new_context, router, term_context
from messages import protocol as P
from messages.control import Reply, Request
from messages.errors import Code, LocalError

Script = Callable[[int, Request], list[Reply]]  # (attempt number, request) -> replies to send


class ScriptedTracker:
    """A ROUTER that answers each request as the test's script says (possibly not at all)."""

    def __init__(self, ctx: zmq.Context, script: Script) -> None:
        self.sock = router(ctx, "tcp://127.0.0.1:0", LIMITS["tracker"])
        self.endpoint = bound_endpoint(self.sock)
        self.script = script
        self.seen: list[Request] = []
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
                for reply in self.script(len(self.seen), req):
                    self.sock.send_multipart([ident, *reply.encode()])
        finally:
            self.sock.close(linger=0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    c = new_context()
    yield c
    assert term_context(c), "sockets left open"


def test_a_lost_request_is_retried_with_the_same_id(ctx: zmq.Context) -> None:
    tracker = ScriptedTracker(ctx, lambda n, req: [] if n == 1 else [Reply.success(req.id, {"n": n})])
    client = ControlClient(ctx, tracker.endpoint, timeout=0.3, retries=2)
    try:
        assert client.call(P.OP_PING).unwrap() == {"n": 2}
        assert [r.id for r in tracker.seen] == [1, 1]
        assert tracker.seen[0] == tracker.seen[1]  # the very same request: the tracker can tell
    finally:
        client.close()
        tracker.close()


def test_stale_replies_are_dropped(ctx: zmq.Context) -> None:
    def script(n: int, req: Request) -> list[Reply]:
        return [Reply.success(req.id + 100, {"stale": True}), Reply.success(req.id, {"fresh": True})]

    tracker = ScriptedTracker(ctx, script)
    client = ControlClient(ctx, tracker.endpoint, timeout=1.0, retries=0)
    try:
        assert client.call(P.OP_PING).unwrap() == {"fresh": True}
    finally:
        client.close()
        tracker.close()


def test_no_answer_at_all_is_a_timeout_error(ctx: zmq.Context) -> None:
    tracker = ScriptedTracker(ctx, lambda n, req: [])
    client = ControlClient(ctx, tracker.endpoint, timeout=0.2, retries=1)
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
    client = ControlClient(ctx, tracker.endpoint, timeout=0.2, retries=0)
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
    link = AsyncControl(ctx, tracker.endpoint, timeout=0.3)
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
