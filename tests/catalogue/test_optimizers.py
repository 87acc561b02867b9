"""The catalogue's optimizers on real servers: GUID tables switched by size under concurrent
commits (and GUIDs found in every table), row counts kept current without COUNT(*), the
LFN-table alarm, and what optimiserLogs keeps (SQLite and MariaDB)."""

from __future__ import annotations

import asyncio
import random

from jalien.catalogue.model import Replica, now_ms
from jalien.catalogue.optimiser_log import MariaDBOptimiserLog, SQLiteOptimiserLog
from jalien.catalogue.optimizers import GUID_TABLES, LFN_TABLES, CatalogueOptimizers
from jalien.catalogue.sharding import uuid1_at
from jalien.catalogue.sqlite_backend import SQLiteBackend
from tests.catalogue.test_backend import d, f


async def _mariadb(dsns, **kw):
    from jalien.catalogue.mariadb_backend import MariaDBBackend, MariaDBConfig

    config = MariaDBConfig(hosts=dsns, prefixes={"/alice/sim/": 1}, **kw)
    backend = MariaDBBackend(config)
    await backend.start()
    return backend


def rows(server, database, sql):
    conn = server.connect(database)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetchall()
    finally:
        conn.close()


async def test_guid_tables_switch_by_size_while_writers_commit(
    mariadb_dsns, mariadb_servers, tmp_path
):
    backend = await _mariadb(mariadb_dsns, index_ttl=0.2, guid_switch_margin=0.1)
    # a process that re-reads the index rarely: what it writes after a switch lands in
    # the old table, and must be found all the same
    stale = await _mariadb(mariadb_dsns, index_ttl=3600)
    journal = SQLiteOptimiserLog(tmp_path / "optimiser.db")
    await journal.start()
    optimizers = CatalogueOptimizers(backend, journal, guid_max_rows=40, lfn_max_rows=10**9)
    written: list[tuple[str, str]] = []
    stop = asyncio.Event()
    try:
        await backend.insert([d("/alice"), d("/alice/sim"), d("/alice/w")])

        async def writer(name: str, be) -> None:
            for i in range(10_000):
                if stop.is_set():
                    return
                guid = uuid1_at(now_ms(), clock_seq=random.getrandbits(14))
                path = f"/alice/{'sim' if i % 2 else 'w'}/{name}-{i}"
                await be.insert([f(path, 1, guid=guid)])
                await be.add_replicas([Replica(guid=guid, se="ALICE::T::SE", pfn=f"p/{guid}")])
                written.append((path, guid))

        writers = [
            asyncio.ensure_future(writer(n, be))
            for n, be in (("a", backend), ("b", backend), ("s", stale))
        ]
        tables = 1
        for _ in range(2000):  # bounded: the writers fill a table of 40 in well under a second
            await optimizers.guid_tables()
            await backend.reload()
            tables = len(backend._guids().shards)
            if tables >= 3 and backend._guids().newest.since < now_ms():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # writes into the newest table after its start
        stop.set()
        await asyncio.gather(*writers)
        assert tables >= 3, f"the GUID table switched {tables - 1} times"
        for path, guid in written:  # every GUID found, wherever its rows went
            assert [e.path for e in await backend.by_guid(guid)] == [path]
            assert [r.pfn for r in await backend.replicas(guid)] == [f"p/{guid}"]
        for path, guid in written[:50]:
            assert [e.path for e in await stale.by_guid(guid)] == [path]
        # every table took some, the newest holds what came after its start
        newest = backend._guids().newest
        counts = {c.table: c.rows for c in await backend.table_counts()}
        assert counts[newest.refs_table] > 0 and counts["G0L"] >= 40
        logs = await journal.last([GUID_TABLES], 100)
        assert any("new GUID table" in e.message for e in logs)
        # the deltas of two processes add up to the tables' real rows
        await stale.table_counts()
        counts = {c.table: c.rows for c in await backend.table_counts()}
        database = mariadb_servers.database
        for shard in backend._guids().shards:
            server = mariadb_servers.system if shard.host == 0 else mariadb_servers.second
            for table in (shard.refs_table, shard.pfn_table):
                real = rows(server, database, f"SELECT COUNT(*) FROM {table}")[0][0]
                assert counts[table] == real, table
    finally:
        stop.set()
        await journal.close()
        await stale.close()
        await backend.close()


async def test_counts_follow_writes_and_an_alarm_is_raised(mariadb_dsns, mariadb_servers):
    backend = await _mariadb(mariadb_dsns)
    journal = MariaDBOptimiserLog(mariadb_dsns[0])
    await journal.start()
    alarms = []
    optimizers = CatalogueOptimizers(
        backend, journal, guid_max_rows=10**9, lfn_max_rows=20, alarm=lambda c, n: alarms.append(c)
    )
    try:
        await backend.insert([d("/alice"), d("/alice/sim"), d("/alice/x")])
        await backend.insert([f(f"/alice/x/{i}", guid=uuid1_at(now_ms())) for i in range(30)])
        await backend.insert([f(f"/alice/sim/{i}") for i in range(5)])
        assert await backend.delete([f"/alice/x/{i}" for i in range(5)]) == 5
        await backend.move("/alice/x", "/alice/sim/x")  # 25 + 1 rows to the other server
        await backend.delete_tree("/alice/sim/x")
        await backend.insert([f(f"/alice/y{i}") for i in range(25)])
        await optimizers.lfn_tables()
        counts = {c.table: c for c in await backend.table_counts()}
        for shard in backend._lfn().shards:
            server = mariadb_servers.system if shard.host == 0 else mariadb_servers.second
            real = rows(server, mariadb_servers.database, f"SELECT COUNT(*) FROM {shard.sql_table}")
            assert counts[shard.sql_table].rows == real[0][0], shard
        root = backend._lfn().root.sql_table
        assert counts[root].rows == 27 and counts[root].prefix == "/"
        assert [a.table for a in alarms] == [root] and optimizers.over == {root: 27}
        (entry,) = await journal.last([LFN_TABLES], 1)
        assert entry.level == "alarm" and root in entry.message and "27 rows" in entry.message
    finally:
        await journal.close()
        await backend.close()
    # the log outlives the process: another one reads it
    again = MariaDBOptimiserLog(mariadb_dsns[0])
    await again.start()
    try:
        assert LFN_TABLES in await again.names()
    finally:
        await again.close()


async def test_the_embedded_catalogue_counts_and_alarms(tmp_path):
    backend = SQLiteBackend(tmp_path / "c.db")
    await backend.start()
    journal = SQLiteOptimiserLog(tmp_path / "optimiser.db")
    await journal.start()
    optimizers = CatalogueOptimizers(backend, journal, guid_max_rows=1, lfn_max_rows=3)
    try:
        await backend.insert([d("/a"), *(f(f"/a/{i}") for i in range(3))])
        await optimizers.guid_tables()  # nothing to switch: one replica table
        await optimizers.lfn_tables()
        assert optimizers.over == {"entries": 4}
        logs = await journal.last([], 5)
        assert [e.optimizer for e in logs] == [GUID_TABLES, LFN_TABLES]
        assert logs[1].level == "alarm"
    finally:
        await journal.close()
        await backend.close()
