"""moveDirectory on two real MariaDB servers: a populated subtree moves to a table of its
own on the other server while writers and readers work on it (nothing lost, nothing
duplicated: a count and a checksum after), and a split killed with SIGKILL is rolled back
or finished by the next start."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from jalien.catalogue.backend import FindQuery, NotFound
from jalien.catalogue.model import now_ms
from jalien.catalogue.sharding import uuid1_at
from tests.catalogue.test_backend import collect, d, f

pytestmark = pytest.mark.cython_only  # no twin involved: the pure pass skips these servers' minute

BASE = "/alice/big/"
UNDER = f"WHERE dir >= '{BASE}' AND dir < '/alice/big0'"  # the subtree's rows in a table


async def _backend(dsns, **kw):
    from jalien.catalogue.mariadb_backend import MariaDBBackend, MariaDBConfig

    backend = MariaDBBackend(MariaDBConfig(hosts=dsns, **kw))
    await backend.start()
    return backend


async def subtree(backend) -> dict[str, tuple]:
    query = FindQuery(base=BASE, types=frozenset("fdcl"))
    return {e.path: (e.size, e.guid, e.type) for e in await collect(backend.find(query))}


def checksum(entries: dict[str, tuple]) -> str:
    return hashlib.sha256(json.dumps(sorted(entries.items())).encode()).hexdigest()


def count(server, database, table, where="") -> int:
    conn = server.connect(database)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {table} {where}")
        return cur.fetchone()[0]
    finally:
        conn.close()


async def populate(backend, n: int) -> None:
    await backend.insert([d("/alice"), d("/alice/big"), d("/alice/big/keep"), d("/alice/big/w")])
    for start in range(0, n, 1000):
        await backend.insert(
            [
                f(f"{BASE}keep/{i}", i, guid=uuid1_at(now_ms(), clock_seq=i % 16000))
                for i in range(start, min(n, start + 1000))
            ]
        )


async def test_a_subtree_moves_to_another_server_while_it_is_used(mariadb_dsns, mariadb_servers):
    backend = await _backend(mariadb_dsns, index_ttl=0.5, split_chunk=150, split_pause=0.005)
    try:
        await populate(backend, 1500)
        kept = await subtree(backend)  # never touched by the writers: always readable
        expected = dict(kept)
        stop = asyncio.Event()
        errors: list[str] = []
        reads = 0

        async def writer(name: str) -> None:
            i = 0
            while not stop.is_set():
                path = f"{BASE}w/{name}{i}"
                await backend.insert([f(path, i, guid=uuid1_at(now_ms(), clock_seq=i))])
                expected[path] = (i, (await backend.get(path)).guid, "f")
                if i % 3 == 2:  # and some go again, or are renamed
                    gone = f"{BASE}w/{name}{i - 1}"
                    await backend.delete([gone])
                    del expected[gone]
                elif i % 5 == 4:
                    old, new = f"{BASE}w/{name}{i - 2}", f"{BASE}w/{name}{i - 2}.renamed"
                    if old in expected:
                        await backend.move(old, new)
                        expected[new] = expected.pop(old)
                i += 1

        async def reader() -> None:
            nonlocal reads
            keys = list(kept)
            while not stop.is_set():
                path = random.choice(keys)
                entry = await backend.get(path)
                if entry is None or (entry.size, entry.guid) != kept[path][:2]:
                    errors.append(f"{path}: {entry}")
                pages = [p async for p in backend.list_dir(f"{BASE}keep/", page=500)]
                page = pages[0]
                if len(page) != 500:
                    errors.append(f"ls {BASE}keep/: {len(page)}")
                reads += 1

        tasks = [asyncio.ensure_future(c) for c in (writer("a"), writer("b"), reader(), reader())]
        await asyncio.sleep(0.2)
        done = await backend.move_directory(BASE, 1)
        await asyncio.sleep(0.2)  # the writers go on in the new table
        stop.set()
        await asyncio.gather(*tasks)
        assert not errors, errors[:5]
        assert reads > 10
        assert "entries moved" in done and "(host" in done
        shard = backend.route(BASE + "keep/0")
        assert shard.prefix == BASE and shard.host == backend.host_index(1)
        after = await subtree(backend)
        assert len(after) == len(expected) and checksum(after) == checksum(expected)
        # one copy of each: in the new table on server 2, none left in the old one
        database = mariadb_servers.database
        assert count(mariadb_servers.second, database, shard.sql_table) == len(expected)
        left = count(
            mariadb_servers.system,
            database,
            "L0L",
            f"WHERE dir >= '{BASE}' AND dir < '/alice/big0'",
        )
        assert left == 0
        guid = kept[BASE + "keep/7"][1]
        assert [e.path for e in await backend.by_guid(guid)] == [BASE + "keep/7"]
        counts = {c.table: c.rows for c in await backend.table_counts()}
        assert counts[shard.sql_table] == len(expected)
        assert counts["L0L"] == count(mariadb_servers.system, database, "L0L")
        # no trigger, log table or SPLITS row is left behind
        assert count(mariadb_servers.system, database, "SPLITS") == 0
        conn = mariadb_servers.system.connect(database)
        cur = conn.cursor()
        cur.execute("SHOW TRIGGERS")
        assert cur.fetchall() == ()
        conn.close()
        with pytest.raises(Exception, match="table of its own already"):
            await backend.move_directory(BASE, 0)
        with pytest.raises(NotFound):
            await backend.move("/alice/big/none", "/alice/big/none2")
    finally:
        await backend.close()


SPLIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from jalien.catalogue.mariadb_backend import MariaDBBackend, MariaDBConfig

    async def main():
        config = MariaDBConfig(hosts=sys.argv[1:3], index_ttl=float(sys.argv[3]),
                               split_chunk=50, split_pause=0.05)
        backend = MariaDBBackend(config)
        await backend.start()
        print("started", flush=True)
        await backend.move_directory("/alice/big/", 1)

    asyncio.run(main())
    """
)


