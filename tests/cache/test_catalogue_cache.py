"""The catalogue's find and whereis on the LMDB cache (as jcentral wires them), through a
real server: answers come from the cache, and the catalogue's writes invalidate them."""

from __future__ import annotations

import asyncio

import pytest

from jalien.cache.store import CacheStore
from jalien.cache.typed import TypedCache, cache_key
from jalien.catalogue.backend import FindQuery
from jalien.catalogue.model import Replica, StorageElement
from jalien.catalogue.service import Catalogue
from jalien.catalogue.sqlite_backend import SQLiteBackend
from jalien.commands.cache_cmds import CacheCommands
from jalien.commands.catalogue_cmds import CatalogueCommands, home_preparer
from jalien.roles.central_cache import NAMESPACES, catalogue_cache

HOME = "/alice/cern.ch/user/j/jdoe/"


class Admin:
    login = "admin"
    roles = ("admin",)


@pytest.fixture
async def lmdb_cat_server(make_server, tmp_path):
    store = CacheStore(tmp_path / "cache", policies=NAMESPACES)
    backend = SQLiteBackend(tmp_path / "catalogue.db")
    await backend.start()
    cat = Catalogue(backend, cache=catalogue_cache(store))

    def commands(table):
        CatalogueCommands(table, cat).register()
        CacheCommands(table, store).register()

    server = await make_server(add_commands=commands, prepare=home_preparer(cat))
    server.catalogue, server.store = cat, store
    yield server
    await backend.close()
    store.close()


def counters(store: CacheStore, ns: str) -> tuple[int, int]:
    stats = {s.name: s for s in store.stats()}.get(ns)
    return (stats.hits, stats.misses) if stats else (0, 0)


async def lfns(client, *words):
    reply = await client.call("find", *words)
    assert reply.exitcode == 0, reply.error
    return [r["lfn"] for r in reply.results]


async def test_find_is_cached_and_invalidated(lmdb_cat_server, connect):
    store = lmdb_cat_server.store
    c = await connect(lmdb_cat_server)
    await c.call("mkdir", "-p", "data/run1")
    await c.call("touch", "data/a.root", "data/run1/b.root", "data/c.txt")
    first = await lfns(c, "data", "*.root")
    assert first == [HOME + "data/a.root", HOME + "data/run1/b.root"]
    hits, _ = counters(store, "catalogue.find")
    assert await lfns(c, "data", "*.root") == first
    assert counters(store, "catalogue.find")[0] == hits + 1  # answered by the cache
    # another pattern is another key (the whole query is the key)
    assert await lfns(c, "data", "*.txt") == [HOME + "data/c.txt"]
    # a write below the find's base drops it...
    await c.call("touch", "data/run1/new.root")
    assert HOME + "data/run1/new.root" in await lfns(c, "data", "*.root")
    # ... and so do a removal, a move and a write above it
    await c.call("rm", "data/a.root")
    assert HOME + "data/a.root" not in await lfns(c, "data", "*.root")
    await c.call("mv", "data/run1/b.root", "data/b2.root")
    assert HOME + "data/b2.root" in await lfns(c, "data", "*.root")
    await lfns(c, "data/run1", "*.root")
    await c.call("rm", "-r", "data")
    assert (await c.call("find", "data/run1", "*.root")).exitcode != 0
    # committed: what the server cached and dropped is in the shared store
    await asyncio.wrap_future(store.flush())
    assert store.check() == []


async def test_whereis_is_cached_and_invalidated(lmdb_cat_server, connect):
    cat, store = lmdb_cat_server.catalogue, lmdb_cat_server.store
    c = await connect(lmdb_cat_server)
    await c.call("touch", "w.root")
    await cat.backend.put_se(StorageElement(name="ALICE::CERN::EOS", url="root://eos//grid"))
    await cat.backend.put_se(StorageElement(name="ALICE::GSI::SE2", url="root://gsi//grid"))
    entry = await cat.get(HOME + "w.root")
    await cat.add_replica(Admin(), HOME + "w.root", "ALICE::CERN::EOS", "root://eos//grid/1")
    where = await c.call("whereis", "w.root")
    assert [r["seName"] for r in where.results] == ["ALICE::CERN::EOS"]
    hits, _ = counters(store, "catalogue.whereis")
    await c.call("whereis", "w.root")
    assert counters(store, "catalogue.whereis")[0] == hits + 1
    cached = store.get("catalogue.whereis", cache_key(HOME + "w.root"))
    assert cached is not None  # msgpack of the Replica structs
    # a replica added through the catalogue drops the cached answer
    await cat.add_replica(Admin(), HOME + "w.root", "ALICE::GSI::SE2", "root://gsi//grid/1")
    where = await c.call("whereis", "w.root")
    assert sorted(r["seName"] for r in where.results) == ["ALICE::CERN::EOS", "ALICE::GSI::SE2"]
    assert entry.guid


async def test_typed_values_round_trip(tmp_path):
    store = CacheStore(tmp_path / "cache", policies=NAMESPACES, writer=False)
    try:
        cache = catalogue_cache(store)
        replicas = [Replica(guid="g", se="SE", pfn="root://x/1")]
        assert cache.get("whereis", "/a/f") is None
        cache.put("whereis", "/a/f", replicas, "/a/f")
        store.run_once()
        assert cache.get("whereis", "/a/f") == replicas
        long_key = "/a/" + "x" * 1000  # hashed into an LMDB-sized key
        cache.put("whereis", long_key, replicas, "/a")
        assert cache.get("whereis", long_key) == replicas
        # a value stored under another type is a miss, not an error
        store.set("catalogue.whereis", cache_key("/a/g"), b"\x93\x01\x02\x03")
        assert cache.get("whereis", "/a/g") is None and cache.undecodable == 1
    finally:
        store.close()


async def test_an_answer_computed_across_a_write_is_not_kept(tmp_path):
    store = CacheStore(tmp_path / "cache", policies=NAMESPACES, writer=False)
    try:
        cache: TypedCache = catalogue_cache(store)
        assert cache.get("whereis", "/a/b/f") is None  # a miss: the catalogue reads its DB
        cache.invalidate("/a/b/f")  # meanwhile a write of that file
        cache.put("whereis", "/a/b/f", [], "/a/b/f")  # the answer may predate the write
        assert cache.get("whereis", "/a/b/f") is None and cache.raced == 1
        assert cache.get("whereis", "/a/c/f") is None
        cache.invalidate("/a/b")  # a write elsewhere does not matter
        cache.put("whereis", "/a/c/f", [], "/a/c/f")
        assert cache.get("whereis", "/a/c/f") == []
    finally:
        store.close()


async def test_find_keys_do_not_depend_on_the_process(tmp_path):
    """A key names the query the same way in every process that shares the store."""
    import json
    import subprocess
    import sys

    query = FindQuery(base="/a/", lfn_like="%.root", types=frozenset("fdcl"))
    code = (
        "import json, msgspec\n"
        "from jalien.catalogue.backend import FindQuery\n"
        "q = FindQuery(base='/a/', lfn_like='%.root', types=frozenset('fdcl'))\n"
        "f = msgspec.structs.asdict(q); f['types'] = sorted(q.types)\n"
        "print(json.dumps(f, sort_keys=True))\n"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(3)
    }
    assert len(outs) == 1
    assert json.loads(outs.pop())["lfn_like"] == query.lfn_like
