"""WebSocket permessage-deflate (RFC 7692): the negotiation and codec without sockets
(jalien.net.deflate), then a server driven by the `websockets` client offering it or not."""

from __future__ import annotations

import asyncio
import json
import zlib

import pytest
from websockets.asyncio.client import connect as ws_connect

from jalien.net import deflate
from jalien.net.limits import Limits

BOTH = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


@pytest.mark.parametrize(
    ("offer", "header"),
    [
        (None, None),
        ("", None),
        ("x-webkit-deflate-frame", None),
        ("permessage-deflate", BOTH),
        ("permessage-deflate; client_max_window_bits", BOTH),  # websockets, alien.py
        ("permessage-deflate; client_max_window_bits=12", BOTH),
        ("permessage-deflate; server_max_window_bits=10", BOTH + "; server_max_window_bits=10"),
        ("permessage-deflate; server_max_window_bits=20, permessage-deflate", BOTH),
        ("permessage-deflate; unknown=1", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", None),
        ("foo, PERMESSAGE-DEFLATE; server_no_context_takeover", BOTH),
    ],
)
def test_negotiation(offer, header):
    agreement = deflate.negotiate(offer)
    assert (agreement.header if agreement else None) == header


def _inflate_raw(data: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")


@pytest.mark.parametrize("data", [b"", b"x", b'{"results": []}' * 1000, bytes(range(256)) * 50])
def test_compress_round_trip(data):
    packed = deflate.compress(data)
    assert not packed.endswith(b"\x00\x00\xff\xff")
    assert _inflate_raw(packed) == data
    assert deflate.inflate(packed, len(data)) == data


def test_fragments_make_one_message():
    zipper = deflate.MessageDeflater()
    parts = [b"[" + b'"abc",' * 5000, b'"def",' * 3000, b"]"]
    packed = [zipper.fragment(p, final=i == len(parts) - 1) for i, p in enumerate(parts)]
    assert _inflate_raw(b"".join(packed)) == b"".join(parts)


def test_zip_bomb_refused_cheaply():
    bomb = deflate.compress(b"\x00" * (64 * 1024 * 1024), level=9)
    assert len(bomb) < 100_000
    with pytest.raises(deflate.TooBig):
        deflate.inflate(bomb, 1024 * 1024)
    with pytest.raises(deflate.BadData):
        deflate.inflate(b"\xff\xff\xff not deflate", 1024)


def url(server):
    return f"wss://127.0.0.1:{server.ports()['websocket']}/websocket/json"


@pytest.mark.parametrize("offer", [True, False])
async def test_websockets_client_with_and_without(make_server, ssl_for, offer):
    """Compression negotiated when offered: a big reply arrives compressed (the server's
    counter), a small one not; without the offer nothing is compressed."""
    server = await make_server(Limits(deflate_threshold=4096))
    async with ws_connect(
        url(server),
        ssl=ssl_for("jdoe"),
        server_hostname="localhost",
        compression="deflate" if offer else None,
    ) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert (extensions == BOTH) if offer else extensions is None
        asked = (("big", ["3000"]), ("big", ["300"]), ("pwd", []), ("pages", ["5", "2000"]))
        for command, options in asked:
            await ws.send(json.dumps({"command": command, "options": options}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply["metadata"]["exitcode"] == "0"
            if command == "big":
                assert len(reply["results"]) == int(options[0])
            if command == "pages":
                assert len(reply["results"]) == 10_000
        stats = server.deflate_stats
        if offer:
            # the bigs (one under the 64 KiB a turn's replies are written together below)
            # and the streamed pages, not pwd
            assert stats.messages == 3
            assert stats.sent * 4 < stats.raw
        else:
            assert stats.messages == 0
        # a compressed request is inflated (the websockets client compresses what it sends)
        await ws.send(json.dumps({"command": "echo", "options": ["x" * 10_000]}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["metadata"]["exitcode"] in ("0", "2")


async def test_compressed_request_above_the_limit(make_server, ssl_for):
    """A message inflating above max_message_size is refused (exit 90), the connection kept."""
    server = await make_server(Limits(max_message_size=64 * 1024))
    async with ws_connect(
        url(server), ssl=ssl_for("jdoe"), server_hostname="localhost", compression="deflate"
    ) as ws:
        bomb = json.dumps({"command": "pwd", "options": ["a" * 1_000_000]})
        await ws.send(bomb)  # ~1 MB inflated, a few KiB on the wire
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["metadata"]["exitcode"] == "90"
        await ws.send(json.dumps({"command": "pwd", "options": []}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["metadata"]["exitcode"] == "0"


async def test_rsv1_without_negotiation_is_a_protocol_error(make_server, ssl_for):
    server = await make_server()
    async with ws_connect(
        url(server), ssl=ssl_for("jdoe"), server_hostname="localhost", compression=None
    ) as ws:
        payload = deflate.compress(b'{"command":"pwd"}')
        # FIN + RSV1 + TEXT, masked with a zero key (the client library refuses RSV1)
        ws.transport.write(bytes([0xC1, 0x80 | len(payload)]) + bytes(4) + payload)
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1002
