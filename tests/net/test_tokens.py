"""The token command and token certificates as client certificates, on a real TLS server."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from jalien.auth.cadir import write_ca_dir
from jalien.auth.certs import certs_pem, make_ca, utcnow
from jalien.auth.tls import client_context, context_from_pem
from jalien.auth.tokens import TokenAuthority, TokenKind, TokenSubject, token_key_pem
from jalien.net.client import ConnectionLost
from tests.tokengrid import token_central


@pytest.fixture
async def central(grid_pki, tmp_path):
    async with token_central(grid_pki, tmp_path) as server:
        yield server


def user_ctx(grid_pki, central, login):
    cred = grid_pki.users[login]
    return client_context(cred.cert, cred.key, central.ca_dir)


async def token_of(central, client, *options):
    """Ask for a token; the record and a client context using it."""
    reply = await client.call("token", *options)
    assert reply.exitcode == 0, reply.error
    record = reply.results[0]
    pems = record["tokencert"].encode(), record["tokenkey"].encode()
    return record, context_from_pem("client", *pems, central.ca_dir)


async def test_user_token_is_the_user(central, grid_pki):
    jdoe = await central.connect(user_ctx(grid_pki, central, "jdoe"))
    record, ctx = await token_of(central, jdoe, "-hours", "1")
    assert record["dn"] == "/C=ch/O=AliEn2/CN=Users/CN=jdoe/OU=jdoe"
    assert record["tokenkey"].startswith("-----BEGIN PRIVATE KEY-----")  # EC, PKCS#8
    assert record["message"].startswith("DN: /C=ch/O=AliEn2/CN=Users/CN=jdoe/OU=jdoe")
    with_token = await central.connect(ctx)
    who = await with_token.call("whoami", "-v")
    assert who.results[0]["user"] == "jdoe"
    assert who.results[0]["dn"] == record["dn"]
    assert "admin" in who.results[0]["roles"]  # the account's roles
    assert who.metadata["currentdir"] == "/alice/cern.ch/user/j/jdoe/"
    # a token may ask for the next one (renewal without the user certificate)
    again, _ = await token_of(central, with_token, "-hours", "1")
    assert again["dn"] == record["dn"]


async def test_switching_user_needs_admin(central, grid_pki):
    alice = await central.connect(user_ctx(grid_pki, central, "alice"))
    refused = await alice.call("token", "-u", "jdoe")
    assert refused.exitcode == 1
    assert "Switching user alice to [jdoe] failed" in refused.error
    jdoe = await central.connect(user_ctx(grid_pki, central, "jdoe"))
    record, ctx = await token_of(central, jdoe, "-u", "alice", "-hours", "1")
    assert record["dn"] == "/C=ch/O=AliEn2/CN=Users/CN=jdoe/OU=alice"
    as_alice = await central.connect(ctx)
    assert (await as_alice.call("whoami")).results[0]["user"] == "alice"
    missing = await jdoe.call("token", "-u", "nobody")
    assert missing.exitcode == 22 and "cannot be found" in missing.error


@pytest.mark.parametrize(
    ("options", "code", "text"),
    [
        (["-t", "nonsense"], 22, "Unknown token type"),
        (["-v", "soon"], 22, "positive number"),
        (["-hours", "-1"], 22, "positive number"),
        (["-frobnicate"], 22, "unknown option"),
        (["-t", "job", "-u", "jdoe"], 13, "may not obtain job tokens"),
        (["-t", "jobagent"], 13, "may not obtain JobAgent tokens"),
        (["-t", "host", "-hostname", "vobox.cern.ch"], 13, "may not obtain host tokens"),
    ],
)
async def test_bad_requests(central, grid_pki, options, code, text):
    alice = await central.connect(user_ctx(grid_pki, central, "alice"))
    reply = await alice.call("token", *options)
    assert reply.exitcode == code
    assert text in reply.error


async def test_validity_is_reduced_for_users(central, grid_pki):
    alice = await central.connect(user_ctx(grid_pki, central, "alice"))
    record, _ = await token_of(central, alice, "-v", "90")
    assert "Reducing the validity" in record["message"]


async def test_job_and_jobagent_tokens(central, grid_pki):
    vobox = await central.connect(user_ctx(grid_pki, central, "vobox"))
    record, agent_ctx = await token_of(central, vobox, "-t", "jobagent", "-hours", "1")
    assert record["dn"] == "/C=ch/O=AliEn2/CN=JobAgent"
    agent = await central.connect(agent_ctx)
    assert (await agent.call("whoami")).results[0]["user"] == "jobagent"
    job_record, job_ctx = await token_of(central, agent, "-t", "job", "-u", "jdoe", "-jobid", "42")
    assert job_record["dn"] == "/C=ch/O=AliEn2/CN=Jobs/CN=jdoe/OU=jdoe/OU=42"
    job = await central.connect(job_ctx)
    who = await job.call("whoami", "-v")
    assert who.results[0]["user"] == "jdoe"
    assert who.results[0]["roles"] == "job"  # not the user's admin role
    refused = await job.call("token")
    assert refused.exitcode == 13 and "job identity may not obtain user tokens" in refused.error


async def test_token_from_another_ca_is_refused(central, grid_pki, server_log):
    impostor = TokenAuthority(*make_ca("jalien token CA"))
    write_ca_dir(central.ca_dir, [impostor.ca_cert])  # even when trusted for TLS
    cert, key = impostor.issue(
        TokenSubject(TokenKind.USER, login="jdoe"), utcnow() + dt.timedelta(hours=1)
    )
    ctx = context_from_pem("client", certs_pem(cert), token_key_pem(key), central.ca_dir)
    with pytest.raises(ConnectionLost):
        client = await central.connect(ctx)
        await client.call("whoami", timeout=5)
    for _ in range(100):
        if "unknown user /C=ch/O=AliEn2/CN=Users/CN=jdoe/OU=jdoe" in server_log.text:
            break
        await asyncio.sleep(0.01)
    assert "unknown user /C=ch/O=AliEn2/CN=Users/CN=jdoe/OU=jdoe" in server_log.text
