"""The tracker's SQLite file: schema and connection settings.

WAL with synchronous=FULL: a commit is on disk (WAL fsynced) when COMMIT returns, and the tracker
replies only after that, so what it acknowledged survives kill -9 and power loss alike. The
server groups every write of one poll batch into one transaction, so one fsync covers many.
"""

from __future__ import annotations

import os
import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, salt BLOB NOT NULL, hash BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash BLOB PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY, admin TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
    user TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (grp, user));
CREATE TABLE IF NOT EXISTS requests (
    grp TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
    user TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (grp, user));
CREATE TABLE IF NOT EXISTS files (
    grp TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
    name TEXT NOT NULL, size INTEGER NOT NULL, piece_size INTEGER NOT NULL,
    root TEXT NOT NULL, hashes BLOB NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (grp, name));
CREATE TABLE IF NOT EXISTS shares (
    grp TEXT NOT NULL, name TEXT NOT NULL, user TEXT NOT NULL,
    PRIMARY KEY (grp, name, user),
    FOREIGN KEY (grp, name) REFERENCES files(grp, name) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS shares_by_user ON shares (user, grp);
"""


def connect(path: str) -> sqlite3.Connection:
    """Open (creating if needed) the state file; transactions are explicit (autocommit off)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.executescript(SCHEMA)
    return conn
