"""Every connection ends with its credential, and a refused credential hears why.

- At the notAfter of the certificate, token or proxy a connection was opened with, the
  server closes it: the binary channel with a refusal Reply on stream 0 (exit 13, kind
  ``expired``), WebSocket with a close frame (policy violation, a reason).
- A channel whose own (forwarded) identity has expired gets each request refused (exit 13).
- A certificate from a trusted CA without an account (or a revoked one) gets a refusal
  Reply on the binary channel and HTTP 401 at the WebSocket upgrade.
- The client turns an ``expired`` close into a reconnection with fresh credentials, and
  ``Client.rotate`` moves to a new credential before the old one ends, without failing the
  requests in flight.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import msgspec
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from jalien.auth.certs import certs_pem, utcnow
from jalien.auth.tls import context_from_pem, server_context
from jalien.auth.tokens import TokenKind, TokenSubject, token_key_pem
from jalien.commands.basic import BasicCommands
from jalien.commands.dispatch import Dispatcher
from jalien.commands.table import CommandTable
from jalien.net.client import Client, ConnectionLost, Refused
from jalien.net.identity import AccountsAuthenticator, Identity
from jalien.net.refusal import EXPIRED, UNAUTHORIZED
from jalien.net.server import Server
from jalien.wire.errors import EXIT_PERMISSION
from tests.servers import TestCommands as ExtraCommands
from tests.tokengrid import token_central


class Expiring:
    """The accounts' authenticator, with the lifetime of each next connection's credential
    given by the test (seconds from now; the last one stays)."""

    def __init__(self, accounts: AccountsAuthenticator, *lifetimes: float) -> None:
        self.accounts = accounts
        self.lifetimes = list(lifetimes)
        self.calls = 0

    def __call__(self, ssl_object) -> Identity:
        identity = self.accounts(ssl_object)
        self.calls += 1
        life = self.lifetimes.pop(0) if len(self.lifetimes) > 1 else self.lifetimes[0]
        return msgspec.structs.replace(identity, expires=time.time() + life)


@pytest.fixture
async def serve(grid_pki):
    servers: list[Server] = []

    async def start(*lifetimes: float, identify_forwarded=None) -> Server:
        table = CommandTable()
        BasicCommands(table, motd="").register()
        ExtraCommands().register(table)
        accounts = AccountsAuthenticator(grid_pki.accounts)
        server = Server(
            Dispatcher(table, site="TEST"),
            server_context(grid_pki.host_cert, grid_pki.host_key, grid_pki.ca_dir),
            Expiring(accounts, *lifetimes) if lifetimes else accounts,
            identify_dn=accounts.identify_dn,
            identify_forwarded=identify_forwarded,
        )
        await server.start(["127.0.0.1"], 0, 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await asyncio.wait_for(server.close(), 5)


async def until(predicate, what: str, seconds: float = 10.0) -> None:
    """Wait for *predicate*, polling, at most *seconds* (never a fixed sleep)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


def ws_url(server) -> str:
    return f"wss://127.0.0.1:{server.ports()['websocket']}/websocket/json"


async def test_binary_connection_ends_with_its_credential(serve, connect, server_log):
    server = await serve(0.6)
    client = await connect(server, reconnect=False)
    assert (await client.call("whoami")).results[0]["message"] == "jdoe"
    started = time.monotonic()
    await until(lambda: not client.connected, "the server to close the connection")
    assert time.monotonic() - started < 5
    assert client.refused == EXPIRED
    assert "expired" in client.last_error
    with pytest.raises(Refused) as info:  # no reconnection: the reason stays
        await client.call("whoami", timeout=5)
    assert info.value.exitcode == EXIT_PERMISSION and info.value.kind == EXPIRED
    await until(lambda: server.connection_count == 0, "the connection to be counted out")
    assert any("credential expired" in r.getMessage() for r in server_log.records)


async def test_a_request_in_flight_at_the_end_hears_why(serve, connect):
    server = await serve(0.5)
    client = await connect(server, reconnect=False)
    with pytest.raises(Refused) as info:
        await client.call("sleep", "5000", timeout=10)
    assert info.value.kind == EXPIRED and "expired" in str(info.value)
    await until(lambda: server.connection_count == 0, "the connection to be counted out")


async def test_websocket_ends_with_a_policy_violation_close(serve, ssl_for):
    server = await serve(0.6)
    async with ws_connect(ws_url(server), ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
        await ws.send(json.dumps({"command": "whoami", "options": []}))
        assert json.loads(await ws.recv())["results"][0]["message"] == "jdoe"
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 10)
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1008  # policy violation
    assert "expired" in info.value.rcvd.reason
    await until(lambda: server.connection_count == 0, "the connection to be counted out")


