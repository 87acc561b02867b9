"""A page of rows from SQLite straight to MessagePack: the pure-Python twin of rowpack_c.

A big listing's cost on the binary channel was Python objects: Python's sqlite3 makes an
object per value (100k entries of ``ls -l``: ~110 ms), each row then becomes a DirEntry
and the page is encoded again. ``rowpack_c`` steps the statement in C and writes each row
as the MessagePack array msgspec would write for its tuple (so a page decodes as
``list[DirEntry]``, the fields not read keeping their defaults); no row becomes a Python
object (SQLite's own walk of those rows: ~45 ms). This twin does the same with sqlite3 and
msgspec, byte for byte (tests/catalogue/test_rowpack.py).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

IMPLEMENTATION = "python"

_encode = msgspec.msgpack.Encoder().encode


def pack_rows(
    conn: sqlite3.Connection, sql: str, args: tuple[Any, ...], hide_dot: bool, skip_type: str
) -> tuple[bytes, int, int, Any]:
    """Run *sql* with *args* on *conn* (on the thread that owns it): its rows as one
    MessagePack array of arrays. Left out: rows whose first column is a text starting with
    "." (*hide_dot*), and rows whose second column is *skip_type* (unless it is "").
    Returns (the packed rows, how many were packed, how many were read, the first column of
    the last row read or None): a page's next one starts after that value."""
    if not isinstance(conn, sqlite3.Connection):
        raise TypeError(f"a sqlite3.Connection, not {type(conn).__name__}")
    rows = conn.execute(sql, args).fetchall()
    read = len(rows)
    last = rows[-1][0] if rows else None
    if hide_dot or skip_type:
        rows = [
            r
            for r in rows
            if not (hide_dot and type(r[0]) is str and r[0].startswith("."))
            and not (skip_type and len(r) > 1 and r[1] == skip_type)
        ]
    return _encode(rows), len(rows), read, last
