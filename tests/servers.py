"""In-process jalien servers on loopback with real TLS (fixtures shared by the suites:
imported by tests/net/conftest.py and tests/catalogue/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from jalien.auth.policy import Action
from jalien.auth.tls import client_context, server_context
from jalien.commands.basic import BasicCommands
from jalien.commands.dispatch import Dispatcher
from jalien.commands.table import CommandTable
from jalien.net.client import Client
from jalien.net.identity import AccountsAuthenticator
from jalien.net.limits import Limits
from jalien.net.server import Server
from jalien.wire.errors import RequestError
from jalien.wire.messages import Event


class TestCommands:
    """Commands that exist only in tests: slow ones, pushing ones, failing ones."""

    def __init__(self) -> None:
        self.cancelled = 0

    def register(self, table: CommandTable) -> None:
        table.add("sleep", self.sleep, "answer after N milliseconds", action=Action.INFO)
        table.add("notify", self.notify, "push an event to the caller", action=Action.INFO)
        table.add("fail", self.fail, "raise RequestError", action=Action.INFO)
        table.add("crash", self.crash, "raise a bug", action=Action.INFO)
        table.add("big", self.big, "a large reply", action=Action.INFO)
        table.add(
            "pages",
            self.pages,
            "a streamed reply: N pages of M records, then E",
            action=Action.INFO,
        )

    async def sleep(self, session, args):
        try:
            await asyncio.sleep(int(args[0]) / 1000)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return [{"message": args[0]}]

    def notify(self, session, args):
        session.push(Event(topic="kill", payload={"reason": " ".join(args)}))
        return [{"message": "sent"}]

    def fail(self, session, args):
        raise RequestError("No such file or directory", 2)

    def crash(self, session, args):
        raise ZeroDivisionError("boom")

    async def pages(self, session, args):
        n, m = int(args[0]), int(args[1])
        for page in range(n):
            await asyncio.sleep(0)
            yield [{"message": f"p{page}r{i}"} for i in range(m)]
        if len(args) > 2:
            raise RequestError(args[2], 5)

    def big(self, session, args):
        n = int(args[0])
        return [{"message": f"/alice/file{i:07d}.root", "size": i} for i in range(n)]


@pytest.fixture
async def make_server(grid_pki):
    servers: list[Server] = []

    async def start(
        limits: Limits | None = None,
        hosts=("127.0.0.1",),
        handler=None,
        add_commands=None,
        prepare=None,
    ):
        extra = TestCommands()
        if handler is None:
            table = CommandTable()
            BasicCommands(table, motd="test motd").register()
            extra.register(table)
            if add_commands is not None:
                add_commands(table)
            handler = Dispatcher(table, site="TEST::SITE", prepare=prepare)
        accounts = AccountsAuthenticator(grid_pki.accounts)
        server = Server(
            handler,
            server_context(grid_pki.host_cert, grid_pki.host_key, grid_pki.ca_dir),
            accounts,
            identify_dn=accounts.identify_dn,
            limits=limits,
        )
        await server.start(list(hosts), 0, 0)
        server.test_commands = extra  # type: ignore[attr-defined]
        servers.append(server)
        return server

    yield start
    for server in servers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.close(), 5)


@pytest.fixture
def ssl_for(grid_pki):
    def make(login: str = "jdoe"):
        cred = grid_pki.users[login]
        return client_context(cred.cert, cred.key, grid_pki.ca_dir)

    return make


@pytest.fixture
async def connect(ssl_for):
    clients: list[Client] = []

    async def make(server: Server, login: str = "jdoe", host: str = "127.0.0.1", **kw) -> Client:
        client = Client(host, server.ports()["binary"], ssl_for(login), **kw)
        clients.append(client)
        await client.connect()
        return client

    yield make
    for client in clients:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 5)


@pytest.fixture
def server_log(caplog):
    caplog.set_level(logging.INFO, logger="jalien")
    return caplog
