"""Token certificates: names, lifetimes, signatures, and what OpenSSL makes of them."""

from __future__ import annotations

import datetime as dt
import ssl
import statistics
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from jalien.auth.cadir import find_issuer, write_ca_dir
from jalien.auth.certs import (
    certs_pem,
    dn_of,
    issue_user_cert,
    load_key,
    make_ca,
    new_ec_key,
    signed_by,
    utcnow,
    write_pem_cert,
    write_pem_key,
)
from jalien.auth.errors import AuthError
from jalien.auth.memfile import memory_path
from jalien.auth.names import dn_string
from jalien.auth.tls import context_from_pem
from jalien.auth.tokens import (
    TOKEN_CA_CERT,
    TOKEN_CA_KEY,
    TokenAuthority,
    TokenKeyType,
    TokenKind,
    TokenSubject,
    TokenVerifier,
    parse_token_name,
    token_key_pem,
    token_lifetime,
    token_name,
    token_name_der,
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
    assert token_key_pem(key).startswith(b"-----BEGIN PRIVATE KEY-----")
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


JOB = TokenSubject(TokenKind.JOB, login="jdoe", extension="42")


def _tls_pair(ca_dir, cert: x509.Certificate, key_pem: bytes) -> None:
    """A TLS 1.3 handshake in memory: the token as client certificate, checked by a server
    trusting *ca_dir* (what jcentral does with a job token)."""
    cert_pem = certs_pem(cert)
    server = context_from_pem("server", cert_pem, key_pem, ca_dir)
    client = context_from_pem("client", cert_pem, key_pem, ca_dir)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_side=False)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = [False, False]
    for _ in range(10):
        for i, (obj, out, peer_in) in enumerate(((c, c_out, s_in), (s, s_out, c_in))):
            if not done[i]:
                try:
                    obj.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done):
            break
    assert all(done)
    assert x509.load_der_x509_certificate(s.getpeercert(binary_form=True)) == cert


def test_new_token_ca_and_token_keys_are_ec(tmp_path, pki):
    """Issuing must be cheap (each match issues a job token): a new token CA and every token
    key are ECDSA P-256, the key sent as PKCS#8, and the token works for TLS."""
    authority, created = TokenAuthority.load_or_create(tmp_path / "tokenca")
    assert created
    ca_key = load_key(tmp_path / "tokenca" / TOKEN_CA_KEY)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey) and ca_key.curve.name == "secp256r1"
    cert, key = authority.issue(JOB, utcnow() + dt.timedelta(hours=1))
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_encipherment  # RFC 5480 for EC keys
    pem = token_key_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    key_file = tmp_path / "tokenkey.pem"
    key_file.write_bytes(pem)
    assert load_key(key_file).public_key() == cert.public_key()
    assert authority.recognize(cert) == JOB and signed_by(cert, authority.ca_cert)
    write_ca_dir(tmp_path / "ca", [pki.ca, authority.ca_cert])
    _tls_pair(tmp_path / "ca", cert, pem)


def test_an_old_rsa_token_ca_still_verifies_and_issues(tmp_path, pki):
    """A home made before EC keeps its RSA token CA: loaded as it is, tokens it signed
    before still recognized, new ones (EC keys, RSA signature) issued and recognized."""
    directory = tmp_path / "tokenca"
    old_cert, old_key = make_ca("jalien token CA")
    directory.mkdir()
    write_pem_key(directory / TOKEN_CA_KEY, old_key)
    write_pem_cert(directory / TOKEN_CA_CERT, old_cert)
    # a token the old code issued: RSA key, PKCS#1 PEM
    rsa_token, rsa_key = TokenAuthority(old_cert, old_key).issue(
        JOB, utcnow() + dt.timedelta(hours=1), key_type=TokenKeyType.RSA_2048
    )
    authority, created = TokenAuthority.load_or_create(directory)
    assert not created and authority.ca_cert == old_cert
    assert authority.recognize(rsa_token) == JOB
    assert token_key_pem(rsa_key).startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    cert, key = authority.issue(JOB, utcnow() + dt.timedelta(hours=1))
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(authority.ca_cert.public_key(), rsa.RSAPublicKey)
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.RSA_WITH_SHA256
    assert authority.recognize(cert) == JOB and signed_by(cert, old_cert)
    assert TokenVerifier(old_cert).recognize(cert) == JOB
    # an EC CA of the same name recognizes neither; the RSA one not the EC CA's tokens
    ec_authority = TokenAuthority.load_or_create(tmp_path / "other")[0]
    assert ec_authority.recognize(cert) is None and ec_authority.recognize(rsa_token) is None
    ec_token, _ = ec_authority.issue(JOB, utcnow() + dt.timedelta(hours=1))
    assert authority.recognize(ec_token) is None
    write_ca_dir(tmp_path / "ca", [pki.ca, old_cert])
    _tls_pair(tmp_path / "ca", cert, token_key_pem(key))
    _tls_pair(tmp_path / "ca", rsa_token, token_key_pem(rsa_key))


def test_a_token_costs_well_under_a_millisecond(authority):
    """The matching path issues one job token per job: generous bound (RSA was ~40 ms)."""
    expiry = utcnow() + dt.timedelta(hours=24)
    costs = []
    for _ in range(30):
        start = time.process_time()
        cert, key = authority.issue(JOB, expiry)
        certs_pem(cert), token_key_pem(key)
        costs.append(time.process_time() - start)
    assert statistics.median(costs) < 0.005, costs


@pytest.mark.parametrize("rsa_ca", [False, True])
@pytest.mark.parametrize(
    "subject",
    [
        JOB,
        TokenSubject(TokenKind.USER, login="aliprod", requester="jdoe"),
        TokenSubject(TokenKind.JOBAGENT, login="jobagent"),
        TokenSubject(TokenKind.HOST, extension="vobox.cern.ch"),
    ],
    ids=lambda s: s.kind.value,
)
def test_template_tokens_are_what_the_builder_makes(subject, rsa_ca, authority, tmp_path):
    """Tokens are signed from a DER template (token_der): the to-be-signed bytes equal the
    builder's for the same serial, validity, subject, key and extensions."""
    if rsa_ca:
        authority = TokenAuthority(*make_ca("jalien token CA"))
    not_after = dt.datetime(2051, 1, 1, tzinfo=dt.UTC)  # GeneralizedTime after 2049
    for _ in range(2):  # the first builds the template, the second uses it
        cert, key = authority.issue(subject, min(not_after, authority.ca_cert.not_valid_after_utc))
        assert authority.recognize(cert) == parse_token_name(token_name(subject))
        assert token_name_der(subject) == token_name(subject).public_bytes()
        builder = (
            x509.CertificateBuilder()
            .subject_name(token_name(subject))
            .issuer_name(authority.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(cert.serial_number)
            .not_valid_before(cert.not_valid_before_utc)
            .not_valid_after(cert.not_valid_after_utc)
        )
        for extension in cert.extensions:
            builder = builder.add_extension(extension.value, extension.critical)
        again = builder.sign(make_ca("x")[1] if rsa_ca else new_ec_key(), hashes.SHA256())
        assert again.tbs_certificate_bytes == cert.tbs_certificate_bytes
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    if subject.kind is not TokenKind.JOBAGENT:  # clientAuth only: no server certificate
        write_ca_dir(tmp_path / "ca", [authority.ca_cert])
        _tls_pair(tmp_path / "ca", cert, token_key_pem(key))
