"""The tracker's tables, written once for both stores.

Only the column types differ between SQLite and PostgreSQL (BLOB/BYTEA, REAL/DOUBLE
PRECISION; PostgreSQL's presence tables are UNLOGGED and its text sorts in byte order like
SQLite's), so the DDL is one text with the types filled in per dialect; every statement the
rules run is shared as is. Names avoid words PostgreSQL reserves (``user`` is ``uname``).
"""

from __future__ import annotations

import re

SCHEMA_VERSION = 5  # 2: root-only files; 3: key-bound sessions; 4: presence shared by trackers;
# 5: holder samples (serving.complete, serving.handed), trackers' processing times

_TYPES = {
    "sqlite": {"blob": "BLOB", "real": "REAL", "int": "INTEGER", "unlogged": ""},
    # Presence is rebuilt by heartbeats: no WAL for it (PostgreSQL empties it after a crash).
    "postgresql": {"blob": "BYTEA", "real": "DOUBLE PRECISION", "int": "BIGINT", "unlogged": "UNLOGGED "},
}

_DURABLE = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, salt {blob} NOT NULL, hash {blob} NOT NULL, created {real} NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash {blob} PRIMARY KEY,
    uname TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    key TEXT NOT NULL, created {real} NOT NULL);
CREATE TABLE IF NOT EXISTS login_failures (uname TEXT NOT NULL, at {real} NOT NULL);
CREATE INDEX IF NOT EXISTS login_failures_by_user ON login_failures (uname, at);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (uname);
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY, admin TEXT NOT NULL, created {real} NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
    uname TEXT NOT NULL, seq {int} NOT NULL, PRIMARY KEY (grp, uname));
CREATE INDEX IF NOT EXISTS members_by_seq ON members (grp, seq);
CREATE INDEX IF NOT EXISTS members_by_user ON members (uname);
CREATE TABLE IF NOT EXISTS requests (
    grp TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
    uname TEXT NOT NULL, created {real} NOT NULL, PRIMARY KEY (grp, uname));
CREATE TABLE IF NOT EXISTS files (
    grp TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
    name TEXT NOT NULL, size {int} NOT NULL, piece_size {int} NOT NULL,
    root TEXT NOT NULL, created {real} NOT NULL,
    PRIMARY KEY (grp, name));
CREATE TABLE IF NOT EXISTS shares (
    grp TEXT NOT NULL, name TEXT NOT NULL, uname TEXT NOT NULL,
    PRIMARY KEY (grp, name, uname),
    FOREIGN KEY (grp, name) REFERENCES files(grp, name) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS shares_by_user ON shares (uname, grp);
CREATE TABLE IF NOT EXISTS replies (
    cid TEXT NOT NULL, rid {int} NOT NULL, fp {blob} NOT NULL, header {blob} NOT NULL,
    at {real} NOT NULL, PRIMARY KEY (cid, rid));
CREATE INDEX IF NOT EXISTS replies_by_age ON replies (at);
"""

# Presence: rebuilt by heartbeats after a restart, so never worth an fsync.
_PRESENCE = """
CREATE {unlogged}TABLE IF NOT EXISTS {p}online (
    session {blob} PRIMARY KEY, uname TEXT NOT NULL, key TEXT NOT NULL, endpoint TEXT NOT NULL,
    plain {int} NOT NULL, tracker TEXT NOT NULL, route {blob} NOT NULL, seen {real} NOT NULL);
CREATE INDEX IF NOT EXISTS {p}online_by_tracker ON online (tracker, seen);
CREATE INDEX IF NOT EXISTS {p}online_by_seen ON online (seen);
CREATE INDEX IF NOT EXISTS {p}online_by_user ON online (uname);
CREATE INDEX IF NOT EXISTS {p}online_by_key ON online (key);
CREATE {unlogged}TABLE IF NOT EXISTS {p}serving (
    grp TEXT NOT NULL, name TEXT NOT NULL, session {blob} NOT NULL, have {blob},
    complete {int} NOT NULL DEFAULT 0, handed {int} NOT NULL DEFAULT 0,
    suspect {int} NOT NULL DEFAULT 0, PRIMARY KEY (grp, name, session));
CREATE INDEX IF NOT EXISTS {p}serving_by_session ON serving (session, grp);
DROP INDEX IF EXISTS {p}serving_sample;
CREATE INDEX IF NOT EXISTS {p}serving_listed ON serving (grp, name, suspect, complete, handed);
CREATE {unlogged}TABLE IF NOT EXISTS {p}trackers (id TEXT PRIMARY KEY, drained {real} NOT NULL);
CREATE {unlogged}TABLE IF NOT EXISTS {p}subscriptions (
    grp TEXT NOT NULL, name TEXT NOT NULL, tracker TEXT NOT NULL, route {blob} NOT NULL,
    until {real} NOT NULL, PRIMARY KEY (grp, name, tracker, route));
CREATE INDEX IF NOT EXISTS {p}subscriptions_by_until ON subscriptions (until);
CREATE {unlogged}TABLE IF NOT EXISTS {p}reports (
    grp TEXT NOT NULL, name TEXT NOT NULL, holder TEXT NOT NULL, reporter TEXT NOT NULL,
    piece {int} NOT NULL, at {real} NOT NULL, PRIMARY KEY (grp, name, holder, reporter, piece));
"""


def _statements(text: str, dialect: str, **subst: str) -> list[str]:
    if dialect == "postgresql":
        # Byte order, like SQLite's BINARY, whatever locale the database was created with, so
        # listings sorted by name come out the same on both stores.
        text = re.sub(r"\bTEXT\b", 'TEXT COLLATE "C"', text)
    return [s.strip().format(**subst, **_TYPES[dialect]) for s in text.split(";") if s.strip()]


def durable_ddl(dialect: str) -> list[str]:
    return _statements(_DURABLE, dialect)


def presence_ddl(dialect: str, prefix: str = "") -> list[str]:
    return _statements(_PRESENCE, dialect, p=prefix)
