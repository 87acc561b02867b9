"""A binary client that pipelines big answers and never reads: the server's memory for its
connection stays bounded (streamed pages wait for the transport to drain, at most a few
streams produce pages at once, inline replies stop at the high-water mark); and a stream
that produces nothing still ends, whatever the handler (a proxy level too)."""

from __future__ import annotations

import asyncio
import socket

from jalien.auth.policy import Action
from jalien.net.limits import Limits
from jalien.net.server import STREAMS_AT_ONCE
from jalien.wire import codec, framing
from jalien.wire.messages import Reply, Request
from jalien.wire.streams import stream_id

HIGH = 64 * 1024


async def _silent_client(server, ssl_for, requests: list[Request]):
    """A TLS connection that sends *requests* pipelined, then reads nothing."""
    sock = socket.create_connection(("127.0.0.1", server.ports()["binary"]))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=ssl_for("jdoe"), server_hostname="localhost", limit=4096
    )
    wire = b"".join(
        framing.encode_frame(stream_id(0, i + 1), codec.encode_msgpack(r))
        for i, r in enumerate(requests)
    )
    writer.write(wire)
    await writer.drain()
    reader._transport.pause_reading()  # type: ignore[attr-defined]
    return writer


async def _settled(connection, produced=None):
    """Wait until the server stopped writing to the silent client (bounded loop)."""
    last = -1
    for _ in range(200):
        await asyncio.sleep(0.02)
        now = connection.transport.get_write_buffer_size(), (produced or [0])[0]
        if now == last and connection._write_paused:
            return
        last = now


async def test_streamed_pages_wait_for_a_client_that_does_not_read(make_server, ssl_for):
    produced = [0]
    page = [{"message": "x" * 100, "size": i} for i in range(5000)]  # ~600 KB a page

    async def flood(session, args):
        for _ in range(1000):
            produced[0] += 1
            yield page

    server = await make_server(
        limits=Limits(write_buffer_high=HIGH, compress_threshold=0),  # kernel buffers: few pages
        add_commands=lambda t: t.add("flood", flood, "pages forever", action=Action.INFO),
    )
    writer = await _silent_client(server, ssl_for, [Request(command="flood")] * 64)
    try:
        for _ in range(200):
            if server.connections:
                break
            await asyncio.sleep(0.01)
        (connection,) = server.connections
        await _settled(connection, produced)
        # 64 streams of 1000 pages asked for: only a few pages were made, the rest wait
        assert produced[0] <= 2 * STREAMS_AT_ONCE + 16, produced
        # the others wait: started and paused, or not yet taken from the channel
        assert len(connection._tasks) + connection._channel.pending == 64
    finally:
        writer.close()


async def test_inline_replies_stop_at_the_high_water_mark(make_server, ssl_for):
    server = await make_server(limits=Limits(write_buffer_high=HIGH, compress_threshold=0))
    # each reply ~100 KB, 300 pipelined in one write: 30 MB if all were answered
    writer = await _silent_client(server, ssl_for, [Request(command="big", options=["1000"])] * 300)
    try:
        for _ in range(200):
            if server.connections:
                break
            await asyncio.sleep(0.01)
        (connection,) = server.connections
        await _settled(connection)
        assert connection._write_paused
        assert connection.transport.get_write_buffer_size() < 4 * 1024 * 1024
        assert connection._channel.pending >= 100  # the rest waits, undecoded
    finally:
        writer.close()


class _Silent:
    """A handler (a proxy level, say) whose streams produce nothing at all."""

    def open_session(self, identity, push, *, personality):
        return identity

    def close_session(self, session):
        pass

    def dispatch(self, session, request):
        async def nothing():
            return
            yield Reply()

        return nothing()


async def test_a_stream_that_produces_nothing_still_answers(make_server, connect):
    server = await make_server(handler=_Silent())
    client = await connect(server)
    reply = await asyncio.wait_for(client.call("ls", "/empty", timeout=5), 10)
    assert reply == Reply()
    pages = [p async for p in client.main.stream(Request(command="find"), timeout=5)]
    assert pages == [Reply()]


async def test_an_empty_stream_answers_through_a_level(make_server, connect, grid_pki):
    """Central's stream produces nothing: its empty final reply crosses the level (raw
    frames) to a binary client, and a WebSocket client gets one JSON answer."""
    from tests.net.test_proxy import start_level

    central = await make_server(handler=_Silent())
    level, _, upstream = await start_level(make_server, grid_pki, central, "jdoe")
    try:
        client = await connect(level)
        reply = await asyncio.wait_for(client.call("find", "/x", "*.root", timeout=5), 10)
        assert (reply.exitcode, reply.results, reply.entries) == (0, [], [])
    finally:
        await upstream.close()
