"""A real jcentral with one credential of every identity kind, for the trust tests.

`jalien-bin setup` makes the grid (jdoe: an admin; the host certificate: the VoBox account);
the test adds bob, a plain user, with a certificate of the dev CA, a full and a limited RFC
3820 proxy of it; tokens are asked from the running jcentral as their holders would: a user
token by bob (what the jBox holds), a JobAgent token by the VoBox, and a job token by getting
a job of bob's matched with that JobAgent token."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from jalien.auth.accounts import Account, AccountMap
from jalien.auth.certs import certs_pem, dn_of, issue_user_cert, key_pem, load_cert, load_key
from jalien.auth.policy import IdentityKind
from jalien.auth.proxy import make_proxy
from jalien.auth.tls import context_from_pem
from jalien.config import Settings
from jalien.net.client import Client

K = IdentityKind
BOB_HOME = "/alice/cern.ch/user/b/bob/"
JDL = 'Executable = "/bin/true"; TTL = 600;'


@dataclass
class Pem:
    cert: bytes  # the certificate, then its chain
    key: bytes


@dataclass
class TrustGrid:
    home: Path
    globus: Path
    binary_port: int
    pems: dict[IdentityKind, Pem] = field(default_factory=dict)
    clients: list[Client] = field(default_factory=list)
    job_id: int = 0

    @property
    def ca_dir(self) -> Path:
        return self.home / "certificates"

    async def connect(self, pem: Pem) -> Client:
        context = context_from_pem("client", pem.cert, pem.key, self.ca_dir)
        client = Client("127.0.0.1", self.binary_port, context, reconnect=False)
        await client.connect()
        self.clients.append(client)
        return client

    async def client(self, kind: IdentityKind) -> Client:
        return await self.connect(self.pems[kind])

    async def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()
        self.clients.clear()


def add_bob(home: Path) -> Pem:
    """bob, a plain user (no admin role), registered in the running grid's accounts file."""
    ca_cert, ca_key = load_cert(home / "ca" / "ca.pem"), load_key(home / "ca" / "ca.key")
    cert, key = issue_user_cert(ca_cert, ca_key, "bob")
    accounts_path = home / "accounts.toml"
    accounts = AccountMap.load(accounts_path)
    dn = dn_of(cert)
    if accounts.get(dn) is None:
        accounts.add(Account(login="bob", dn=dn, roles=["users"], home=BOB_HOME))
        accounts.save(accounts_path)
    return Pem(certs_pem(cert), key_pem(key))


def proxy_of(user: Pem, limited: bool) -> Pem:
    cert = x509.load_pem_x509_certificate(user.cert)
    key = load_pem_private_key(user.key, None)
    proxy, proxy_key = make_proxy(cert, key, hours=1, limited=limited)  # type: ignore[arg-type]
    return Pem(certs_pem([proxy, cert]), key_pem(proxy_key))


def token_pem(record: dict[str, str]) -> Pem:
    return Pem(record["tokencert"].encode(), record["tokenkey"].encode())


async def call_ok(client: Client, *words: str) -> dict[str, str]:
    reply = await client.call(*words, timeout=60)
    assert reply.exitcode == 0, f"{words}: {reply.error}"
    return reply.results[0] if reply.results else {}


@contextlib.asynccontextmanager
async def trust_grid(home: Path, globus: Path, binary_port: int) -> AsyncIterator[TrustGrid]:
    grid = TrustGrid(home, globus, binary_port)
    try:
        grid.pems[K.ADMIN] = Pem(
            (globus / "usercert.pem").read_bytes(), (globus / "userkey.pem").read_bytes()
        )
        grid.pems[K.HOST] = _host_pem(home)
        bob = grid.pems[K.USER] = add_bob(home)
        grid.pems[K.PROXY] = proxy_of(bob, limited=False)
        grid.pems[K.LIMITED_PROXY] = proxy_of(bob, limited=True)
        as_bob = await grid.connect(bob)
        grid.pems[K.JBOX] = token_pem(await call_ok(as_bob, "token", "-hours", "1"))
        vobox = await grid.client(K.HOST)
        grid.pems[K.JOBAGENT] = token_pem(
            await call_ok(vobox, "token", "-t", "jobagent", "-hours", "1")
        )
        agent = await grid.client(K.JOBAGENT)
        await call_ok(as_bob, "submit", "=<", JDL)
        job = await call_ok(agent, "getMatchJob", "ttl=3600", "ce=ALICE::TEST::CE")
        assert job["user"] == "bob", job  # bob's is the oldest waiting job of the grid
        grid.job_id = int(job["queueId"])
        grid.pems[K.JOB] = token_pem(job)
        yield grid
    finally:
        await grid.close()


def _host_pem(home: Path) -> Pem:
    """The host certificate `setup` made (the VoBox's identity), wherever settings put it."""
    settings = Settings(home=str(home))
    return Pem(settings.host_cert_path.read_bytes(), settings.host_key_path.read_bytes())
