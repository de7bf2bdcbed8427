"""What a handler gets: the tracker's parts (``Env``) and one request with its caller (``Call``).

Handlers reply by returning a Reply and tell other peers things with ``notify(selector, push)``:
the connections the selector names are looked up at once (before later changes of the request
remove them), and the core sends the push to those on this tracker and, through the database,
asks the other trackers to send it to theirs; all of it only once the batch committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from messages.control import Push, Reply, Request
from messages.errors import Code, Refused
from messages.grants import GrantSigner

from .presence import Presence, Target
from .rules import Rules, Session


@dataclass(slots=True)
class Env:
    """What handlers may use; one per tracker."""

    rules: Rules
    presence: Presence
    signer: GrantSigner
    epoch: str
    grant_lifetime: float
    notices: list[tuple[list[Target], Push]] = field(default_factory=list)

    def notify(self, selector: dict[str, str], push: Push) -> None:
        """Push ``push`` to the connections ``selector`` names now (see Presence.targets)."""
        targets = self.presence.targets(selector)
        if targets:
            self.notices.append((targets, push))


@dataclass(frozen=True, slots=True)
class Call:
    """One request as a handler sees it: the request, its caller and the batch's time."""

    req: Request
    session_or_none: Session | None
    now: float  # the tracker's monotonic clock (presence)
    wall: float  # seconds since the epoch (grants, throttling)
    route: bytes = b""  # the routing id of the caller's connection (pushes go back on it)
    key: str = ""  # the caller's CURVE key, as ZeroMQ authenticated it
    address: str = ""  # the caller's IP address, as ZeroMQ saw it

    @property
    def args(self) -> dict[str, Any]:
        return self.req.args

    @property
    def session(self) -> Session:
        if self.session_or_none is None:  # only ops the table marks as needing no token get here
            raise Refused(Code.UNAUTHORIZED, "not logged in")
        return self.session_or_none

    @property
    def user(self) -> str:
        return self.session.user

    def ok(self, result: dict[str, Any] | None = None) -> Reply:
        return Reply.success(self.req.id, result)


Continuation = Callable[[Env, Call, bytes], Reply]  # (env, the call as it is now, a digest)


@dataclass(frozen=True, slots=True)
class Deferred:
    """A handler's answer "not yet": hash ``password`` with ``salt`` off the tracker's loop,
    then ``then`` gives the reply (see ``deferred``: logins and new users wait for their hash)."""

    user: str
    password: str
    salt: bytes
    then: Continuation


Handler = Callable[[Env, Call], Reply | Deferred]
