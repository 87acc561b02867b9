"""Several central endpoints, as behind a DNS alias (Settings.central_hosts, Client's
alternates): a dead endpoint is skipped, a lost connection moves to the next one."""

from __future__ import annotations

import asyncio

import pytest

from jalien.config import ConfigError, Settings
from jalien.net import discovery
from jalien.net.client import Client, ConnectionLost
from tests.ports import free_port  # a port nothing listens on


def test_central_endpoints_from_the_settings():
    settings = Settings(central_hosts=["h1:9001", "h2", "[::1]:9003", "::1"], binary_port=8098)
    assert discovery.central_endpoints(settings) == [
        ("h1", 9001),
        ("h2", 8098),
        ("::1", 9003),
        ("::1", 8098),
    ]
    assert discovery.central_endpoints(Settings(central_host="c", binary_port=7)) == [("c", 7)]
    with pytest.raises(ConfigError, match="central_hosts: h1:x"):
        discovery.central_endpoints(Settings(central_hosts=["h1:x"]))
    found = discovery.candidates(Settings(central_hosts=["a:1", "b:2"]), env={})
    assert sorted((e.host, e.port, e.source) for e in found) == [
        ("a", 1, "central"),
        ("b", 2, "central"),
    ]


async def test_a_dead_endpoint_is_skipped_and_a_lost_one_left(make_server, ssl_for):
    first, second = await make_server(), await make_server()
    ends = [("127.0.0.1", free_port())] + [
        ("127.0.0.1", s.ports()["binary"]) for s in (first, second)
    ]
    client = Client(*ends[0], ssl_for("jdoe"), alternates=ends[1:], backoff=(0.05, 0.2))
    try:
        await client.connect()
        assert (await client.call("whoami")).exitcode == 0
        at = (client.host, client.port)
        assert at in ends[1:]  # whichever it started at, never the dead one
        server = first if at == ends[1] else second
        for conn in list(server.connections):
            conn.transport.close()  # its central goes away
        await server.close()
        for _ in range(500):  # bounded: the reconnection lands on the other central
            if client.connected and (client.host, client.port) != at:
                break
            await asyncio.sleep(0.01)
        assert (client.host, client.port) in ends[1:] and (client.host, client.port) != at
        assert (await client.call("whoami", timeout=10)).exitcode == 0
    finally:
        await client.close()


async def test_every_endpoint_dead_says_each(ssl_for):
    ends = [("127.0.0.1", free_port()), ("127.0.0.1", free_port())]
    client = Client(*ends[0], ssl_for("jdoe"), alternates=ends[1:], reconnect=False)
    with pytest.raises(ConnectionLost) as caught:
        await client.connect()
    for host, port in ends:
        assert f"{host}:{port}" in str(caught.value)
