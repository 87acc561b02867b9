"""An in-process central server with a token CA (the test grid's CA directory copied, the
token CA added), for the token and jBox tests."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from jalien.auth.cadir import write_ca_dir
from jalien.auth.tls import server_context
from jalien.auth.tokens import TokenAuthority
from jalien.commands.basic import BasicCommands
from jalien.commands.dispatch import Dispatcher
from jalien.commands.table import CommandTable
from jalien.commands.token import TokenCommands
from jalien.net.client import Client
from jalien.net.identity import AccountsAuthenticator
from jalien.net.server import Server


class AnyJob:
    """The job-token rule of this grid, which has no task queue: every job counts as
    matched to the JobAgent asking (these tests are about tokens through levels; the real
    rule is tested against a real jcentral in tests/integration/test_trust.py)."""

    async def check_job_token(self, identity, job_id: str, user: str) -> None:
        pass

    def job_token_issued(self, job_id: str, serial: int) -> None:
        pass


class TokenCentral:
    def __init__(self, server: Server, ca_dir: Path, authority: TokenAuthority) -> None:
        self.server = server
        self.ca_dir = ca_dir
        self.authority = authority
        self.clients: list[Client] = []

    @property
    def binary_port(self) -> int:
        return self.server.ports()["binary"]

    async def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()
        await self.server.close()

    async def connect(self, ctx, **kw) -> Client:
        client = Client("127.0.0.1", self.binary_port, ctx, reconnect=False, **kw)
        self.clients.append(client)
        await client.connect()
        return client


@contextlib.asynccontextmanager
async def token_central(
    grid_pki, root: Path, extra=None, port: int = 0
) -> AsyncIterator[TokenCentral]:
    ca_dir = root / "certificates"
    if not ca_dir.exists():
        shutil.copytree(grid_pki.ca_dir, ca_dir, symlinks=True)
    authority, _ = TokenAuthority.load_or_create(root / "ca")
    write_ca_dir(ca_dir, [authority.ca_cert])
    table = CommandTable()
    BasicCommands(table, motd="").register()
    if extra is not None:
        extra.register(table)
    accounts = AccountsAuthenticator(grid_pki.accounts, tokens=authority)
    TokenCommands(table, authority, accounts.identify_login, job_tokens=AnyJob()).register()
    server = Server(
        Dispatcher(table, site="TEST"),
        server_context(grid_pki.host_cert, grid_pki.host_key, ca_dir),
        accounts,
        identify_dn=accounts.identify_dn,
    )
    await server.start(["127.0.0.1"], -1, port)
    central = TokenCentral(server, ca_dir, authority)
    try:
        yield central
    finally:
        await central.close()
