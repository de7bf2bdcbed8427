"""Grants: signed by the tracker (Ed25519), checked by seeders, bound to the requester's key."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson
import pytest

from messages.errors import Code, Refused
from messages.grants import GrantChecker, GrantSigner
from messages.records import Grant, Revocation

SIGNER = GrantSigner(b"t" * 32)
BOB_KEY = "b" * 40


def grant(lifetime: float = 60, **over: Any) -> Grant:
    g = SIGNER.grant("bob", BOB_KEY, "films", "movie.mkv", lifetime)
    return dataclasses.replace(g, **over) if over else g


def refused(fn: Any, *args: Any, **kw: Any) -> str:
    with pytest.raises(Refused) as info:
        fn(*args, **kw)
    assert info.value.code is Code.BAD_GRANT
    return info.value.message


def test_a_good_grant_passes_and_survives_the_wire() -> None:
    checker = GrantChecker(SIGNER.public)
    g = grant()
    checker.check(g, "films", "movie.mkv", BOB_KEY)
    wired = Grant.from_wire(orjson.loads(orjson.dumps(g.to_wire())))
    GrantChecker(SIGNER.public).check(wired, "films", "movie.mkv", BOB_KEY)


def test_trackers_with_the_same_secret_sign_alike() -> None:
    other = GrantSigner(b"t" * 32)
    assert other.public == SIGNER.public
    GrantChecker(SIGNER.public).check(
        other.grant("bob", BOB_KEY, "films", "movie.mkv", 60), "films", "movie.mkv", BOB_KEY
    )


@pytest.mark.parametrize(("group", "file"), [("films", "other.mkv"), ("music", "movie.mkv")])
def test_a_grant_for_another_file(group: str, file: str) -> None:
    assert "another file" in refused(GrantChecker(SIGNER.public).check, grant(), group, file, BOB_KEY)


def test_a_grant_used_from_another_key_is_refused() -> None:
    # An old grant sniffed or kept: useless from any connection but the key it names.
    assert "another key" in refused(
        GrantChecker(SIGNER.public).check, grant(), "films", "movie.mkv", "m" * 40
    )


def test_expired_grants() -> None:
    checker = GrantChecker(SIGNER.public)
    g = grant()
    checker.check(g, "films", "movie.mkv", BOB_KEY, now=g.exp)  # the last valid instant
    assert "expired" in refused(checker.check, g, "films", "movie.mkv", BOB_KEY, now=g.exp + 1)
    assert "expired" in refused(checker.check, grant(lifetime=-1), "films", "movie.mkv", BOB_KEY)


def test_a_grant_from_another_tracker_is_refused() -> None:
    stranger = GrantSigner(b"x" * 32).grant("bob", BOB_KEY, "films", "movie.mkv", 60)
    assert "signature" in refused(GrantChecker(SIGNER.public).check, stranger, "films", "movie.mkv", BOB_KEY)


@pytest.mark.parametrize(
    "change",
    [
        {"user": "mallory"},
        {"exp": 10_000_000_000.0},
        {"issued": time.time() + 100},
        {"sig": "AAAA"},
        {"sig": "é"},
    ],
)
def test_tampered_grants_are_refused(change: dict[str, Any]) -> None:
    refused(GrantChecker(SIGNER.public).check, grant(**change), "films", "movie.mkv", BOB_KEY)


def test_tampering_after_a_good_check_is_still_caught() -> None:
    checker = GrantChecker(SIGNER.public)
    g = grant()
    checker.check(g, "films", "movie.mkv", BOB_KEY)  # remembered as good
    refused(checker.check, dataclasses.replace(g, key="m" * 40), "films", "movie.mkv", "m" * 40)


def test_a_malformed_tracker_key_is_refused() -> None:
    with pytest.raises(Refused) as info:
        GrantChecker("not base64!")
    assert info.value.code is Code.BAD_KEY


def test_revocations_cover_grants_issued_before_them() -> None:
    g = grant()
    assert Revocation(at=g.issued, key=BOB_KEY).covers(g)
    assert Revocation(at=g.issued + 1, user="bob", group="films").covers(g)
    assert Revocation(at=g.issued + 1, group="films", file="movie.mkv").covers(g)
    assert not Revocation(at=g.issued - 1, key=BOB_KEY).covers(g)  # a grant issued after (rejoined)
    assert not Revocation(at=g.issued + 1, user="carol", group="films").covers(g)
    assert not Revocation(at=g.issued + 1, user="bob", group="music").covers(g)
    assert not Revocation(at=g.issued + 1, key="m" * 40).covers(g)
