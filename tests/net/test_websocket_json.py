"""The JAliEn JSON personality over WebSocket + mutual TLS, driven by a plain client."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus


def url(server, host="127.0.0.1", path="/websocket/json"):
    host = f"[{host}]" if ":" in host else host
    return f"wss://{host}:{server.ports()['websocket']}{path}"


async def ask(ws, command, *options):
    await ws.send(json.dumps({"command": command, "options": list(options)}))
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def test_pwd_and_whoami(make_server, ssl_for):
    server = await make_server()
    async with ws_connect(url(server), ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
        pwd = await ask(ws, "pwd")
        assert pwd["metadata"]["exitcode"] == "0"
        assert pwd["metadata"]["currentdir"] == "/alice/cern.ch/user/j/jdoe/"
        assert pwd["metadata"]["user"] == "jdoe"
        assert pwd["results"][0]["message"] == "/alice/cern.ch/user/j/jdoe/"
        who = await ask(ws, "whoami", "-nomsg")
        assert who["results"] == [{"user": "jdoe"}]
        listing = await ask(ws, "commandlist")
        assert {"commandlist": "pwd", "message": "pwd"} in listing["results"]


async def test_malformed_input_keeps_connection(make_server, ssl_for):
    server = await make_server()
    async with ws_connect(url(server), ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
        for junk in ["this is not json", "{}", '{"command": 42}', "[1,2,3]", "\u00ff" * 10]:
            await ws.send(junk)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["metadata"]["exitcode"] == "22"
            assert "invalid JSON request" in reply["metadata"]["error"]
            assert reply["metadata"]["user"] == "jdoe"  # alien.py needs it on every reply
        await ws.send(b"\x00\x01 binary junk")
        assert json.loads(await ws.recv())["metadata"]["exitcode"] == "22"
        assert (await ask(ws, "pwd"))["metadata"]["exitcode"] == "0"


async def test_unknown_command_and_errors(make_server, ssl_for):
    server = await make_server()
    async with ws_connect(url(server), ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
        reply = await ask(ws, "nosuchcommand")
        assert reply["metadata"]["exitcode"] == "2"
        assert reply["metadata"]["error"].endswith("Command [nosuchcommand] not found!")
        assert reply["results"] == []


async def test_pipelined_replies_in_request_order(make_server, ssl_for):
    """alien.py pipelines up to 64 commits: answers must come back in request order."""
    server = await make_server()
    async with ws_connect(url(server), ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
        delays = [200, 0, 50, 0, 120, 0, 10]
        for ms in delays:
            if ms:
                await ws.send(json.dumps({"command": "sleep", "options": [str(ms)]}))
            else:
                await ws.send(json.dumps({"command": "ping", "options": []}))
        got = []
        for _ in delays:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 5))["results"][0]["message"])
        assert got == [str(ms) if ms else "pong" for ms in delays]


async def test_options_may_be_integers(make_server, ssl_for):
    server = await make_server()
    async with ws_connect(url(server), ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
        await ws.send('{"command": "sleep", "options": [5]}')
        assert json.loads(await ws.recv())["results"][0]["message"] == "5"


async def test_wrong_path_is_404(make_server, ssl_for):
    server = await make_server()
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(
            url(server, path="/other"), ssl=ssl_for("jdoe"), server_hostname="localhost"
        ):
            pass
    assert info.value.response.status_code == 404


async def test_too_big_message(make_server, ssl_for):
    from jalien.net.limits import Limits

    server = await make_server(limits=Limits(max_message_size=4096))
    async with ws_connect(  # uncompressed: a compressed one is test_deflate's
        url(server),
        ssl=ssl_for("jdoe"),
        server_hostname="localhost",
        max_size=None,
        compression=None,
    ) as ws:
        await ws.send(json.dumps({"command": "ping", "options": ["x" * 10000]}))
        with pytest.raises(Exception):  # noqa: B017 - closed by the server, any close code
            await asyncio.wait_for(ws.recv(), 5)
    # the server still serves others
    async with ws_connect(url(server), ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
        assert (await ask(ws, "ping"))["results"][0]["message"] == "pong"


async def test_ipv6(make_server, ssl_for):
    server = await make_server(hosts=("::1",))
    async with ws_connect(
        url(server, "::1"), ssl=ssl_for("jdoe"), server_hostname="localhost"
    ) as ws:
        assert (await ask(ws, "whoami"))["results"][0]["message"] == "jdoe"


async def test_refused_user_gets_no_session(make_server, ssl_for, server_log):
    server = await make_server()
    with pytest.raises(Exception):  # noqa: B017 - TLS alert or closed socket
        async with ws_connect(
            url(server), ssl=ssl_for("stranger"), server_hostname="localhost"
        ) as ws:
            await ask(ws, "pwd")
    for _ in range(50):
        if any("unknown user" in r.getMessage() for r in server_log.records):
            break
        await asyncio.sleep(0.02)
    assert any("unknown user" in r.getMessage() for r in server_log.records)


@pytest.mark.parametrize(("sent", "expected"), [(None, 1000), (1000, 1000), (1001, 1001)])
async def test_close_frame_answered_with_a_legal_code(make_server, ssl_for, sent, expected):
    """RFC 6455 7.4: a close frame without a status code is answered with 1000 (it was 0,
    which clients report as 1006); a code given is echoed."""
    server = await make_server()
    async with ws_connect(url(server), ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
        assert (await ask(ws, "ping"))["results"][0]["message"] == "pong"
        await asyncio.wait_for(ws.close(code=sent), 5)
        received = ws.protocol.close_rcvd  # None: the server's close frame was illegal
        assert received is not None
        assert received.code == expected
