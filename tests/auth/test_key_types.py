"""Certificates and keys of a type jalien does not use (Ed25519, an unknown algorithm) get a
clear AuthError or a readable line, never an AttributeError from the loaders' checks."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from jalien.auth.certs import key_matches, load_key, new_ec_key, write_pem_cert, write_pem_key
from jalien.auth.errors import AuthError
from jalien.auth.tls import client_context
from jalien.cli.main import main

ED25519_OID = bytes([0x06, 0x03, 0x2B, 0x65, 0x70])  # 1.3.101.112
UNKNOWN_OID = bytes([0x06, 0x03, 0x2B, 0x65, 0x63])  # 1.3.101.99: no such key type


def _ed25519_cert() -> x509.Certificate:
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ed25519 test")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(key, None)
    )


def test_key_matches(pki):
    assert key_matches(pki.user, pki.user_key)
    assert not key_matches(pki.user, pki.ca_key)
    assert not key_matches(pki.user, new_ec_key())
    assert not key_matches(_ed25519_cert(), pki.user_key)


def test_unknown_key_algorithm_is_an_auth_error(tmp_path):
    der = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert der.count(ED25519_OID) == 1
    path = tmp_path / "odd.key"
    path.write_bytes(
        b"-----BEGIN PRIVATE KEY-----\n"
        + base64.encodebytes(der.replace(ED25519_OID, UNKNOWN_OID))
        + b"-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(AuthError, match="cannot load the private key"):
        load_key(path)


def test_ed25519_certificate_with_an_rsa_key(tmp_path, pki):
    cert = tmp_path / "ed.pem"
    write_pem_cert(cert, _ed25519_cert())
    key = tmp_path / "rsa.key"
    write_pem_key(key, pki.user_key, None)
    with pytest.raises(AuthError, match="does not belong to the certificate"):
        client_context(cert, key, pki.ca_dir)


def test_proxy_info_on_an_ed25519_certificate(tmp_path, monkeypatch, capsys):
    path = tmp_path / "x509up"
    write_pem_cert(path, _ed25519_cert())
    monkeypatch.setenv("X509_USER_PROXY", str(path))
    assert main(["proxy", "info"]) == 0
    out = capsys.readouterr().out
    assert "end entity certificate (not a proxy)" in out
    assert "Ed25519" in out
