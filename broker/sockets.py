"""Socket construction with the options every socket here needs.

LINGER is short everywhere so that closing never hangs on unsent messages (pyzmq#102,
libzmq#2586); MAXMSGSIZE bounds what a misbehaving peer can make us allocate.
"""

from __future__ import annotations

import zmq

LINGER_MS = 200


def new_context() -> zmq.Context:
    """A fresh Context per process (never shared across fork), short linger by default."""
    ctx = zmq.Context()
    ctx.linger = LINGER_MS
    return ctx


def router(ctx: zmq.Context, bind: str, *, max_msg: int, hwm: int = 1000) -> zmq.Socket:
    """A ROUTER that raises instead of silently dropping replies to gone peers."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.MAXMSGSIZE, max_msg)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
    sock.bind(bind)
    return sock


def dealer(ctx: zmq.Context, endpoint: str, *, max_msg: int, hwm: int = 1000) -> zmq.Socket:
    """A DEALER that reconnects quickly and detects a dead link by ZMTP heartbeats."""
    sock = ctx.socket(zmq.DEALER)
    try:
        configure_dealer(sock, max_msg=max_msg, hwm=hwm)
        sock.connect(endpoint)
    except zmq.ZMQError:
        sock.close(linger=0)
        raise
    return sock


def configure_dealer(sock: zmq.Socket, *, max_msg: int, hwm: int = 1000) -> None:
    """Options for a DEALER: set before connect (heartbeat options only apply then)."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, max_msg)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)


def bound_endpoint(sock: zmq.Socket) -> str:
    """The endpoint a socket really listens on (after binding to port 0)."""
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def term_context(ctx: zmq.Context, timeout: float = 5.0) -> bool:
    """Terminate ``ctx`` but never hang on it: a socket some thread failed to close would make
    ``term`` block forever (pyzmq#991). Returns False when it gave up waiting."""
    import threading

    t = threading.Thread(target=ctx.term, name="zmq-term", daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()
