"""The upstream proxy building block: clients of a level reach central through it."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect as ws_connect

from jalien.auth.tls import client_context
from jalien.net.client import Client
from jalien.net.proxy import TTLReplyCache, UpstreamProxy


async def start_level(make_server, grid_pki, central, login, cache=None):
    cred = grid_pki.users[login]
    upstream = Client(
        "127.0.0.1",
        central.ports()["binary"],
        client_context(cred.cert, cred.key, grid_pki.ca_dir),
    )
    await upstream.connect()
    proxy = UpstreamProxy(upstream, cache)
    return await make_server(handler=proxy), proxy, upstream


async def test_same_user_through_a_level(make_server, connect, grid_pki):
    """jBox: the level connects as the user; local clients get their own sessions."""
    central = await make_server()
    level, _, upstream = await start_level(make_server, grid_pki, central, "jdoe")
    try:
        a = await connect(level)
        b = await connect(level)
        ra, rb = await asyncio.gather(a.call("whoami"), b.call("sleep", "50"))
        assert ra.results[0]["message"] == "jdoe"
        assert ra.metadata["currentdir"] == "/alice/cern.ch/user/j/jdoe/"
        assert rb.results[0]["message"] == "50"
        assert len(upstream.channels) == 3  # its own + one per local client
        err = await a.call("fail")
        assert (err.exitcode, err.error) == (2, "No such file or directory")
    finally:
        await upstream.close()


async def test_websocket_client_through_a_level(make_server, ssl_for, grid_pki):
    central = await make_server()
    level, _, upstream = await start_level(make_server, grid_pki, central, "jdoe")
    try:
        uri = f"wss://127.0.0.1:{level.ports()['websocket']}/websocket/json"
        async with ws_connect(uri, ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
            await ws.send(json.dumps({"command": "pwd", "options": []}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["metadata"]["currentdir"] == "/alice/cern.ch/user/j/jdoe/"
            assert reply["results"][0]["message"] == "/alice/cern.ch/user/j/jdoe/"
    finally:
        await upstream.close()


async def test_other_users_need_the_proxy_role(make_server, connect, grid_pki):
    central = await make_server()
    # a level without the proxy role cannot act for alice
    level, _, upstream = await start_level(make_server, grid_pki, central, "jdoe")
    try:
        alice = await connect(level, login="alice")
        reply = await alice.call("whoami", timeout=5)
        assert reply.exitcode != 0
    finally:
        await upstream.close()
    # the VoBox identity carries the proxy role: alice is served as alice
    level2, _, upstream2 = await start_level(make_server, grid_pki, central, "vobox")
    try:
        alice = await connect(level2, login="alice")
        assert (await alice.call("whoami")).results[0]["message"] == "alice"
        jdoe = await connect(level2, login="jdoe")
        assert (await jdoe.call("whoami")).results[0]["message"] == "jdoe"
    finally:
        await upstream2.close()


async def test_level_cache(make_server, connect, grid_pki):
    central = await make_server()
    cache = TTLReplyCache({"version": 60.0})
    level, _, upstream = await start_level(make_server, grid_pki, central, "jdoe", cache)
    try:
        client = await connect(level)
        first = await client.call("version")
        second = await client.call("version")
        assert first.results == second.results
        assert (cache.hits, cache.misses) == (1, 1)
        await client.call("whoami")
        await client.call("whoami")
        assert cache.hits == 1  # whoami is not cacheable
    finally:
        await upstream.close()


async def test_events_reach_the_client_through_the_level(make_server, connect, grid_pki):
    central = await make_server()
    level, _, upstream = await start_level(make_server, grid_pki, central, "jdoe")
    events = []
    try:
        client = await connect(level, on_event=lambda ch, ev: events.append(ev))
        await client.call("notify", "stop")
        for _ in range(100):
            if events:
                break
            await asyncio.sleep(0.01)
        assert events and events[0].topic == "kill"
    finally:
        await upstream.close()


async def test_upstream_down_gives_clear_error(make_server, connect, grid_pki):
    central = await make_server()
    level, _, upstream = await start_level(make_server, grid_pki, central, "jdoe")
    upstream.reconnect = False
    try:
        client = await connect(level)
        assert (await client.call("whoami")).exitcode == 0
        await central.close()
        for _ in range(100):
            if not upstream.connected:
                break
            await asyncio.sleep(0.01)
        reply = await client.call("whoami", timeout=5)
        assert reply.exitcode == 107
        assert "connect" in reply.error
    finally:
        await upstream.close()
