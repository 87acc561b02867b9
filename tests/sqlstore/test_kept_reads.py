"""Kept answers of short reads (jalien.sqlstore.kept_reads): never older than the database.
Whatever commits - the store's own writer, another connection, another process (a second
jcentral worker on the same file) - the next lookup reads again."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from jalien.catalogue.model import Entry
from jalien.catalogue.sqlite_backend import SQLiteBackend
from jalien.sqlstore.kept_reads import MISSING, KeptReads
from jalien.sqlstore.sqlite import SQLiteStore

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT);"


def test_a_new_version_drops_everything_kept():
    version = [1]
    kept = KeptReads(lambda: version[0], max_items=3)
    assert kept.lookup("a") is MISSING
    kept.keep("a", 1)
    kept.keep("none", None)  # an absence is an answer too
    assert kept.lookup("a") == 1
    assert kept.lookup("none") is None
    version[0] = 2
    assert kept.lookup("a") is MISSING
    kept.keep("a", 2)
    assert kept.lookup("a") == 2
    for key in "bcd":  # bounded: the oldest goes first
        kept.keep(key, key)
    assert kept.lookup("a") is MISSING
    assert kept.lookup("d") == "d"
    assert kept.hits == 4


def test_a_store_that_is_not_open_keeps_nothing():
    kept = KeptReads(lambda: -1)
    kept.lookup("a")
    kept.keep("a", 1)
    assert kept.lookup("a") is MISSING


async def test_data_version_moves_with_every_commit_but_not_with_reads(tmp_path):
    store = SQLiteStore(tmp_path / "t.db", SCHEMA, inline_reads=True)
    await store.start()
    try:
        first = store.data_version()
        await store.read(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone(), short=True)
        assert store.data_version() == first
        await store.write(lambda c: c.execute("INSERT INTO t VALUES (1, 'a')"))  # own writer
        second = store.data_version()
        assert second != first
        other = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
        other.execute("INSERT INTO t VALUES (2, 'b')")  # another connection
        other.close()
        assert store.data_version() != second
    finally:
        await store.close()
    assert store.data_version() == -1


def _row(d: str, name: str, size: int) -> tuple:
    return (d, name, "f", "755", "jdoe", "jdoe", size, 1, "", "", 0)


async def test_the_backend_never_answers_older_than_a_commit_from_anywhere(tmp_path):
    db = tmp_path / "c.db"
    backend = SQLiteBackend(db, inline_reads=True, kept_reads=True)
    await backend.start()
    try:
        await backend.insert([Entry("/a/", "b", "d"), Entry("/a/b/", "f1", size=1)])
        assert (await backend.get("/a/b/f1")).size == 1
        assert [e.name for page in [p async for p in backend.list_dir("/a/b/")] for e in page] == [
            "f1"
        ]
        assert (await backend.get("/a/b/f1")).size == 1  # kept now
        many = await backend.get_many(["/a/b/f1", "/a/b/none"])
        assert list(many) == ["/a/b/f1"] and many["/a/b/f1"].size == 1
        assert backend._kept is not None and backend._kept.hits >= 1

        # another process (a second worker of the host) changes the file behind our back
        script = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute(\"UPDATE entries SET size=7 WHERE dir='/a/b/' AND name='f1'\"); "
            "c.execute('INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?)', "
            + repr(_row("/a/b/", "f2", 2))
            + ")"
        )
        subprocess.run([sys.executable, "-c", script, str(db)], check=True)
        assert (await backend.get_many(["/a/b/f1"]))["/a/b/f1"].size == 7
        assert (await backend.get("/a/b/f1")).size == 7
        listed = [e.name for page in [p async for p in backend.list_dir("/a/b/")] for e in page]
        assert listed == ["f1", "f2"]

        # and this store's own writer: an insert and a delete are seen at once
        assert await backend.get("/a/b/nope") is None
        await backend.insert([Entry("/a/b/", "nope")])
        assert await backend.get("/a/b/nope") is not None
        await backend.delete(["/a/b/nope"])
        assert await backend.get("/a/b/nope") is None
    finally:
        await backend.close()
