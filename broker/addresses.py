"""This machine's addresses, for telling users where a wildcard listener can be reached.

"listening on tcp://0.0.0.0:6000" is true but useless to someone on another host; the
addresses of the machine's interfaces are what they can use. Linux: IPv4 from each interface
(SIOCGIFADDR), IPv6 from /proc/net/if_inet6; link-local IPv6 is left out (it needs a zone).
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

from messages.endpoints import split, with_host

_SIOCGIFADDR = 0x8915


def _ipv4(name: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:  # no IPv4 address on this interface
            return None
    return socket.inet_ntoa(packed[20:24])


def _ipv6() -> list[str]:
    try:
        with open("/proc/net/if_inet6") as f:
            rows = [line.split() for line in f]
    except OSError:
        return []
    out = []
    for row in rows:
        addr = ipaddress.IPv6Address(bytes.fromhex(row[0]))
        if not addr.is_link_local:
            out.append(str(addr))
    return out


def local_addresses() -> list[str]:
    """Addresses of this machine's interfaces, loopback last."""
    v4 = [a for _, name in socket.if_nameindex() if (a := _ipv4(name)) is not None]
    found = list(dict.fromkeys(v4 + _ipv6()))
    return sorted(found, key=lambda a: (ipaddress.ip_address(a).is_loopback, ":" in a, a))


def usable_endpoints(endpoint: str) -> list[str]:
    """Where a listener bound to ``endpoint`` can be reached: itself, or for a wildcard each
    address of this machine of the family it accepts ("0.0.0.0": IPv4; "[::]", "*": both)."""
    host, _ = split(endpoint)
    if host not in ("0.0.0.0", "*", "[::]", "[::0]"):
        return [endpoint]
    v4_only = host == "0.0.0.0"
    return [with_host(endpoint, a) for a in local_addresses() if not (v4_only and ":" in a)]
