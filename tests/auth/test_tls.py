"""Real mutual-TLS handshakes on 127.0.0.1 between server_context and client_context."""

import datetime as dt
import ssl

import pytest

from jalien.auth.cadir import write_ca_dir
from jalien.auth.certs import issue_user_cert, make_ca, write_pem_cert, write_pem_key
from jalien.auth.errors import AuthError
from jalien.auth.names import dn_string
from jalien.auth.proxy import make_proxy, write_proxy_file
from jalien.auth.tls import client_context, server_context

USER = "/C=ch/O=jalien/OU=Users/CN=jdoe"


@pytest.fixture
def server(pki):
    return server_context(pki.host_cert, pki.host_key, pki.ca_dir)


def _refused(outcome) -> bool:
    return not outcome.server_dns and not outcome.reply


async def _refusal_reason(handshake, server, client) -> str:
    """Why the server refused: asyncio closes without an alert, so ask the server side."""
    outcome = await handshake(server, client, blocking_client=True)
    assert _refused(outcome)
    return " ".join(outcome.server_errors)


def test_context_settings(server):
    assert server.verify_mode == ssl.CERT_REQUIRED
    assert server.verify_flags & 0x40
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2


async def test_user_cert_accepted(pki, server, handshake):
    client = client_context(pki.user_cert_path, pki.user_key_path, pki.ca_dir)
    outcome = await handshake(server, client)
    assert outcome.client_error is None
    assert outcome.server_dns == [USER]
    assert outcome.reply == USER.encode() + b"\n"


async def test_encrypted_user_key(tmp_path, pki, server, handshake):
    key = tmp_path / "userkey.pem"
    write_pem_key(key, pki.user_key, b"pw")
    client = client_context(pki.user_cert_path, key, pki.ca_dir, password=b"pw")
    assert (await handshake(server, client)).server_dns == [USER]


async def test_proxy_accepted_as_user(tmp_path, pki, server, handshake):
    proxy, key = make_proxy(pki.user, pki.user_key)
    path = tmp_path / "x509up_u1000"
    write_proxy_file(path, proxy, key, [pki.user])
    client = client_context(path, path, pki.ca_dir)
    outcome = await handshake(server, client)
    assert outcome.client_error is None
    assert outcome.server_dns == [USER]


async def test_proxy_of_proxy(tmp_path, pki, server, handshake):
    proxy, key = make_proxy(pki.user, pki.user_key)
    proxy2, key2 = make_proxy(proxy, key)
    path = tmp_path / "x509up_u1000"
    write_proxy_file(path, proxy2, key2, [proxy, pki.user])
    client = client_context(path, path, pki.ca_dir)
    default = await handshake(server, client)
    assert default.server_dns == [dn_string(proxy.subject)]  # not an account: refused later
    opted_in = await handshake(server, client, proxy_of_proxy=True)
    assert opted_in.server_dns == [USER]


async def test_unknown_ca_refused(tmp_path, pki, server, handshake):
    other, other_key = make_ca("rogue CA")
    cert, key = issue_user_cert(other, other_key, "jdoe")
    write_pem_cert(tmp_path / "c.pem", cert)
    write_pem_key(tmp_path / "k.pem", key)
    client = client_context(tmp_path / "c.pem", tmp_path / "k.pem", pki.ca_dir)
    assert _refused(await handshake(server, client))
    assert "unable to get local issuer certificate" in await _refusal_reason(
        handshake, server, client
    )


async def test_expired_cert_refused(tmp_path, pki, server, handshake):
    now = dt.datetime.now(dt.UTC)
    cert, key = issue_user_cert(
        pki.ca,
        pki.ca_key,
        "jdoe",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    write_pem_cert(tmp_path / "c.pem", cert)
    write_pem_key(tmp_path / "k.pem", key)
    client = client_context(tmp_path / "c.pem", tmp_path / "k.pem", pki.ca_dir)
    assert _refused(await handshake(server, client))
    assert "certificate has expired" in await _refusal_reason(handshake, server, client)


async def test_client_refuses_unknown_server(tmp_path, pki, handshake):
    other, _ = make_ca("rogue CA")
    write_ca_dir(tmp_path / "other", [other])
    server = server_context(pki.host_cert, pki.host_key, pki.ca_dir)
    client = client_context(pki.user_cert_path, pki.user_key_path, tmp_path / "other")
    outcome = await handshake(server, client)
    assert _refused(outcome)
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)


def test_loading_errors_name_the_file(tmp_path, pki):
    with pytest.raises(AuthError, match=r"missing\.pem"):
        server_context(tmp_path / "missing.pem", pki.host_key, pki.ca_dir)
    with pytest.raises(AuthError, match="does not belong"):
        server_context(pki.host_cert, pki.user_key_path, pki.ca_dir)
    with pytest.raises(AuthError, match="CA directory"):
        server_context(pki.host_cert, pki.host_key, tmp_path / "nope")
    enc = tmp_path / "enc.pem"
    write_pem_key(enc, pki.user_key, b"pw")
    with pytest.raises(AuthError, match="password is needed"):
        client_context(pki.user_cert_path, enc, pki.ca_dir)
    with pytest.raises(AuthError, match="wrong password"):
        client_context(pki.user_cert_path, enc, pki.ca_dir, password=b"bad")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("hello")
    with pytest.raises(AuthError, match=r"garbage\.pem"):
        client_context(garbage, pki.user_key_path, pki.ca_dir)
