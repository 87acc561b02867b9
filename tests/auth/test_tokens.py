"""Token certificates: names, lifetimes, signatures, and what OpenSSL makes of them."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from jalien.auth.cadir import find_issuer, write_ca_dir
from jalien.auth.certs import certs_pem, dn_of, issue_user_cert, make_ca, utcnow
from jalien.auth.errors import AuthError
from jalien.auth.memfile import memory_path
from jalien.auth.names import dn_string
from jalien.auth.tls import context_from_pem
from jalien.auth.tokens import (
    TokenAuthority,
    TokenKind,
    TokenSubject,
    TokenVerifier,
    parse_token_name,
    token_key_pem,
    token_lifetime,
    token_name,
)

DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    return TokenAuthority.load_or_create(tmp_path_factory.mktemp("tokenca"))[0]


@pytest.mark.parametrize(
    ("subject", "dn"),
    [
        (
            TokenSubject(TokenKind.USER, login="jdoe", requester="jdoe"),
            "/C=ch/O=AliEn2/CN=Users/CN=jdoe/OU=jdoe",
        ),
        (
            TokenSubject(TokenKind.USER, login="aliprod", requester="jdoe"),
            "/C=ch/O=AliEn2/CN=Users/CN=jdoe/OU=aliprod",
        ),
        (
            TokenSubject(TokenKind.JOB, login="jdoe", extension="1234"),
            "/C=ch/O=AliEn2/CN=Jobs/CN=jdoe/OU=jdoe/OU=1234",
        ),
        (TokenSubject(TokenKind.JOBAGENT, login="jobagent"), "/C=ch/O=AliEn2/CN=JobAgent"),
        (
            TokenSubject(TokenKind.HOST, extension="vobox.cern.ch"),
            "/C=ch/O=AliEn2/OU=ALICE/CN=vobox.cern.ch",
        ),
    ],
)
def test_names_round_trip(subject, dn):
    name = token_name(subject)
    assert dn_string(name) == dn
    assert parse_token_name(name) == subject


def test_other_names_are_not_tokens(pki):
    assert parse_token_name(pki.user.subject) is None
    with pytest.raises(AuthError):
        token_name(TokenSubject(TokenKind.JOB, login="jdoe"))


def test_lifetime_rules():
    now = utcnow()
    end, notes = token_lifetime(TokenKind.USER, None, admin=False, limit=None, now=now)
    assert end - now == 31 * DAY and not notes
    end, notes = token_lifetime(TokenKind.USER, 90 * DAY, admin=False, limit=None, now=now)
    assert end - now == 31 * DAY and "Reducing" in notes[0]
    end, _ = token_lifetime(TokenKind.USER, 900 * DAY, admin=True, limit=None, now=now)
    assert end - now == 400 * DAY
    limit = now + 3 * DAY
    end, notes = token_lifetime(TokenKind.JOB, None, admin=False, limit=limit, now=now)
    assert end - now == 2 * DAY
    end, notes = token_lifetime(TokenKind.USER, None, admin=False, limit=limit, now=now)
    assert end == limit and "Restricting" in notes[0]
    end, _ = token_lifetime(TokenKind.USER, None, admin=True, limit=limit, now=now)
    assert end - now == 31 * DAY  # an admin's user tokens are not bound to their own cert
    with pytest.raises(AuthError, match="expired"):
        token_lifetime(TokenKind.USER, None, admin=False, limit=now - DAY, now=now)


def test_issue_and_recognize(authority):
    subject = TokenSubject(TokenKind.USER, login="jdoe", requester="jdoe")
    cert, key = authority.issue(subject, utcnow() + dt.timedelta(hours=1))
    assert authority.recognize(cert) == subject
    assert TokenVerifier(authority.ca_cert).recognize(cert) == subject
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert token_key_pem(key).startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    # same subject, signed by another CA with the same name: not a token
    impostor_ca, impostor_key = make_ca("jalien token CA")
    impostor = TokenAuthority(impostor_ca, impostor_key)
    fake, _ = impostor.issue(subject, utcnow() + dt.timedelta(hours=1))
    assert dn_of(fake) == dn_of(cert)
    assert authority.recognize(fake) is None


def test_load_or_create_keeps_the_ca(tmp_path):
    first, created = TokenAuthority.load_or_create(tmp_path)
    again, created_again = TokenAuthority.load_or_create(tmp_path)
    assert created and not created_again
    assert again.ca_cert == first.ca_cert
    (tmp_path / "tokenca.key").unlink()
    with pytest.raises(AuthError, match=r"tokenca\.pem"):
        TokenAuthority.load_or_create(tmp_path)


def test_token_works_for_tls_both_ways(authority, pki, tmp_path):
    """A user token is a TLS client certificate for servers and a server certificate for
    jBox; OpenSSL accepts it with the token CA in the CA directory."""
    write_ca_dir(tmp_path / "ca", [pki.ca, authority.ca_cert])
    subject = TokenSubject(TokenKind.USER, login="jdoe", requester="jdoe")
    cert, key = authority.issue(subject, utcnow() + dt.timedelta(hours=1))
    cert_pem, key_pem = certs_pem(cert), token_key_pem(key)
    assert find_issuer(tmp_path / "ca", cert) == authority.ca_cert
    assert find_issuer(tmp_path / "ca", issue_user_cert(*make_ca("x"), "y")[0]) is None
    server = context_from_pem("server", cert_pem, key_pem, tmp_path / "ca")
    client = context_from_pem("client", cert_pem, key_pem, tmp_path / "ca")
    assert server and client
    with pytest.raises(AuthError) as err:
        context_from_pem("client", cert_pem, b"not a key", tmp_path / "ca")
    assert "/proc/" not in str(err.value)


def test_memory_path_is_gone_afterwards():
    with memory_path(b"secret") as path:
        with open(path, "rb") as fh:
            assert fh.read() == b"secret"
        with open(path, "rb") as fh:  # can be opened twice (OpenSSL may)
            assert fh.read() == b"secret"
    with pytest.raises(OSError):
        open(path, "rb").close()
