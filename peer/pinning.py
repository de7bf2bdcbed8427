"""Which tracker key a peer trusts: given (``--tracker-key``), or pinned on first use.

A peer that was not told the key asks the tracker's key service once, remembers the answer in
``<home>/known_trackers`` (one ``endpoint key`` line per tracker, as ssh's known_hosts) and from
then on connects only to a tracker holding that key. If a tracker later shows another key, the
peer refuses and says exactly what changed and what to do, rather than trusting it silently.
"""

from __future__ import annotations

import logging
import os

import zmq

from broker.keys import check_key
from messages.endpoints import key_endpoint
from messages.errors import Code, LocalError
from messages.protocol import KEY_TAG

log = logging.getLogger(__name__)
KNOWN = "known_trackers"
FETCH_TIMEOUT = 3.0


def known_path(home: str) -> str:
    return os.path.join(home, KNOWN)


def read_pins(home: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    try:
        with open(known_path(home), encoding="ascii") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    pins[parts[0]] = parts[1]
    except (OSError, UnicodeDecodeError):
        pass
    return pins


def pin(home: str, endpoints: list[str], key: str) -> None:
    """Remember ``key`` for these trackers (a key given by the user replaces an older pin)."""
    pins = read_pins(home)
    if all(pins.get(e) == key for e in endpoints):
        return
    pins.update(dict.fromkeys(endpoints, key))
    tmp = known_path(home) + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.writelines(f"{e} {k}\n" for e, k in sorted(pins.items()))
    os.replace(tmp, known_path(home))


def fetch_key(ctx: zmq.Context, endpoint: str, timeout: float = FETCH_TIMEOUT) -> str | None:
    """The key the tracker at ``endpoint`` shows on its key service (None if no answer)."""
    try:
        where = key_endpoint(endpoint)
    except ValueError:
        return None
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 256)
    sock.setsockopt(zmq.IPV6, 1)
    try:
        sock.connect(where)
        sock.send(KEY_TAG)
        if sock.poll(int(timeout * 1000)):
            frames = sock.recv_multipart()
            if len(frames) == 2 and frames[0] == KEY_TAG:
                return check_key(frames[1].decode("ascii", "replace"), "the tracker's key")
    except (zmq.ZMQError, LocalError) as exc:
        log.warning("no key from %s: %s", where, exc)
    finally:
        sock.close(linger=0)
    return None


def trusted_key(ctx: zmq.Context, home: str, endpoints: list[str], given: str | None) -> tuple[str, str]:
    """The trackers' key to use, and a note for the user ("" when nothing to say)."""
    if given:
        key = check_key(given, "--tracker-key")
        pin(home, endpoints, key)
        return key, ""
    pins = read_pins(home)
    pinned = {pins[e] for e in endpoints if e in pins}
    if len(pinned) > 1:
        raise LocalError(
            Code.BAD_KEY, f"{known_path(home)} pins different keys for these trackers; fix that file"
        )
    if pinned:
        key = pinned.pop()
        pin(home, endpoints, key)  # trackers added to the list inherit the cluster's key
        return key, ""
    for endpoint in endpoints:
        shown = fetch_key(ctx, endpoint)
        if shown is not None:
            pin(home, endpoints, shown)
            return shown, f"trusting tracker key {shown} on first use (remembered in {known_path(home)})"
    raise LocalError(
        Code.BAD_KEY,
        "cannot learn the tracker's key (no answer from its key service); pass --tracker-key "
        "(the tracker prints it at start, or run: scripts/tracker --show-key)",
    )


def explain_refusal(ctx: zmq.Context, home: str, endpoint: str, trusted: str) -> LocalError:
    """Why a tracker refused our handshake, for the user: above all, a key that changed."""
    shown = fetch_key(ctx, endpoint)
    if shown is not None and shown != trusted:
        return LocalError(
            Code.BAD_KEY,
            f"the tracker at {endpoint} now shows key {shown}, not the key {trusted} you trust: refusing "
            f"to talk to it. If you trust the change, remove its line from {known_path(home)} "
            f"or pass --tracker-key {shown}",
        )
    return LocalError(
        Code.BAD_KEY,
        f"the tracker at {endpoint} refused the secure handshake: it does not hold key {trusted} "
        "(check --tracker-key)",
    )
