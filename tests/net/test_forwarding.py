"""Token certificates through a level: a VoBox forwards its clients' certificates
(OpenChannel.cert) and central identifies them itself, so a JobAgent or a job behind a
VoBox is the same identity as when it connects directly, and a level cannot make one up."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jalien.auth.certs import certs_pem, make_ca, utcnow
from jalien.auth.tls import client_context, context_from_pem, server_context
from jalien.auth.tokens import TokenAuthority, TokenKind, TokenSubject, token_key_pem
from jalien.net.client import Client, ConnectionLost
from jalien.net.identity import LevelAuthenticator
from jalien.net.proxy import UpstreamProxy
from jalien.net.server import Server
from tests.tokengrid import token_central


@pytest.fixture
async def central(grid_pki, tmp_path):
    async with token_central(grid_pki, tmp_path) as server:
        yield server


def user_ctx(grid_pki, central, login):
    cred = grid_pki.users[login]
    return client_context(cred.cert, cred.key, central.ca_dir)


def der_of(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


async def token(client, *options):
    reply = await client.call("token", *options)
    assert reply.exitcode == 0, reply.error
    return reply.results[0]


def ctx_of(central, record):
    return context_from_pem(
        "client", record["tokencert"].encode(), record["tokenkey"].encode(), central.ca_dir
    )


class Level:
    """A VoBox-like level: upstream as *login*, downstream gate LevelAuthenticator."""

    def __init__(self, server: Server, upstream: Client) -> None:
        self.server = server
        self.upstream = upstream
        self.clients: list[Client] = []

    async def connect(self, ctx) -> Client:
        client = Client("127.0.0.1", self.server.ports()["binary"], ctx, reconnect=False)
        self.clients.append(client)
        await client.connect()
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        await self.server.close()
        await self.upstream.close()


@pytest.fixture
async def level(central, grid_pki):
    levels: list[Level] = []

    async def make(login: str = "vobox") -> Level:
        upstream = await central.connect(user_ctx(grid_pki, central, login))
        auth = LevelAuthenticator(central.ca_dir, central.authority)
        server = Server(
            UpstreamProxy(upstream),
            server_context(grid_pki.host_cert, grid_pki.host_key, central.ca_dir),
            auth,
        )
        await server.start(["127.0.0.1"], -1, 0)
        made = Level(server, upstream)
        levels.append(made)
        return made

    yield make
    for each in levels:
        await each.close()


async def test_tokens_keep_their_identity_through_a_level(central, grid_pki, level):
    vobox = await level("vobox")
    agent_record = await token(vobox.upstream, "-t", "jobagent", "-hours", "1")
    agent = await vobox.connect(ctx_of(central, agent_record))
    who = await agent.call("whoami", "-v")
    assert who.exitcode == 0, who.error
    assert who.results[0]["user"] == "jobagent"
    assert who.results[0]["roles"] == "jobagent"
    # the JobAgent asks for a job token through the level, and the job is its user
    job_record = await token(agent, "-t", "job", "-u", "jdoe", "-jobid", "42")
    job = await vobox.connect(ctx_of(central, job_record))
    who = await job.call("whoami", "-v")
    assert (who.results[0]["user"], who.results[0]["roles"]) == ("jdoe", "job")
    assert who.results[0]["dn"] == "/C=ch/O=AliEn2/CN=Jobs/CN=jdoe/OU=jdoe/OU=42"
    # a plain user certificate is forwarded too, and is that user
    alice = await vobox.connect(user_ctx(grid_pki, central, "alice"))
    assert (await alice.call("whoami")).results[0]["message"] == "alice"


async def test_a_forged_token_through_a_level_is_refused(central, grid_pki, level):
    impostor = TokenAuthority(*make_ca("jalien token CA"))
    from jalien.auth.cadir import write_ca_dir

    write_ca_dir(central.ca_dir, [impostor.ca_cert])  # trusted for TLS, still not the token CA
    cert, key = impostor.issue(
        TokenSubject(TokenKind.JOBAGENT, login="jobagent"), utcnow() + dt.timedelta(hours=1)
    )
    vobox = await level("vobox")
    forged = await vobox.connect(
        context_from_pem("client", certs_pem(cert), token_key_pem(key), central.ca_dir)
    )
    reply = await forged.call("whoami", timeout=5)
    assert reply.exitcode != 0
    # and sent by a proxy straight to central: the same refusal
    channel = await vobox.upstream.open_channel(cert=der_of(certs_pem(cert).decode()))
    reply = await channel.call("whoami", timeout=5)
    assert reply.exitcode != 0


async def test_only_proxies_forward_and_jobagents_only_job_tokens(central, grid_pki, level):
    vobox = await level("vobox")
    agent_record = await token(vobox.upstream, "-t", "jobagent", "-hours", "1")
    agent_der = der_of(agent_record["tokencert"])
    jdoe = await central.connect(user_ctx(grid_pki, central, "jdoe"))  # admin, not proxy
    channel = await jdoe.open_channel(cert=agent_der)
    assert (await channel.call("whoami", timeout=5)).exitcode != 0
    # a JobAgent may open channels for its jobs' tokens, not for other identities
    agent = await central.connect(ctx_of(central, agent_record))
    job_record = await token(agent, "-t", "job", "-u", "alice", "-jobid", "7")
    job_channel = await agent.open_channel(cert=der_of(job_record["tokencert"]))
    who = await job_channel.call("whoami", "-v", timeout=5)
    assert (who.results[0]["user"], who.results[0]["roles"]) == ("alice", "job")
    user_der = x509.load_pem_x509_certificate(
        grid_pki.users["alice"].cert.read_bytes()
    ).public_bytes(serialization.Encoding.DER)
    other = await agent.open_channel(cert=user_der)
    assert (await other.call("whoami", timeout=5)).exitcode != 0


async def test_expired_forwarded_certificate_is_refused(central, grid_pki):
    vobox = await central.connect(user_ctx(grid_pki, central, "vobox"))
    cert, _ = central.authority.issue(
        TokenSubject(TokenKind.JOBAGENT, login="jobagent"),
        utcnow() - dt.timedelta(minutes=1),
        not_before=utcnow() - dt.timedelta(hours=1),
    )
    channel = await vobox.open_channel(cert=der_of(certs_pem(cert).decode()))
    assert (await channel.call("whoami", timeout=5)).exitcode != 0


async def test_forwarded_channels_are_reopened_after_a_reconnect(central, grid_pki):
    ctx = user_ctx(grid_pki, central, "vobox")
    vobox = Client("127.0.0.1", central.binary_port, ctx, backoff=(0.01, 0.05))
    central.clients.append(vobox)
    await vobox.connect()
    agent_record = await token(vobox, "-t", "jobagent", "-hours", "1")
    channel = await vobox.open_channel(cert=der_of(agent_record["tokencert"]))
    assert (await channel.call("whoami")).results[0]["message"] == "jobagent"
    vobox._protocol.transport.abort()  # the connection drops; the client reconnects
    await vobox.wait_connected(10)
    reply = None
    for _ in range(200):  # the first calls may race the reconnection
        try:
            reply = await channel.call("whoami", timeout=5)
        except ConnectionLost:
            await vobox.wait_connected(10)
            continue
        if reply.exitcode == 0:
            break
    assert reply is not None and reply.results[0]["message"] == "jobagent"


async def test_a_jobagent_behind_a_level_opens_channels_for_its_jobs(central, grid_pki, level):
    """JobAgent -> VoBox -> central: the agent forwards its job's token to the VoBox, which
    checks it against its CA directory and forwards it again; central sees the job."""
    vobox = await level("vobox")
    agent_record = await token(vobox.upstream, "-t", "jobagent", "-hours", "1")
    agent = await vobox.connect(ctx_of(central, agent_record))
    job_record = await token(agent, "-t", "job", "-u", "alice", "-jobid", "9")
    channel = await agent.open_channel(cert=der_of(job_record["tokencert"]))
    who = await channel.call("whoami", "-v", timeout=5)
    assert (who.results[0]["user"], who.results[0]["roles"]) == ("alice", "job")
    # a certificate no CA of the VoBox's directory signed is refused at the VoBox itself
    stranger, _ = make_ca("nobody's CA")
    refused = await agent.open_channel(cert=stranger.public_bytes(serialization.Encoding.DER))
    assert (await refused.call("whoami", timeout=5)).exitcode != 0
