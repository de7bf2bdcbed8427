"""The whole command flow through real peer shells, and the refusals a user must see."""

from __future__ import annotations

import os

import pytest
from harness import PeerProc, Swarm, make_file, read

pytestmark = pytest.mark.slow


def test_accounts_groups_and_requests(swarm: Swarm) -> None:
    alice = swarm.peer("alice")
    bob = swarm.peer("bob")
    carol = swarm.peer("carol")
    dave = swarm.peer("dave")

    # Accounts.
    alice.refused("create_user alice other", "already exists")
    fresh = swarm.peer("erin", login=False)
    fresh.refused("login erin wrong-password", "wrong password")
    fresh.refused("login nobody pw", "no user 'nobody'")
    fresh.refused("list_groups", "log in first")
    fresh.ok("login erin pw-erin")
    fresh.refused("login erin pw-erin", "already logged in")

    # Groups: create, duplicate, join makes a request, not membership.
    assert "you are its admin" in alice.ok("create_group films").text
    bob.refused("create_group films", "already exists")
    bob.ok("join_group films")
    bob.refused("join_group films", "already pending")
    carol.ok("join_group films")
    dave.ok("join_group films")
    bob.refused("list_files films", "not a member")
    bob.refused("list_requests films", "only the admin")
    bob.refused("accept_request films carol", "only the admin")
    assert alice.ok("list_requests films").lines == ["bob", "carol", "dave"]
    alice.ok("accept_request films bob")
    alice.ok("accept_request films carol")
    alice.ok("reject_request films dave")
    alice.refused("accept_request films dave", "no pending request")
    alice.refused("accept_request nogroup bob", "no group 'nogroup'")
    bob.refused("join_group films", "already a member")
    assert "no pending requests" in alice.ok("list_requests films").text
    dave.refused("list_files films", "not a member")
    groups = bob.ok("list_groups").lines
    assert groups == ["films\tadmin=alice\tmembers=3\tmember"]

    # The admin leaves: the longest-standing member (bob, accepted first) takes over.
    assert "bob is now its admin" in alice.ok("leave_group films").text
    alice.refused("list_files films", "not a member")
    carol.refused("list_requests films", "only the admin")
    bob.ok("list_requests films")
    carol.ok("leave_group films")
    assert "deleted" in bob.ok("leave_group films").text
    bob.refused("list_files films", "no group 'films'")

    # Bad names never reach the tracker's tables.
    alice.refused("create_group ../etc", "bad group name")
    alice.refused("create_user 'bad name' pw", "bad user name")

    alice.ok("logout")
    alice.refused("list_groups", "log in first")


def test_share_download_and_stop(swarm: Swarm) -> None:
    alice = swarm.peer("alice", "--piece-size", "64K")
    bob = swarm.peer("bob")
    swarm.group(alice, "g", bob)
    src = os.path.join(swarm.tmp, "src", "report.pdf")
    data = make_file(src, 300_000)

    assert "5 pieces" in alice.ok(f"upload_file {src} g").text  # 300000 / 64 KiB
    assert alice.ok("list_files g").lines == ["report.pdf\t300000 bytes (293.0 KiB)\t1 online"]
    alice.refused(f"upload_file {swarm.tmp}/missing.bin g", "No such file")
    alice.refused(f"upload_file {swarm.tmp} g", "not a regular file")

    out = os.path.join(swarm.tmp, "bob-out")
    bob.ok(f"download_file g report.pdf {out}")
    bob.wait_for(r"download complete: \[g\] report.pdf")
    assert read(os.path.join(out, "report.pdf")) == data
    assert not os.path.exists(os.path.join(out, ".torrent-partial", "report.pdf"))
    assert bob.ok("show_downloads").lines == ["[C] [g] report.pdf"]
    # The downloaded copy is served at once: the file now has two online holders.
    assert alice.ok("list_files g").lines[0].endswith("2 online")
    bob.refused(f"download_file g report.pdf {out}", "already share")
    bob.refused(f"download_file g nothing.txt {swarm.tmp}/x", "no file 'nothing.txt'")
    bob.refused(f"download_file g ../escape {swarm.tmp}/x", "bad file name")

    # Stop sharing: the file stays listed while another member shares it.
    alice.ok("stop_share g report.pdf")
    alice.refused("stop_share g report.pdf", "do not share")
    assert bob.ok("list_files g").lines[0].endswith("1 online")
    assert "no one shares it" in bob.ok("stop_share g report.pdf").text
    assert bob.ok("list_files g").lines == ["no files in g"]


def test_same_name_other_content_is_refused(swarm: Swarm) -> None:
    alice = swarm.peer("alice")
    bob = swarm.peer("bob")
    swarm.group(alice, "g", bob)
    a, b = os.path.join(swarm.tmp, "a", "x.bin"), os.path.join(swarm.tmp, "b", "x.bin")
    make_file(a, 5000, seed=1)
    make_file(b, 5000, seed=2)
    alice.ok(f"upload_file {a} g")
    bob.refused(f"upload_file {b} g", "already shared with other content")
    make_file(b, 5000, seed=1)
    assert "one more holder" in bob.ok(f"upload_file {b} g").text


def test_logout_and_login_bring_shares_back(swarm: Swarm) -> None:
    alice = swarm.peer("alice")
    bob = swarm.peer("bob")
    swarm.group(alice, "g", bob)
    keep, change = os.path.join(swarm.tmp, "s", "keep.bin"), os.path.join(swarm.tmp, "s", "change.bin")
    make_file(keep, 10_000, seed=3)
    make_file(change, 10_000, seed=4)
    alice.ok(f"upload_file {keep} g")
    alice.ok(f"upload_file {change} g")
    assert sorted(bob.ok("list_files g").lines) == [
        "change.bin\t10000 bytes (9.8 KiB)\t1 online",
        "keep.bin\t10000 bytes (9.8 KiB)\t1 online",
    ]
    alice.ok("logout")
    assert all(line.endswith("0 online") for line in bob.ok("list_files g").lines)

    # The peer process stops; a new one from the same home logs in: shares come back,
    # except the file that changed on disk since it was shared.
    assert alice.finish() == 0
    with open(change, "r+b") as f:
        f.write(b"changed")
    again = PeerProc(swarm.tracker.endpoint, alice.home, name="alice2")
    swarm.procs.append(again)
    r = again.ok("login alice pw-alice")
    assert any("change.bin" in line and "changed since it was shared" in line for line in r.lines)
    online = dict(line.split("\t")[0::2] for line in bob.ok("list_files g").lines)
    assert online == {"change.bin": "0 online", "keep.bin": "1 online"}


def test_script_exit_status(swarm: Swarm) -> None:
    good = swarm.peer("alice")
    good.ok("create_group g")
    assert good.finish() == 0
    bad = swarm.peer("bob")
    bad.run("join_group no-such-group")
    assert bad.finish() == 1