async def test_each_request_of_an_expired_channel_is_refused(serve, connect, grid_pki):
    """A proxy level's channel carries its client's identity, with that one's expiry: its
    requests are refused once it has passed, while the level's own channel goes on."""
    ends = time.time() + 0.5

    def forwarded(der: bytes) -> Identity:
        return Identity(
            dn="/C=ch/O=AliEn2/CN=Jobs/CN=jdoe/OU=jdoe/OU=7", login="jdoe", expires=ends
        )

    server = await serve(3600, identify_forwarded=forwarded)
    level = await connect(server, login="vobox", reconnect=False)
    channel = await level.open_channel(cert=b"forwarded")
    assert (await channel.call("whoami", timeout=5)).results[0]["message"] == "jdoe"
    await until(lambda: time.time() > ends, "the channel's credential to end")
    for _ in range(2):  # each one, not only the first
        refused = await channel.call("whoami", timeout=5)
        assert refused.exitcode == EXIT_PERMISSION
        assert "expired" in refused.error and "/OU=7" in refused.error
        assert refused.metadata.get("refused") == EXPIRED
    assert (await level.call("whoami", timeout=5)).results[0]["message"] == "vobox"


async def test_a_token_connection_ends_at_its_not_after(grid_pki, tmp_path):
    """The real thing: a token certificate two seconds long, on an open connection."""
    async with token_central(grid_pki, tmp_path) as central:
        cert, key = central.authority.issue(
            TokenSubject(TokenKind.USER, login="jdoe"), utcnow() + dt.timedelta(seconds=2)
        )
        ctx = context_from_pem("client", certs_pem(cert), token_key_pem(key), central.ca_dir)
        client = await central.connect(ctx)
        assert (await client.call("whoami")).results[0]["message"] == "jdoe"
        not_after = cert.not_valid_after_utc.timestamp()
        await until(lambda: not client.connected, "the token's connection to end", 10)
        assert time.time() >= not_after - 0.05  # not before its end
        assert client.refused == EXPIRED


@pytest.mark.parametrize(
    ("login", "reason"), [("stranger", "unknown user"), ("mallory", "revoked")]
)
async def test_refused_certificate_hears_why(serve, ssl_for, server_log, login, reason):
    server = await serve()
    client = Client("127.0.0.1", server.ports()["binary"], ssl_for(login), reconnect=False)
    try:
        await client.connect()
        with pytest.raises(Refused) as info:
            await client.call("whoami", timeout=5)
    finally:
        await client.close()
    assert isinstance(info.value, ConnectionLost)  # callers that knew only that still work
    assert info.value.exitcode == EXIT_PERMISSION and info.value.kind == UNAUTHORIZED
    assert "not authorized" in str(info.value) and reason in str(info.value)
    refusals = [r.getMessage() for r in server_log.records if "refused" in r.getMessage()]
    assert any(reason in m and "127.0.0.1" in m for m in refusals), refusals
    await until(lambda: server.connection_count == 0, "the refused connection counted out")


async def test_refused_certificate_gets_401_at_the_upgrade(serve, ssl_for, server_log):
    server = await serve()
    with pytest.raises(InvalidStatus) as info:
        async with ws_connect(ws_url(server), ssl=ssl_for("stranger"), server_hostname="localhost"):
            pass
    assert info.value.response.status_code == 401
    assert b"unknown user" in info.value.response.body
    await until(lambda: server.connection_count == 0, "the refused connection counted out")
    # a wrong path (404) is counted out too, and a good client still gets in
    with pytest.raises(InvalidStatus):
        async with ws_connect(
            ws_url(server).replace("/json", "/xml"),
            ssl=ssl_for("jdoe"),
            server_hostname="localhost",
        ):
            pass
    await until(lambda: server.connection_count == 0, "the 404 connection counted out")
    async with ws_connect(ws_url(server), ssl=ssl_for("jdoe"), server_hostname="localhost") as ws:
        await ws.send(json.dumps({"command": "whoami", "options": []}))
        assert json.loads(await ws.recv())["results"][0]["message"] == "jdoe"


async def test_client_reconnects_with_fresh_credentials_after_expiry(serve, ssl_for):
    server = await serve(0.5, 3600)  # the first connection's credential is short
    asked: list[int] = []

    def credentials():
        asked.append(1)
        return ssl_for("jdoe")

    client = Client(
        "127.0.0.1",
        server.ports()["binary"],
        None,
        credentials=credentials,
        backoff=(0.05, 0.5),
    )
    try:
        await client.connect()
        assert (await client.call("whoami")).exitcode == 0
        await until(lambda: len(asked) >= 2 and client.connected, "a reconnection", 10)
        assert "expired" in client.last_error
        assert (await client.call("whoami", timeout=5)).results[0]["message"] == "jdoe"
    finally:
        await client.close()


async def test_rotate_keeps_requests_in_flight(serve, ssl_for):
    """Make before break: a new connection with the new credential takes the new requests,
    the old one finishes what it was doing, then closes."""
    server = await serve(3600)
    client = Client("127.0.0.1", server.ports()["binary"], ssl_for("jdoe"), reconnect=False)
    try:
        await client.connect()
        channel = await client.open_channel()
        assert (await channel.call("whoami")).exitcode == 0
        slow = asyncio.ensure_future(client.call("sleep", "300", timeout=10))
        await until(lambda: len(client._pending) == 1, "the slow request to leave")
        await client.rotate(ssl_for("alice"))
        assert (await client.call("whoami")).results[0]["message"] == "alice"
        assert (await channel.call("whoami")).results[0]["message"] == "alice"
        assert server.connection_count == 2  # the old one is still answering
        assert (await slow).results[0]["message"] == "300"
        await until(lambda: server.connection_count == 1, "the old connection to close")
        assert (await client.call("whoami")).exitcode == 0
    finally:
        await client.close()
