"""A real jcentral (issue 14): a token certificate that expires while its connection stays
open stops working at its notAfter, and a certificate of a trusted CA without an account is
told so - HTTP 401 for alien.py (exit 129, "not authorized"), a refusal message for
jalien-bin (exit 13 and the server's reason, not "could not connect")."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jalien.auth.certs import issue_user_cert, load_cert, load_key, write_pem_cert, write_pem_key
from jalien.auth.tls import client_context, context_from_pem
from jalien.net.client import Client, Refused
from jalien.net.refusal import EXPIRED
from jalien.wire.errors import EXIT_PERMISSION
from tests.integration.conftest import jalien_bin

pytestmark = pytest.mark.integration
TOKEN_SECONDS = 4


def user_context(central):
    return client_context(
        central.globus / "usercert.pem", central.globus / "userkey.pem", central.ca_dir
    )


def host_context(central):
    host = central.home / "host"
    return client_context(host / "hostcert.pem", host / "hostkey.pem", central.ca_dir)


async def short_token(central) -> dict:
    """A user token of a few seconds (``-hours`` takes fractions)."""
    client = Client("127.0.0.1", central.binary_port, user_context(central), reconnect=False)
    await client.connect()
    try:
        reply = await client.call("token", "-hours", f"{TOKEN_SECONDS / 3600:.6f}", timeout=30)
    finally:
        await client.close()
    assert reply.exitcode == 0, reply.error
    return reply.results[0]


async def until(predicate, what: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.02)


def test_an_open_connection_ends_with_its_token(central):
    async def go():
        record = await short_token(central)
        cert = x509.load_pem_x509_certificate(record["tokencert"].encode())
        not_after = cert.not_valid_after_utc.timestamp()
        assert not_after - time.time() < TOKEN_SECONDS + 2
        pems = record["tokencert"].encode(), record["tokenkey"].encode()
        ctx = context_from_pem("client", *pems, central.ca_dir)
        client = Client("127.0.0.1", central.binary_port, ctx, reconnect=False)
        await client.connect()
        try:
            assert (await client.call("mkdir", "-p", "before-expiry")).exitcode == 0
            await until(lambda: not client.connected, "jcentral to end the connection", 30)
            assert time.time() >= not_after - 0.05  # at its end, not before
            assert client.refused == EXPIRED
            with pytest.raises(Refused) as info:  # mkdir after expiry: refused, with why
                await client.call("mkdir", "-p", "after-expiry", timeout=10)
            assert info.value.exitcode == EXIT_PERMISSION
            assert "credential expired" in str(info.value)
        finally:
            await client.close()
        # and a new connection with it fails at the TLS handshake
        again = Client("127.0.0.1", central.binary_port, ctx, reconnect=False)
        with pytest.raises(Exception):  # noqa: B017 - TLS alert or a closed socket
            await again.connect()
            await again.call("mkdir", "-p", "after-expiry", timeout=10)
        await again.close()
        check = Client("127.0.0.1", central.binary_port, user_context(central), reconnect=False)
        await check.connect()
        listing = await check.call("ls")
        await check.close()
        names = {e.name.rstrip("/") for e in listing.entries} | {
            str(r.get("message", "")).rstrip("/") for r in listing.results
        }
        assert "before-expiry" in names and "after-expiry" not in names

    asyncio.run(go())
    assert "credential expired" in central.log_text()


def test_a_forwarded_token_channel_is_refused_after_its_end(central):
    """A level (the host certificate, proxy role) opens a channel with its client's token:
    each request on it is refused once the token has ended; the level's own channel goes on."""

    async def go():
        record = await short_token(central)
        der = x509.load_pem_x509_certificate(record["tokencert"].encode()).public_bytes(
            serialization.Encoding.DER
        )
        not_after = x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
        level = Client("127.0.0.1", central.binary_port, host_context(central), reconnect=False)
        await level.connect()
        try:
            channel = await level.open_channel(cert=der)
            assert (await channel.call("whoami", timeout=10)).results[0]["message"] == "jdoe"
            await until(lambda: time.time() > not_after, "the token's end", 30)
            for name in ("a", "b"):
                refused = await channel.call("mkdir", "-p", f"channel-after-{name}", timeout=10)
                assert refused.exitcode == EXIT_PERMISSION, refused
                assert "credential expired" in refused.error
            assert (await level.call("whoami", timeout=10)).exitcode == 0
        finally:
            await level.close()

    asyncio.run(go())


@pytest.fixture(scope="module")
def stranger(central, tmp_path_factory):
    """A certificate of the grid's own (trusted) CA, for a login with no account."""
    root = tmp_path_factory.mktemp("stranger")
    ca = central.home / "ca"
    cert, key = issue_user_cert(load_cert(ca / "ca.pem"), load_key(ca / "ca.key"), "stranger")
    write_pem_cert(root / "usercert.pem", cert)
    write_pem_key(root / "userkey.pem", key)
    (root / "tmp").mkdir()
    return root


def test_alienpy_with_an_unregistered_certificate_exits_129(alienpy, central, stranger):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(stranger),
        "TMPDIR": str(stranger / "tmp"),
        "ALIENPY_JCENTRAL": "127.0.0.1",
        "ALIENPY_JCENTRAL_PORT": str(central.ws_port),
        "X509_USER_CERT": str(stranger / "usercert.pem"),
        "X509_USER_KEY": str(stranger / "userkey.pem"),
        "X509_CERT_DIR": str(central.ca_dir),
    }
    done = subprocess.run(
        [str(alienpy), "whoami"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 129, output
    assert "not authorized" in output
    assert "refused" in central.log_text() and "CN=stranger" in central.log_text()


def test_jalien_bin_with_an_unregistered_certificate_says_why(central, stranger):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(stranger),
        "TMPDIR": str(stranger / "tmp"),
        "JALIEN_CENTRAL_HOST": "127.0.0.1",
        "JALIEN_BINARY_PORT": str(central.binary_port),
        "X509_USER_CERT": str(stranger / "usercert.pem"),
        "X509_USER_KEY": str(stranger / "userkey.pem"),
        "X509_CERT_DIR": str(central.ca_dir),
    }
    if "JALIEN_NO_EXTENSIONS" in os.environ:
        env["JALIEN_NO_EXTENSIONS"] = os.environ["JALIEN_NO_EXTENSIONS"]
    done = subprocess.run(
        [*jalien_bin(), "whoami"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == EXIT_PERMISSION, done.stdout + done.stderr
    assert "not authorized" in done.stderr
    assert "unknown user /C=ch/O=jalien/OU=Users/CN=stranger" in done.stderr
    assert "no connection" not in done.stderr and "Traceback" not in done.stderr
