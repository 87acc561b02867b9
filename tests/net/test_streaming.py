"""Streamed replies: many frames on one stream (binary) or one fragmented JSON message
(WebSocket), through a proxy level too; an error mid-stream ends it with an exit code."""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.client import connect as ws_connect

from jalien.wire.messages import Request
from tests.net.test_proxy import start_level


async def test_binary_stream_merged_and_paged(make_server, connect):
    client = await connect(await make_server())
    reply = await client.call("pages", "5", "1000")
    assert reply.exitcode == 0
    assert len(reply.results) == 5000
    assert reply.results[-1]["message"] == "p4r999"
    pages = [
        len(p.results)
        async for p in client.main.stream(Request(command="pages", options=["3", "10"]))
    ]
    assert pages == [10, 10, 10]


async def test_error_mid_stream(make_server, connect):
    client = await connect(await make_server())
    reply = await client.call("pages", "2", "3", "disk on fire")
    assert (reply.exitcode, reply.error) == (5, "disk on fire")
    assert len(reply.results) == 6
    assert (await client.call("whoami")).exitcode == 0


async def test_websocket_stream_is_one_message(make_server, ssl_for):
    server = await make_server()
    uri = f"wss://127.0.0.1:{server.ports()['websocket']}/websocket/json"
    async with ws_connect(
        uri, ssl=ssl_for("jdoe"), server_hostname="localhost", max_size=None
    ) as ws:
        await ws.send(json.dumps({"command": "pages", "options": ["4", "500"]}))
        await ws.send(json.dumps({"command": "ping", "options": []}))
        await ws.send(json.dumps({"command": "pages", "options": ["0", "1"]}))
        await ws.send(json.dumps({"command": "pages", "options": ["1", "2", "oops"]}))
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert len(first["results"]) == 2000 and first["metadata"]["exitcode"] == "0"
        assert first["metadata"]["user"] == "jdoe"
        assert json.loads(await ws.recv())["results"][0]["message"] == "pong"
        empty = json.loads(await ws.recv())
        assert empty["results"] == [] and empty["metadata"]["exitcode"] == "0"
        failed = json.loads(await ws.recv())
        assert failed["metadata"]["exitcode"] == "5" and len(failed["results"]) == 2


async def test_stream_through_a_level(make_server, connect, grid_pki, ssl_for):
    central = await make_server()
    level, _, upstream = await start_level(make_server, grid_pki, central, "jdoe")
    try:
        client = await connect(level)
        reply = await client.call("pages", "3", "700")
        assert len(reply.results) == 2100
        uri = f"wss://127.0.0.1:{level.ports()['websocket']}/websocket/json"
        async with ws_connect(uri, ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
            await ws.send(json.dumps({"command": "pages", "options": ["2", "5", "late"]}))
            doc = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert len(doc["results"]) == 10 and doc["metadata"]["exitcode"] == "5"
    finally:
        await upstream.close()


async def test_client_gone_mid_stream_stops_server_work(make_server, connect):
    server = await make_server()
    client = await connect(server)
    it = client.main.stream(Request(command="pages", options=["100000", "10"]))
    await it.__anext__()
    await it.aclose()  # sends Cancel
    await client.close()
    for _ in range(100):
        if not any(c._tasks for c in server.connections):
            break
        await asyncio.sleep(0.01)
    assert not any(c._tasks for c in server.connections)
