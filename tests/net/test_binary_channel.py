"""The binary channel over mutual TLS: commands, concurrency, push, cancel, bad input."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from jalien.net.client import ConnectionLost, RequestTimeout
from jalien.net.limits import Limits
from jalien.wire import codec, framing
from jalien.wire.messages import Request


async def test_session_commands(make_server, connect):
    server = await make_server()
    client = await connect(server)
    reply = await client.call("whoami")
    assert reply.exitcode == 0
    assert reply.results[0]["message"] == "jdoe"
    assert reply.metadata["currentdir"] == "/alice/cern.ch/user/j/jdoe/"
    assert reply.metadata["user"] == "jdoe"
    pwd = await client.call("pwd")
    assert pwd.results[0]["message"] == "/alice/cern.ch/user/j/jdoe/"
    names = [r["commandlist"] for r in (await client.call("commandlist")).results]
    assert {"commandlist", "whoami", "pwd", "ping", "motd", "version", "uptime"} <= set(names)
    for command in ("ping", "motd", "version", "uptime"):
        assert (await client.call(command)).exitcode == 0


async def test_errors_become_exit_codes(make_server, connect):
    client = await connect(await make_server())
    unknown = await client.call("no-such-command")
    assert unknown.exitcode == 2
    assert unknown.error == "No such file or directory : Command [no-such-command] not found!"
    failed = await client.call("fail")
    assert (failed.exitcode, failed.error) == (2, "No such file or directory")
    crashed = await client.call("crash")
    assert crashed.exitcode == 121 and "ZeroDivisionError" in crashed.error
    assert (await client.call("whoami")).exitcode == 0  # still serving


async def test_replies_out_of_order(make_server, connect):
    client = await connect(await make_server())
    done: list[str] = []

    async def call(ms: int) -> None:
        reply = await client.call("sleep", str(ms))
        done.append(reply.results[0]["message"])

    await asyncio.gather(call(300), call(10), call(150))
    assert done == ["10", "150", "300"]


async def test_many_concurrent_requests(make_server, connect):
    client = await connect(await make_server())
    replies = await asyncio.gather(*(client.call("ping") for _ in range(3000)))
    assert all(r.exitcode == 0 for r in replies)


async def test_push_event(make_server, connect):
    events = []
    client = await connect(await make_server(), on_event=lambda ch, ev: events.append((ch, ev)))
    await client.call("notify", "payload", "killed")
    for _ in range(50):
        if events:
            break
        await asyncio.sleep(0.01)
    assert events[0][0] == 0
    assert events[0][1].topic == "kill"
    assert events[0][1].payload == {"reason": "payload killed"}


async def test_timeout_cancels_server_work(make_server, connect):
    server = await make_server()
    client = await connect(server)
    with pytest.raises(RequestTimeout):
        await client.call("sleep", "5000", timeout=0.2)
    for _ in range(100):
        if server.test_commands.cancelled:
            break
        await asyncio.sleep(0.01)
    assert server.test_commands.cancelled == 1


@pytest.mark.parametrize("compress_local", [False, True])
async def test_large_replies_compressed_only_across_a_network(
    make_server, connect, monkeypatch, compress_local
):
    """Frames above the threshold are compressed, but not to a peer on this host
    (net.peers: a byte there costs a copy, zlib only CPU); compress_local compresses them
    too, as a peer across a network gets them."""
    inflated: list[int] = []
    real = framing.decompress
    counted = lambda body: inflated.append(len(body)) or real(body)  # noqa: E731
    monkeypatch.setattr(framing, "decompress", counted)
    client = await connect(await make_server(limits=Limits(compress_local=compress_local)))
    reply = await client.call("big", "50000")
    assert len(reply.results) == 50000
    assert reply.results[-1]["message"] == "/alice/file0049999.root"
    assert bool(inflated) is compress_local


async def test_ipv6(make_server, connect):
    server = await make_server(hosts=("::1",))
    client = await connect(server, host="::1")
    assert (await client.call("whoami")).results[0]["message"] == "jdoe"


async def test_proxy_certificate_maps_to_user(make_server, connect):
    client = await connect(await make_server(), login="jdoe-proxy")
    assert (await client.call("whoami")).results[0]["message"] == "jdoe"


@pytest.mark.parametrize(
    ("login", "reason"),
    [
        ("foreigner", "unable to get local issuer certificate"),
        ("old", "certificate has expired"),
        ("stranger", "unknown user"),
        ("mallory", "revoked"),
    ],
)
async def test_refused_with_reason_in_log(make_server, ssl_for, server_log, login, reason):
    from jalien.net.client import Client

    server = await make_server()
    client = Client("127.0.0.1", server.ports()["binary"], ssl_for(login), reconnect=False)
    with pytest.raises(ConnectionLost):
        await client.connect()
        await client.call("whoami", timeout=5)
    await client.close()
    for _ in range(100):
        if any(reason in r.getMessage() for r in server_log.records):
            break
        await asyncio.sleep(0.02)
    refusals = [r.getMessage() for r in server_log.records if "refused" in r.getMessage()]
    assert any(reason in m for m in refusals), refusals
    # and the server keeps serving others
    assert server.connection_count == 0


async def _raw_tls(server, ssl_for):
    return await asyncio.open_connection(
        "127.0.0.1", server.ports()["binary"], ssl=ssl_for("jdoe"), server_hostname="localhost"
    )


async def test_garbage_closes_only_that_connection(make_server, connect, ssl_for, server_log):
    server = await make_server()
    good = await connect(server)
    reader, writer = await _raw_tls(server, ssl_for)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    writer.close()
    assert any("bad magic" in r.getMessage() for r in server_log.records)
    assert (await good.call("whoami")).exitcode == 0


async def test_bad_message_gets_error_reply(make_server, ssl_for):
    server = await make_server()
    reader, writer = await _raw_tls(server, ssl_for)
    writer.write(framing.encode_frame(1, b"\xc1 not msgpack"))
    writer.write(framing.encode_frame(2, codec.encode_msgpack(Request(command="pwd"))))
    decoder = framing.FrameDecoder()
    frames = []
    while len(frames) < 2:
        frames += decoder.feed(await asyncio.wait_for(reader.read(65536), 5))
    replies = {sid: codec.decode_msgpack(body) for sid, _, body in frames}
    assert replies[1].exitcode == 22 and "bad message" in replies[1].error
    assert replies[2].exitcode == 0
    writer.close()


async def test_oversized_frame_closes_connection(make_server, ssl_for, server_log):
    server = await make_server(limits=Limits(max_message_size=1000))
    reader, writer = await _raw_tls(server, ssl_for)
    writer.write(framing.encode_frame(1, b"x" * 2000, compress_threshold=0))
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert any("exceeds the limit" in r.getMessage() for r in server_log.records)
    writer.close()


async def test_max_connections(make_server, connect, ssl_for, server_log):
    from jalien.net.client import Client

    server = await make_server(limits=Limits(max_connections=1))
    await connect(server)
    extra = Client("127.0.0.1", server.ports()["binary"], ssl_for("jdoe"), reconnect=False)
    with pytest.raises((ConnectionLost, ssl.SSLError, ConnectionError)):
        await extra.connect()
        await extra.call("whoami", timeout=5)
    await extra.close()
    assert any("too many connections" in r.getMessage() for r in server_log.records)


async def test_idle_connection_closed(make_server, connect, server_log):
    server = await make_server(limits=Limits(idle_timeout=0.2))
    client = await connect(server, reconnect=False)
    for _ in range(100):
        if not client.connected:
            break
        await asyncio.sleep(0.02)
    assert not client.connected
    assert any("idle" in r.getMessage() for r in server_log.records)


async def test_client_reconnects(make_server, connect):
    server = await make_server()
    client = await connect(server, backoff=(0.05, 0.2))
    assert (await client.call("whoami")).exitcode == 0
    for conn in list(server.connections):
        conn.transport.close()
    for _ in range(100):  # a request in flight when the link drops fails (exit 107) ...
        if not client.connected:
            break
        await asyncio.sleep(0.01)
    reply = await client.call("whoami", timeout=10)  # ... the next one reconnects
    assert reply.exitcode == 0
