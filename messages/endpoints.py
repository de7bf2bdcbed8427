"""Endpoints: how they are written, checked and derived, for IPv4 and IPv6 alike.

``tcp://HOST:PORT`` with HOST a name, an IPv4 address, or an IPv6 address in brackets
(``tcp://[::1]:6000``). A tracker's key service (trust on first use) listens on the port after
the tracker's own.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import Code, ProtocolError

_ENDPOINT_RE = re.compile(r"tcp://([A-Za-z0-9][A-Za-z0-9.\-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\]|\*):([0-9]{1,5})")
WILDCARDS = frozenset({"0.0.0.0", "[::]", "*", "[::0]"})


def check_endpoint(v: Any, *, any_port: bool = False) -> str:
    """tcp://HOST:PORT; ``any_port`` also allows port 0 (bind to any free port)."""
    m = _ENDPOINT_RE.fullmatch(v) if isinstance(v, str) else None
    lowest = 0 if any_port else 1
    if m is None or not lowest <= int(m.group(2)) <= 65535:
        raise ProtocolError(Code.BAD_ARGS, f"endpoint must look like tcp://HOST:PORT (port {lowest}-65535)")
    return v


def split(endpoint: str) -> tuple[str, int]:
    """(host as written, brackets kept for IPv6; port)."""
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    return host, int(port)


def is_wildcard(endpoint: str) -> bool:
    return split(endpoint)[0] in WILDCARDS


def key_endpoint(endpoint: str) -> str:
    """The key service of the tracker at ``endpoint``: same host, the next port."""
    host, port = split(endpoint)
    if not 0 < port < 65535:
        raise ValueError(f"no key service port next to {endpoint}")
    return f"tcp://{host}:{port + 1}"


def with_host(endpoint: str, address: str) -> str:
    """``endpoint`` with its host replaced by ``address`` (an IP as ZeroMQ reports a peer's:
    IPv6 gets brackets, an IPv4-mapped IPv6 address becomes plain IPv4)."""
    _, port = split(endpoint)
    if address.lower().startswith("::ffff:") and "." in address:
        address = address[7:]
    host = f"[{address}]" if ":" in address else address
    return f"tcp://{host}:{port}"
