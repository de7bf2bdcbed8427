"""What the rules rely on from a store, checked on SQLite and PostgreSQL alike.

Values come back as the same Python types, failures surface as ``StoreError`` and leave the
store usable, a rolled-back batch leaves nothing behind, and a database made for another
schema version is refused with a message that says so.
"""

from __future__ import annotations

import pytest
from stores import Backend

from tracker.schema import SCHEMA_VERSION
from tracker.store import SchemaMismatch, StoreError


def test_values_come_back_as_the_same_python_types(backend: Backend) -> None:
    db = backend.open()
    db.run("INSERT INTO users VALUES (?,?,?,?)", "alice", b"\x00salt", b"\xffhash", 1.5)
    db.run("INSERT INTO groups VALUES (?,?,?)", "films", "alice", 2.0)
    db.run("INSERT INTO members VALUES (?,?,?)", "films", "alice", 2**40)
    row = db.one(
        """SELECT u.salt, u.hash, u.created, m.seq, (SELECT count(*) FROM members),
                  EXISTS(SELECT 1 FROM members WHERE uname=?), EXISTS(SELECT 1 FROM members WHERE uname=?)
           FROM users u JOIN members m ON m.uname = u.name""",
        "alice",
        "bob",
    )
    assert row is not None
    salt, digest, created, seq, count, yes, no = row
    assert (type(salt), type(digest)) == (bytes, bytes)  # not memoryview
    assert (salt, digest, created, seq, count) == (b"\x00salt", b"\xffhash", 1.5, 2**40, 1)
    assert (bool(yes), bool(no)) == (True, False)  # 1/0 on SQLite, True/False on PostgreSQL
    assert yes == 1 and no == 0


def test_names_sort_in_byte_order_on_both(backend: Backend) -> None:
    db = backend.open()
    names = ["b", "B", "a", "_x", "Z", "é", "ab"]
    db.many("INSERT INTO groups VALUES (?,?,0)", [(n, "admin") for n in names])
    assert [r[0] for r in db.all("SELECT name FROM groups ORDER BY name")] == sorted(names)


def test_run_counts_changed_rows_and_percent_signs_are_plain_text(backend: Backend) -> None:
    db = backend.open()
    db.many("INSERT INTO groups VALUES (?,?,0)", [("100%", "a"), ("50%", "a"), ("x", "b")])
    assert db.run("UPDATE groups SET admin='c' WHERE admin=?", "a") == 2
    assert db.run("DELETE FROM groups WHERE name LIKE '%\\%' ESCAPE '\\'") == 2
    assert db.run("DELETE FROM groups WHERE name=?", "nothing") == 0


def test_a_failed_statement_is_a_store_error_and_the_store_goes_on(backend: Backend) -> None:
    db = backend.open()
    with pytest.raises(StoreError):
        db.run("INSERT INTO no_such_table VALUES (?)", 1)
    db.run("INSERT INTO groups VALUES (?,?,0)", "films", "alice")
    with pytest.raises(StoreError):  # primary key
        db.run("INSERT INTO groups VALUES (?,?,0)", "films", "bob")
    db.begin()
    db.run("INSERT INTO groups VALUES (?,?,0)", "music", "bob")
    with pytest.raises(StoreError):
        db.one("SELECT nonsense FROM groups")
    db.rollback()
    assert db.all("SELECT name, admin FROM groups") == [("films", "alice")]


def test_rollback_and_savepoints_undo_what_they_cover(backend: Backend) -> None:
    db = backend.open()
    db.begin()
    db.run("INSERT INTO groups VALUES (?,?,0)", "kept", "a")
    db.savepoint()
    db.run("INSERT INTO groups VALUES (?,?,0)", "undone", "a")
    db.rollback_to()
    db.release()
    db.savepoint()
    db.run("INSERT INTO groups VALUES (?,?,0)", "released", "a")
    db.release()
    db.commit()
    db.begin()
    db.run("DELETE FROM groups")
    db.rollback()
    assert sorted(r[0] for r in db.all("SELECT name FROM groups")) == ["kept", "released"]


def test_another_schema_version_is_refused_clearly(backend: Backend) -> None:
    db = backend.open()
    db.run("UPDATE meta SET value=? WHERE name='schema_version'", str(SCHEMA_VERSION + 1))
    db.close()
    with pytest.raises(SchemaMismatch) as info:
        backend.open()
    assert str(info.value).startswith(
        f"database schema version {SCHEMA_VERSION + 1}, this tracker needs {SCHEMA_VERSION};"
    )
    assert isinstance(info.value, StoreError)  # the CLI reports it like any database failure
