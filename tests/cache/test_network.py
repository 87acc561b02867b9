"""The cache commands through a real server (mutual TLS, binary channel and WebSocket JSON):
bytes in Request.data and Reply.data, multi-get, pipelining, refusals, roles, cachestats."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect as ws_connect

from jalien.cache.client import RemoteCache
from jalien.cache.store import CacheStore, Policy
from jalien.commands.cache_cmds import CacheCommands
from jalien.wire.errors import RequestError
from jalien.wire.messages import Request


@pytest.fixture
async def cache_server(make_server, tmp_path):
    store = CacheStore(tmp_path / "cache", policies={"catalogue.find": Policy(private=True)})
    server = await make_server(add_commands=lambda table: CacheCommands(table, store).register())
    server.store = store
    yield server
    store.close()


async def test_get_set_delete_and_multi_get(cache_server, connect):
    cache = RemoteCache(await connect(cache_server, "jdoe"))
    binary = bytes(range(256)) * 10  # any bytes, not text
    await cache.set("ns", b"\x00\xffkey", binary, ttl=60)
    assert await cache.get("ns", b"\x00\xffkey") == binary
    assert await cache.get("ns", b"missing") is None
    await cache.set_many("ns", [(b"a", b"1"), (b"b", b"2")], scope="/alice/x")
    assert await cache.get_many("ns", [b"a", b"zz", b"b"]) == [b"1", None, b"2"]
    await cache.delete("ns", b"a", b"zz")
    assert await cache.get_many("ns", [b"a", b"b"]) == [None, b"2"]
    await cache.invalidate("/alice/x/y")
    assert await cache.get("ns", b"b") is None
    await cache.set("ns", b"nx", b"first", if_absent=True, sync=True)
    await cache.set("ns", b"nx", b"second", if_absent=True, sync=True)
    assert await cache.get("ns", b"nx") == b"first"
    # what the server wrote is in the shared store, committed
    await asyncio.wrap_future(cache_server.store.flush())
    assert cache_server.store.get("ns", b"\x00\xffkey") == binary


async def test_pipelined_requests_on_one_connection(cache_server, connect):
    client = await connect(cache_server, "jdoe")
    cache = RemoteCache(client)
    await cache.set_many("pipe", [(b"k%d" % i, b"v%d" % i) for i in range(300)])
    values = await asyncio.gather(*(cache.get("pipe", b"k%d" % i) for i in range(300)))
    assert values == [b"v%d" % i for i in range(300)]
    # raw replies: no session metadata on the hot path
    reply = await client.request(Request(command="cache.get", options=["pipe"], data=[b"k1"]))
    assert reply.data == [b"v1"] and reply.metadata == {}


async def test_text_form_for_shells(cache_server, connect):
    client = await connect(cache_server, "jdoe")
    done = await client.call("cache.set", "words", "-ttl", "30", "greeting", "hello")
    assert done.exitcode == 0
    reply = await client.call("cache.get", "words", "greeting")
    assert reply.results == [{"key": "greeting", "value": "hello", "message": "hello"}]
    missing = await client.call("cache.get", "words", "greeting", "nope")
    assert missing.exitcode == 2 and missing.error == "not in cache words: nope"
    assert len(missing.results) == 1
    assert (await client.call("cache.set", "words", "odd")).exitcode == 22
    assert (await client.call("cache.set", "words", "-ttl", "soon", "k", "v")).exitcode == 22
    assert (await client.call("cache.get")).exitcode == 22


async def test_refusals_travel_as_exit_codes(cache_server, connect):
    cache = RemoteCache(await connect(cache_server, "jdoe"))
    with pytest.raises(RequestError, match="longer than 511") as err:
        await cache.set("ns", b"k" * 512, b"v")
    assert err.value.exitcode == 90
    with pytest.raises(RequestError, match="bad cache namespace") as err:
        await cache.get("no spaces", b"k")
    assert err.value.exitcode == 22
    with pytest.raises(RequestError, match="empty"):
        await cache.get("ns", b"")
    with pytest.raises(RequestError, match="absolute path"):
        await cache.set("ns", b"k", b"v", scope="relative")
    with pytest.raises(RequestError, match="larger than"):
        await cache.set("ns", b"k", bytes(5 << 20))


async def test_only_cache_and_admin_roles(cache_server, connect):
    cache = RemoteCache(await connect(cache_server, "alice"))  # role "users" only
    for call in (
        cache.get("ns", b"k"),
        cache.set("ns", b"k", b"v"),
        cache.delete("ns", b"k"),
        cache.invalidate("/alice"),
    ):
        with pytest.raises(RequestError, match="Permission denied") as err:
            await call
        assert err.value.exitcode == 13
    client = await connect(cache_server, "alice")
    assert (await client.call("cachestats")).exitcode == 13


async def test_cachestats(cache_server, connect):
    client = await connect(cache_server, "jdoe")
    cache = RemoteCache(client)
    await cache.set("stats", b"k", b"v", sync=True)
    await cache.get("stats", b"k")
    await cache.get("stats", b"absent")
    reply = await client.call("cachestats", "-check")
    assert reply.exitcode == 0
    row = next(r for r in reply.results if r["namespace"] == "stats")
    assert (row["entries"], row["hits"], row["misses"], row["policy"]) == ("1", "1", "1", "lru")
    assert "consistency: ok" in reply.results[-1]["message"]
    assert reply.results[0]["message"].startswith("namespace")


async def test_json_clients_get_metadata(cache_server, ssl_for, connect):
    port = cache_server.ports()["websocket"]
    async with ws_connect(
        f"wss://127.0.0.1:{port}/websocket/json", ssl=ssl_for("jdoe"), server_hostname="localhost"
    ) as ws:
        await ws.send(json.dumps({"command": "cache.set", "options": ["json", "k", "v"]}))
        done = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert done["metadata"]["exitcode"] == "0" and done["metadata"]["user"] == "jdoe"
        await ws.send(json.dumps({"command": "cache.get", "options": ["json", "k"]}))
        got = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert got["results"][0]["value"] == "v" and got["metadata"]["currentdir"]
    # the JSON session's metadata stays with its own replies
    client = await connect(cache_server, "jdoe")
    reply = await client.request(Request(command="cache.set", options=["json"], data=[b"k", b"w"]))
    assert reply.exitcode == 0 and reply.metadata == {}