def _state(mariadb_servers) -> str:
    conn = mariadb_servers.system.connect(mariadb_servers.database)
    try:
        cur = conn.cursor()
        cur.execute("SELECT state FROM SPLITS")
        row = cur.fetchone()
        return row[0] if row else ""
    finally:
        conn.close()


@pytest.mark.parametrize("when", ["copying", "switched"])
async def test_a_split_killed_midway_is_settled_by_the_next_start(
    mariadb_dsns, mariadb_servers, when
):
    backend = await _backend(mariadb_dsns, index_ttl=0.5)
    try:
        await populate(backend, 600)
        before = await subtree(backend)
    finally:
        await backend.close()
    ttl = "0.5" if when == "copying" else "60"  # switched: the kill comes while it waits
    proc = subprocess.Popen(
        [sys.executable, "-c", SPLIT_SCRIPT, *mariadb_dsns, ttl],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 60
        while _state(mariadb_servers) != when:
            assert proc.poll() is None and time.monotonic() < deadline, "the split never got there"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the dead process's lock is free: the next start settles the split
    backend = await _backend(mariadb_dsns, index_ttl=0.5)
    try:
        assert _state(mariadb_servers) == ""
        after = await subtree(backend)
        assert checksum(after) == checksum(before)
        shard = backend.route(BASE + "keep/0")
        database = mariadb_servers.database
        old = count(
            mariadb_servers.system,
            database,
            "L0L",
            f"WHERE dir >= '{BASE}' AND dir < '/alice/big0'",
        )
        if when == "copying":  # rolled back: the rows never left
            assert shard.prefix == "/" and old == len(before)
        else:  # finished: the rows are in the new table only
            assert shard.prefix == BASE and old == 0
            assert count(mariadb_servers.second, database, shard.sql_table) == len(before)
        await backend.insert([f(BASE + "keep/after")])  # no fence is left
        assert await backend.get(BASE + "keep/after") is not None
        conn = mariadb_servers.system.connect(database)
        cur = conn.cursor()
        cur.execute("SHOW TRIGGERS")
        assert cur.fetchall() == ()
        conn.close()
    finally:
        await backend.close()
