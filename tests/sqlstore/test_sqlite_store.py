"""The SQLite store hands back data, never cursors: a cursor dropped later on the event
loop's thread finalises its statement on a connection another thread is using, which SQLite
reports as misuse (seen as about one lost commit in a thousand under 32 parallel uploads)."""

from __future__ import annotations

import asyncio
import gc

from jalien.sqlstore.sqlite import SQLiteStore

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT);"


async def test_operations_returning_cursors_get_none(tmp_path):
    store = SQLiteStore(tmp_path / "t.db", SCHEMA)
    await store.start()
    try:
        assert await store.write(lambda c: c.execute("INSERT INTO t VALUES (1, 'a')")) is None
        assert await store.read(lambda c: c.execute("SELECT v FROM t")) is None
        assert await store.read(lambda c: c.execute("SELECT v FROM t").fetchall()) == [("a",)]
        # many writers whose results are dropped at once, beside readers: nothing fails
        writes = [
            store.write(lambda c, i=i: c.execute("INSERT INTO t VALUES (?, 'x')", (i,)))
            for i in range(2, 2000)
        ]
        reads = [
            store.read(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()) for _ in range(200)
        ]
        await asyncio.gather(*writes, *reads)
        gc.collect()
        count = await store.read(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0])
        assert count == 1999
    finally:
        await store.close()
